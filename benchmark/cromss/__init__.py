"""CromSS: cross-modal pretraining on noisy labels, as small pure functions plus a Lightning module."""

from benchmark.cromss.losses import (
    consistency_loss,
    cromss_loss,
    single_modal_loss,
    smooth_targets,
    weighted_soft_ce,
    weighted_soft_dice,
)
from benchmark.cromss.selection import (
    consistency_weights,
    entangle,
    entropy_confidence,
    kept_fraction,
    label_confidence,
    ramp,
    selection_weights,
)

__all__ = [
    "consistency_loss",
    "consistency_weights",
    "cromss_loss",
    "entangle",
    "entropy_confidence",
    "kept_fraction",
    "label_confidence",
    "ramp",
    "selection_weights",
    "single_modal_loss",
    "smooth_targets",
    "weighted_soft_ce",
    "weighted_soft_dice",
]
