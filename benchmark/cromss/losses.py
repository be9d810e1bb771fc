"""CromSS losses (docs/method.md, "Losses", "Spatial-temporal label smoothing"): smoothed targets, weighted soft
CE and Dice, consistency."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.cromss.selection import (
    consistency_weights,
    entangle,
    entropy_confidence,
    global_selection_weights,
    kept_fraction,
    label_confidence,
    ramp,
)
from benchmark.tasks import IGNORE

DEFAULTS: dict[str, Any] = {"T": 80, "prop": 0.5, "alpha": 0.15, "beta": 0.05, "lambda_con": 1.0,
                            "selection": True, "smoothing": True, "consistency": True}


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, H, W) labels → (N, K, H, W) float; 255 is all zeros."""
    return (labels.unsqueeze(1) == torch.arange(num_classes, device=labels.device).view(1, -1, 1, 1)).float()


def smooth_targets(labels: torch.Tensor, prior: torch.Tensor | None, alpha: float, beta: float,
                   num_classes: int) -> torch.Tensor:
    """(1 − α − β)·onehot + α·prior + β/K (without a prior, α joins the uniform part)."""
    hard = one_hot(labels, num_classes)
    if prior is None:
        return (1 - alpha - beta) * hard + (alpha + beta) / num_classes
    return (1 - alpha - beta) * hard + alpha * prior.float() + beta / num_classes


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    total = weights.sum()
    return (values * weights).sum() / total if total > 0 else values.sum() * 0.0


def weighted_soft_ce(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_p W(p)·(−Σ_c y′_c log q_c) / Σ_p W(p); 0 when every weight is 0."""
    per_pixel = -(target * torch.log_softmax(logits.float(), dim=1)).sum(dim=1)
    return _weighted_mean(per_pixel, weights)


def weighted_soft_dice(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                       eps: float = 1e-7) -> torch.Tensor:
    """Mean over all K classes of 1 − 2·Σ W q y′ / max(Σ W (q + y′), eps); a class absent from the target
    (Σ y′_c = 0, weights not applied) counts 0, as the original's Dice does."""
    q = torch.softmax(logits.float(), dim=1)
    w = weights.unsqueeze(1)
    dims = (0, 2, 3)
    intersection = (w * q * target).sum(dims)
    cardinality = (w * (q + target)).sum(dims)
    dice = 2 * intersection / cardinality.clamp_min(eps)
    present = target.sum(dims) > 0
    return ((1 - dice) * present).mean()


def consistency_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                     teacher_weights: torch.Tensor) -> torch.Tensor:
    """Soft-target CE of the student toward the teacher's detached softmax, weighted by the teacher's mask."""
    teacher = torch.softmax(teacher_logits.detach().float(), dim=1)
    per_pixel = -(teacher * torch.log_softmax(student_logits.float(), dim=1)).sum(dim=1)
    return _weighted_mean(per_pixel, teacher_weights.detach())


def cromss_loss(logits_s1: torch.Tensor, logits_s2: torch.Tensor, labels: torch.Tensor,
                prior: torch.Tensor | None, epoch: int, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The CromSS objective of one step: L = L_seg¹ + L_seg² + λ_con·(L_con,1 + L_con,2).

    ``config`` keys: ``T``, ``prop``, ``alpha``, ``beta``, ``lambda_con``, ``selection``, ``smoothing``,
    ``consistency`` (defaults are the paper's). Returns ``total``, ``seg1``, ``seg2``, ``con`` and the
    weight maps ``w_l1``, ``w_l2``, ``w_e1``, ``w_e2``, so tests and logs can look inside.
    """
    cfg = {**DEFAULTS, **(config or {})}
    k = logits_s1.shape[1]
    valid = (labels != IGNORE).float()
    with torch.no_grad():
        if cfg["selection"]:
            kept, lam = kept_fraction(epoch, cfg["T"], cfg["prop"]), ramp(epoch, cfg["T"])
            c1, c2 = entangle(label_confidence(logits_s1, labels), label_confidence(logits_s2, labels))
            w_l1 = global_selection_weights(c1, labels, kept, k)
            w_l2 = global_selection_weights(c2, labels, kept, k)
            e1, e2 = entangle(entropy_confidence(logits_s1), entropy_confidence(logits_s2))
            w_e1, w_e2 = consistency_weights(e1, lam) * valid, consistency_weights(e2, lam) * valid
        else:
            w_l1 = w_l2 = w_e1 = w_e2 = valid
    target = _targets(labels, prior, cfg, k)
    seg1, seg2 = segmentation_loss(logits_s1, target, w_l1), segmentation_loss(logits_s2, target, w_l2)
    con = (consistency_loss(logits_s1, logits_s2, w_e2) + consistency_loss(logits_s2, logits_s1, w_e1)
           if cfg["consistency"] else seg1.new_zeros(()))
    return {"total": seg1 + seg2 + cfg["lambda_con"] * con, "seg1": seg1, "seg2": seg2, "con": con,
            "w_l1": w_l1, "w_l2": w_l2, "w_e1": w_e1, "w_e2": w_e2}


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted soft CE + weighted soft Dice: one branch's L_seg."""
    return weighted_soft_ce(logits, target, weights) + weighted_soft_dice(logits, target, weights)


def _targets(labels: torch.Tensor, prior: torch.Tensor | None, cfg: Mapping[str, Any], k: int) -> torch.Tensor:
    """The smoothed targets when ``cfg["smoothing"]``, else the one-hot labels."""
    return smooth_targets(labels, prior, cfg["alpha"], cfg["beta"], k) if cfg["smoothing"] else one_hot(labels, k)


def single_modal_loss(logits: torch.Tensor, labels: torch.Tensor, prior: torch.Tensor | None = None,
                      epoch: int = 0, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One U-Net on noisy labels: CE + Dice (255 ignored), with ``config``'s ``selection`` on the network's own
    label confidence (no second modality to entangle with) and ``smoothing``; ``config=None`` is plain CE + Dice
    on hard labels. Returns ``total`` and the weight map ``w_l``."""
    cfg = {**DEFAULTS, **(config or {"selection": False, "smoothing": False})}
    k = logits.shape[1]
    with torch.no_grad():
        if cfg["selection"]:
            kept = kept_fraction(epoch, cfg["T"], cfg["prop"])
            weights = global_selection_weights(label_confidence(logits, labels), labels, kept, k)
        else:
            weights = (labels != IGNORE).float()
    return {"total": segmentation_loss(logits, _targets(labels, prior, cfg, k), weights), "w_l": weights}
