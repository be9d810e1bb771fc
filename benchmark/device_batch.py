"""The accelerator half of ``loader: device`` (README "Performance"): a batch of raw crops becomes, batched on
its device, the batch that :class:`~benchmark.data.NoLPretrainDataset` gives item by item.

Encoding (docs/method.md, "Normalisation statistics") gives the same float32 values: S2 through a table of
:func:`~benchmark.data.encode` over every uint16 value, S1 with the same float64 operations. Flips and quarter
turns are exact; the prior is :func:`~benchmark.data.prior_batch` of the turned labels with the filter margin,
as ``prior: batch`` computes it (docs/method.md, "Spatial-temporal label smoothing").
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from benchmark.data import (
    GEO_KEYS,
    NORMALIZATIONS,
    PAPER_STATISTICS,
    PRIOR_RADIUS,
    SSL4EO_MOCO_S1,
    Statistics,
    encode,
    prior_batch,
)
from noldo.errors import NoldoError


@lru_cache(maxsize=8)
def _s2_table(bands: tuple[int, ...], normalization: str, stats: Statistics, device: torch.device) -> torch.Tensor:
    """(bands, 65536): the encoding of every uint16 value of each band."""
    values = np.broadcast_to(np.arange(2**16, dtype="uint16")[None, :, None], (len(bands), 2**16, 1))
    return torch.from_numpy(encode(values, "s2", bands, normalization, stats)[..., 0]).to(device)


def encode_s2(x: torch.Tensor, bands: tuple[int, ...], normalization: str = "cromss",
              stats: Statistics = PAPER_STATISTICS) -> torch.Tensor:
    """:func:`~benchmark.data.encode` of a (N, bands, H, W) uint16 batch, by table look-up, one band at a time."""
    table = _s2_table(tuple(bands), normalization, stats, x.device)
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    for c in range(x.shape[1]):
        out[:, c] = table[c][x[:, c].int()]
    return out


def encode_s1(x: torch.Tensor, normalization: str = "cromss", stats: Statistics = PAPER_STATISTICS) -> torch.Tensor:
    """:func:`~benchmark.data.encode` of a (N, 2, H, W) float32 dB batch: its operations, in float64."""
    if normalization not in NORMALIZATIONS:
        raise NoldoError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    nodata = torch.isnan(x)
    if normalization == "ssl4eo-moco":  # unclipped, TorchGeo's statistics
        mean, std = (torch.tensor(v, dtype=torch.float64, device=x.device)[None, :, None, None]
                     for v in zip(*SSL4EO_MOCO_S1, strict=True))
        return torch.where(nodata, 0.0, (x.double() - mean) / std).float()
    mean, std = (torch.from_numpy(a).to(x.device)[None] for a in stats.of("s1", (0, 1)))
    low, high = mean - 2 * std, mean + 2 * std
    value = torch.where(nodata, low, x.double()).clamp(low, high)
    out = torch.floor((value - low) / (high - low) * 255) / 255 if normalization == "cromss" else (value - mean) / std
    return torch.where(nodata, 0.0, out).float()


def flip_and_turn(x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """Each sample of (N, …, H, W) flipped across, down and turned by its row of ``draws`` (N, 3), as
    :func:`~benchmark.data.augment` does with the same draws."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    x = torch.where(draws[:, 0].bool().view(shape), x.flip(-1), x)
    x = torch.where(draws[:, 1].bool().view(shape), x.flip(-2), x)
    for turns in draws[:, 2].unique().tolist():
        if turns:
            chosen = draws[:, 2] == turns
            x[chosen] = torch.rot90(x[chosen], turns, dims=(-2, -1))
    return x


def device_batch(raw: dict[str, Any]) -> dict[str, Any]:
    """The batch of the per-item path (``s1``, ``s2``, ``label``, ``prior`` unless ``prior: none``, ``truth``
    of a synthetic store, ``meta``) from a collated batch of raw items on any device."""
    spec, draws, r = raw["raw"], raw["draws"], PRIOR_RADIUS
    labels = flip_and_turn(raw["labels"], draws)
    season = torch.tensor([m["season"] for m in raw["meta"]], device=labels.device)
    batch = {"s1": flip_and_turn(encode_s1(raw["s1"], spec["normalization"], spec["stats"]), draws),
             "s2": flip_and_turn(encode_s2(raw["s2"], spec["bands"], spec["normalization"], spec["stats"]), draws),
             "label": labels[torch.arange(len(season), device=labels.device), season, r:-r, r:-r].long()}
    if "truth" in raw:
        batch["truth"] = flip_and_turn(raw["truth"], draws).long()
    if spec["prior"]:
        batch["prior"] = prior_batch(labels, season, margin=r)
    if "ring" in raw:  # read from a worker's reused shared memory: finished, it may be written again
        raw["ring"].release()
    return batch | {k: raw[k] for k in GEO_KEYS if k in raw} | {"meta": raw["meta"]}
