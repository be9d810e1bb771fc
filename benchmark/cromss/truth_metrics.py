"""What a training run does with label noise, measured against a store's truth (synthetic stores have one).

Per branch: accuracy against the truth (on training and on held-out samples), the memorisation rate
(the share of wrongly-labelled training pixels the network predicts as their wrong label: it rises
when a network starts fitting the noise) and, with sample selection, the precision and recall of the
kept pixels against label correctness. Pixels labelled ``snow_and_ice`` over another true class are
the seasonal snow the image shows (CATALOG.md, "The synthetic source"): right for the image, they
are left out, as are nodata pixels. docs/method.md ("Seeing the truth") describes the curves.
"""

from __future__ import annotations

import torch

from benchmark.tasks import IGNORE
from noldo.catalog import DW_CLASSES

SNOW = next(c.value for c in DW_CLASSES if c.name == "snow_and_ice")
#: The curves of ``truth.png``: panel title → logged keys (``{b}`` is the branch, s1 and s2).
PANELS = {
    "accuracy against the truth": ("truth_acc_{b}", "val_truth_acc_{b}"),
    "memorisation of wrong labels": ("memorised_{b}",),
    "kept pixels against label correctness": ("kept_precision_{b}", "kept_recall_{b}"),
}


def judged(labels: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Pixels whose label can be judged against the truth: labelled, truth known, not seasonal snow."""
    return (labels != IGNORE) & (truth != IGNORE) & ~((labels == SNOW) & (truth != SNOW))


def truth_metrics(logits: torch.Tensor, labels: torch.Tensor, truth: torch.Tensor,
                  kept: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``truth_acc`` (prediction = truth), ``memorised`` (prediction = the wrong label, among wrong labels) and, given
    the ``kept`` mask of a selection, ``kept_precision`` (share of kept labels that are right) and
    ``kept_recall`` (share of right labels that are kept); each a 0-d tensor, NaN when undefined."""
    valid = judged(labels, truth)
    prediction = logits.argmax(dim=1)
    right = valid & (labels == truth)
    wrong = valid & ~right
    out = {"truth_acc": _share(prediction == truth, valid), "memorised": _share(prediction == labels, wrong)}
    if kept is not None:
        out["kept_precision"] = _share(right, kept & valid)
        out["kept_recall"] = _share(kept, right)
    return out


def _share(hit: torch.Tensor, among: torch.Tensor) -> torch.Tensor:
    count = among.sum()
    return (hit & among).sum() / count if count > 0 else torch.tensor(float("nan"), device=hit.device)
