"""Cross-modal sample selection (docs/method.md, "Cross-modal sample selection"): confidences, entangling,
ramps and pixel weights.

Deliberate differences from the original code (docs/method.md, "Deliberate differences from the
original code"): the entropy is computed from log-softmax, so a one-hot prediction gives confidence
1, never NaN; pixels labelled 255 (cloud-masked) get weight 0 and are left out of the class counts;
under DDP the class thresholds are computed on the global batch (all ranks), so results do not
depend on the GPU count.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from benchmark.tasks import IGNORE


def ramp(epoch: int, total: int = 80) -> float:
    """λ(t) = exp(−5·(1 − min(t, T)/T)²), the exponential ramp-up over ``total`` = T epochs."""
    if total <= 0:
        return 1.0
    return math.exp(-5.0 * (1.0 - min(epoch, total) / total) ** 2)


def kept_fraction(epoch: int, total: int = 80, prop: float = 0.5) -> float:
    """r(t) = 1 − λ(t)·(1 − ρ): the share of each class's pixels that keep full weight."""
    return 1.0 - ramp(epoch, total) * (1.0 - prop)


def entropy_confidence(logits: torch.Tensor) -> torch.Tensor:
    """1 − H(softmax)/log K per pixel, (N, K, H, W) → (N, H, W), in [0, 1]."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    p = log_p.exp()
    entropy = -torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(dim=1)
    return (1.0 - entropy / math.log(logits.shape[1])).clamp(0.0, 1.0)


def label_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The softmax probability of each pixel's hard label; 0 where the label is 255."""
    valid = labels != IGNORE
    probability = torch.softmax(logits.float(), dim=1).gather(1, torch.where(valid, labels, 0).unsqueeze(1))
    return probability.squeeze(1) * valid


def entangle(a1: torch.Tensor, a2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """((a1 + a1·a2)/2, (a2 + a1·a2)/2): a modality keeps confidence only where the other agrees."""
    common = a1 * a2
    return (a1 + common) / 2, (a2 + common) / 2


def selection_weights(confidence: torch.Tensor, labels: torch.Tensor, kept: float, num_classes: int) -> torch.Tensor:
    """Class-balanced soft top-k: per class k, the top ⌊n_k·r⌋ pixels of the batch by confidence get 1, the
    others confidence/τ_k clipped to [0, 1], τ_k being the ⌊n_k·r⌋-th largest confidence (1 if τ_k ≤ 0)."""
    weights = torch.zeros_like(confidence, dtype=torch.float32)
    for k in range(num_classes):
        mask = labels == k
        n = int(mask.sum())
        m = math.floor(n * kept)
        if m == 0:
            continue
        values = confidence[mask].float()
        tau = torch.kthvalue(values, n - m + 1).values  # the m-th largest
        weights[mask] = torch.clamp(values / tau, 0.0, 1.0) if tau > 0 else 1.0
    return weights


def global_selection_weights(confidence: torch.Tensor, labels: torch.Tensor, kept: float,
                             num_classes: int) -> torch.Tensor:
    """:func:`selection_weights` over the batches of all ranks when running distributed (equal batch
    sizes), returning this rank's part; the plain function otherwise."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return selection_weights(confidence, labels, kept, num_classes)
    world, rank = dist.get_world_size(), dist.get_rank()
    parts = [torch.empty_like(confidence) for _ in range(world)], [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(parts[0], confidence.contiguous())
    dist.all_gather(parts[1], labels.contiguous())
    weights = selection_weights(torch.cat(parts[0]), torch.cat(parts[1]), kept, num_classes)
    n = confidence.shape[0]
    return weights[rank * n:(rank + 1) * n]


def consistency_weights(confidence: torch.Tensor, lam: float) -> torch.Tensor:
    """(1 − λ) + λ·confidence: from uniform weighting to the teacher's confidence as λ ramps up."""
    return (1.0 - lam) + lam * confidence
