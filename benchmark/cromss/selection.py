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
    thresholds = []
    for k in range(num_classes):
        values = confidence[labels == k].float()
        m = math.floor(values.numel() * kept)
        thresholds.append(torch.kthvalue(values, values.numel() - m + 1).values if m else None)  # the m-th largest
    return _soft_top(confidence, labels, thresholds)


def _soft_top(confidence: torch.Tensor, labels: torch.Tensor, thresholds: list[torch.Tensor | None]) -> torch.Tensor:
    """The weights of :func:`selection_weights` from the thresholds τ_k (None: the class gets 0)."""
    weights = torch.zeros_like(confidence, dtype=torch.float32)
    for k, tau in enumerate(thresholds):
        if tau is not None:
            mask = labels == k
            weights[mask] = torch.clamp(confidence[mask].float() / tau, 0.0, 1.0) if tau > 0 else 1.0
    return weights


def global_selection_weights(confidence: torch.Tensor, labels: torch.Tensor, kept: float,
                             num_classes: int) -> torch.Tensor:
    """:func:`selection_weights` over the batches of all ranks when running distributed, returning this
    rank's part; the plain function otherwise (docs/method.md, "Class-balanced weights").

    Exact without gathering the pixels: a radix select of each τ_k on the float32 bits, mapped to integers of
    the same order, one byte per pass from the top. Each of the 4 passes all-reduces a (K, 256) int64 histogram
    of the candidates' next byte (the first pass also gives n_k): 4·K·256·8 = 73,728 B per call at K = 9,
    whatever the batch, where gathering the fp32 confidences and int64 labels of all ranks took
    ranks·N·H·W·12 B (402,653,184 B per rank at 4 × 128 × 256²). Batch sizes may differ between ranks.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return selection_weights(confidence, labels, kept, num_classes)
    valid = (labels >= 0) & (labels < num_classes)
    classes = labels[valid].long()
    bits = confidence[valid].float().view(torch.int32)
    keys = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).long() + 2**31  # in [0, 2³²), ordered as the floats
    prefix = torch.zeros(num_classes, dtype=torch.long, device=confidence.device)  # τ_k's key, bytes found so far
    for shift in (24, 16, 8, 0):
        candidate = (keys >> (shift + 8)) == prefix[classes]
        digits = classes[candidate] * 256 + ((keys[candidate] >> shift) & 255)
        histogram = torch.bincount(digits, minlength=num_classes * 256).view(num_classes, 256)
        dist.all_reduce(histogram)
        if shift == 24:
            m = [math.floor(n * kept) for n in histogram.sum(1).tolist()]
            need = torch.tensor(m, device=confidence.device).clamp(min=1)  # τ_k's rank from the top, in candidates
        at_least = histogram.flip(1).cumsum(1)  # [:, j]: candidates whose byte is ≥ 255 − j
        j = (at_least < need[:, None]).sum(1).clamp(max=255)
        need = need - torch.where(j > 0, at_least.gather(1, (j - 1).clamp(min=0)[:, None])[:, 0], 0)
        prefix = prefix * 256 + 255 - j
    signed = (prefix - 2**31).to(torch.int32)
    taus = (signed ^ ((signed >> 31) & 0x7FFFFFFF)).view(torch.float32)
    return _soft_top(confidence, labels, [tau if m_k else None for tau, m_k in zip(taus, m, strict=True)])


def consistency_weights(confidence: torch.Tensor, lam: float) -> torch.Tensor:
    """(1 − λ) + λ·confidence: from uniform weighting to the teacher's confidence as λ ramps up."""
    return (1.0 - lam) + lam * confidence
