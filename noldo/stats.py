"""``noldo stats``: per-band statistics of a split over its valid pixels, streamed shard by shard.

Each dask task reads one shard of one array a few samples at a time and returns a histogram; the
histograms are summed in a tree, so memory stays that of a few tasks whatever the store's size.
Integer arrays are counted exactly (S2 DN: one bin per value; labels: one bin per class), so their
count, min, max and percentiles are exact and mean and std are exact up to float64 rounding. S1 dB is
binned at :data:`S1_BIN_WIDTH` (its count, mean, std, min and max are exact sums, its percentiles are
within one bin). Percentiles use the inverted-CDF rule: the smallest value with at least p % of the
pixels at or below it (``numpy.percentile(..., method="inverted_cdf")``). CATALOG.md, "Store statistics".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dask
import dask.bag
import numpy as np
import zarr

from noldo import catalog
from noldo._version import __version__
from noldo.errors import NoldoError
from noldo.location import RootLike, StoreLocation
from noldo.lock import writing
from noldo.manifest import refresh_manifest
from noldo.store import Split, consolidate, group_name, writable_group

PERCENTILES = (1, 2, 98, 99)
S1_BIN_WIDTH, S1_RANGE = catalog.S1_STATS_BIN_WIDTH, catalog.S1_STATS_RANGE
#: Samples read at once inside a task (one 264-px S2 block: 8 × 4 × 13 × 264² × 2 B ≈ 58 MB).
READ_SAMPLES = 8


@dataclass(frozen=True)
class _Kind:
    """How one array is histogrammed: channels, bins per channel, and how a value becomes a bin."""

    channels: tuple[str, ...]
    bins: int

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        return values.astype("int64")


class _Decibels(_Kind):
    def bin_of(self, values: np.ndarray) -> np.ndarray:
        return np.clip(np.floor((values - S1_RANGE[0]) / S1_BIN_WIDTH), 0, self.bins - 1).astype("int64")

    def value_of(self, bins: np.ndarray) -> np.ndarray:
        return S1_RANGE[0] + bins * S1_BIN_WIDTH


def _kinds(arrays: tuple[str, ...]) -> dict[str, _Kind]:
    kinds: dict[str, _Kind] = {}
    if "s2" in arrays:
        kinds["s2"] = _Kind(tuple(b.name for b in catalog.S2_BANDS), 2**16)
    if "s1" in arrays:
        kinds["s1"] = _Decibels(tuple(b.name for b in catalog.S1_BANDS),
                                round((S1_RANGE[1] - S1_RANGE[0]) / S1_BIN_WIDTH))
    for name in ("dw", "osm", "truth"):
        if name in arrays:
            kinds[name] = _Kind(("class",), 256)
    return kinds


def _channel_axis(name: str) -> int | None:
    dims = catalog.array_kind(name).dims
    return dims.index("band") if "band" in dims else dims.index("polarization") if "polarization" in dims else None


class _Partial:
    """Histograms (channel × bin) of some arrays over some shards, and exact sums and extremes for S1;
    ``a + b`` merges ``b`` into ``a``."""

    def __init__(self, name: str, kind: _Kind) -> None:
        self.counts = {name: np.zeros((len(kind.channels), kind.bins), dtype="int64")}
        self.sums = {name: np.zeros((len(kind.channels), 2))} if isinstance(kind, _Decibels) else {}
        self.extremes = ({name: np.tile([np.inf, -np.inf], (len(kind.channels), 1))}
                         if isinstance(kind, _Decibels) else {})

    def __add__(self, other: _Partial) -> _Partial:
        for name, counts in other.counts.items():
            if name not in self.counts:
                self.counts[name] = counts
            else:
                self.counts[name] += counts
        for name, sums in other.sums.items():
            if name not in self.sums:
                self.sums[name], self.extremes[name] = sums, other.extremes[name]
                continue
            self.sums[name] += sums
            mine, theirs = self.extremes[name], other.extremes[name]
            mine[:, 0], mine[:, 1] = np.minimum(mine[:, 0], theirs[:, 0]), np.maximum(mine[:, 1], theirs[:, 1])
        return self


def _histogram(group: zarr.Group, kinds: dict[str, _Kind], name: str, start: int, stop: int) -> _Partial:
    """The partial of samples [start, stop) of one array."""
    kind = kinds[name]
    partial = _Partial(name, kind)
    nodata = catalog.array_kind(name).nodata
    axis, array = _channel_axis(name), group[name]  # opened once: on object storage each open is a request
    for first in range(start, stop, READ_SAMPLES):
        block = array[first:min(first + READ_SAMPLES, stop)]
        block = np.moveaxis(block, axis, 0) if axis is not None else block[None]
        for c, values in enumerate(block):
            valid = values[~np.isnan(values)] if isinstance(nodata, float) else values[values != nodata]
            partial.counts[name][c] += np.bincount(kind.bin_of(valid), minlength=kind.bins)
            if name in partial.sums and valid.size:
                v = valid.astype("float64")
                partial.sums[name][c] += (v.sum(), np.square(v).sum())
                low, high = partial.extremes[name][c]
                partial.extremes[name][c] = min(low, v.min()), max(high, v.max())
    return partial


def _percentiles(counts: np.ndarray, values: np.ndarray) -> dict[str, float]:
    cumulative = np.cumsum(counts)
    return {f"p{p}": float(values[np.searchsorted(cumulative, p / 100 * cumulative[-1])]) for p in PERCENTILES}


def _summary(name: str, kind: _Kind, partial: _Partial) -> dict[str, Any]:
    counts = partial.counts[name]
    if kind.channels == ("class",):
        legend = catalog.ARRAY_LEGENDS[name]
        total = int(counts[0].sum())
        return {"count": total, "classes": {c.name: {"value": c.value, "count": int(counts[0, c.value]),
                                                      "share": counts[0, c.value] / total if total else None}
                                            for c in legend}}
    out: dict[str, Any] = {}
    for c, channel in enumerate(kind.channels):
        n = int(counts[c].sum())
        if n == 0:
            out[channel] = {"count": 0}
            continue
        bins = np.arange(kind.bins)
        if isinstance(kind, _Decibels):
            total, squares = partial.sums[name][c]
            low, high = partial.extremes[name][c]
            mean, variance = total / n, max(squares / n - (total / n) ** 2, 0.0)
            values = kind.value_of(bins) + S1_BIN_WIDTH / 2  # a bin's percentile is its centre
        else:  # exact integer sums (Python ints: Σ h·v² overflows int64 at NoL's size)
            nonzero = np.flatnonzero(counts[c])
            total = sum(int(counts[c, v]) * int(v) for v in nonzero)
            squares = sum(int(counts[c, v]) * int(v) ** 2 for v in nonzero)
            low, high, values = nonzero[0], nonzero[-1], bins
            mean, variance = total / n, (squares * n - total * total) / (n * n)
        summary = {"count": n, "mean": mean, "std": math.sqrt(variance), "min": float(low), "max": float(high),
                   **_percentiles(counts[c], values)}
        out[channel] = {k: round(v, 6) if k != "count" else v for k, v in summary.items()}
    return out


def compute(root: RootLike, split: str, workers: int = 2, progress: Callable[[int], None] | None = None
            ) -> dict[str, Any]:
    """The statistics of a split (valid pixels only), as stored under the split's ``statistics`` attribute."""
    reader = Split.open(root, split)
    layout = reader.layout
    kinds = _kinds(layout.arrays)
    if not kinds or layout.samples == 0:
        raise NoldoError(f"split {split} has no S2, S1 or label pixels to summarise")
    tasks = [(name, *layout.shard_range(shard)) for name in kinds for shard in range(layout.shards)]
    group = reader.group()

    def one(task: tuple[str, int, int]) -> _Partial:
        partial = _histogram(group, kinds, *task)
        if progress:
            progress(1)
        return partial

    bag = dask.bag.from_sequence(tasks, npartitions=min(len(tasks), max(1, workers) * 4))
    total = bag.map(one).fold(lambda a, b: a + b).compute(scheduler="threads", num_workers=max(1, workers))
    return {
        "computed": datetime.now(UTC).isoformat(timespec="seconds"), "noldo_version": __version__,
        "samples": layout.samples, "valid_pixels_only": True, "percentile_rule": "inverted_cdf",
        "s1_bin_width_db": S1_BIN_WIDTH if "s1" in kinds else None,
        **{name: _summary(name, kind, total) for name, kind in kinds.items()},
    }


def write(root: RootLike, split: str, statistics: dict[str, Any]) -> None:
    """Store statistics in the split's group attributes (consolidated metadata and manifest follow)."""
    location = StoreLocation.of(root)
    writable_group(location, split).attrs["statistics"] = statistics
    consolidate(location, split)
    refresh_manifest(location, lambda path: path == f"{group_name(split)}/zarr.json")


def stats(root: RootLike, split: str, workers: int = 2, progress: Callable[[int], None] | None = None,
          store: bool = True) -> dict[str, Any]:
    """Compute a split's statistics and (``store``) keep them in its attributes, under its write lock."""
    location = StoreLocation.of(root)
    if not store:
        return compute(location, split, workers, progress)
    with writing(location, split, command=f"noldo stats --split {split}"):
        result = compute(location, split, workers, progress)
        write(location, split, result)
    return result


def task_count(root: RootLike, split: str) -> int:
    """How many tasks :func:`compute` runs (for a progress bar)."""
    layout = Split.open(root, split).layout
    return len(_kinds(layout.arrays)) * layout.shards
