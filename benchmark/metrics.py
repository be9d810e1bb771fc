"""Segmentation metrics from one confusion matrix accumulated over a whole evaluation split.

Rows are reference classes, columns predicted classes; pixels labelled 255 are ignored. Macro means
run over all K classes and a class with a zero denominator counts 0, as the paper's code does
(docs/method.md, "Metrics"). AA is the mean per-class recall.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from benchmark.tasks import IGNORE


def confusion_metric(num_classes: int) -> MulticlassConfusionMatrix:
    """A DDP-safe accumulator of the confusion matrix (rows: reference, columns: prediction)."""
    return MulticlassConfusionMatrix(num_classes=num_classes, ignore_index=IGNORE, normalize=None)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype="float64"), where=denominator > 0)


def scores_from_confusion(matrix: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """OA, AA, mIoU, mF1 (fractions in [0, 1]) and per-class ``iou``, ``f1``, ``precision``, ``recall`` arrays.

    Example:
        >>> scores_from_confusion(np.array([[3, 1], [0, 4]]))["oa"]
        0.875
    """
    m = np.asarray(matrix.cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype="float64")
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {m.shape}")
    tp = np.diag(m)
    fp, fn = m.sum(axis=0) - tp, m.sum(axis=1) - tp
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    iou, f1 = _ratio(tp, tp + fp + fn), _ratio(2 * tp, 2 * tp + fp + fn)
    total = m.sum()
    return {"oa": float(tp.sum() / total) if total else 0.0, "aa": float(recall.mean()), "miou": float(iou.mean()),
            "mf1": float(f1.mean()), "iou": iou, "f1": f1, "precision": precision, "recall": recall}
