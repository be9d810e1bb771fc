"""PyTorch datasets over noldo stores: CromSS pretraining samples, downstream tiles, priors, augmentation.

Store handles are opened lazily inside each process (a zarr handle must not cross a fork), and the
DataLoaders made here use the ``spawn`` start method explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import zarr
from scipy.ndimage import gaussian_filter
from torch.utils.data import Dataset

from benchmark.batch_ring import RING_ARRAYS, worker_ring
from benchmark.tasks import IGNORE, get_task
from noldo import catalog
from noldo.errors import NoldoError
from noldo.index import acquisition_times
from noldo.location import RootLike, StoreLocation
from noldo.store import Split, group_name, index_name

NUM_CLASSES = len(catalog.DW_CLASSES)  # the pretraining classes: Dynamic World
PRIOR_SIGMA, PRIOR_TRUNCATE = 3.0, 4.0
PRIOR_RADIUS = int(PRIOR_TRUNCATE * PRIOR_SIGMA + 0.5)  # 12 px: the Gaussian's reach
MP_CONTEXT = "spawn"  # zarr runs an event-loop thread: never fork a process that has used it


# --- encodings ---------------------------------------------------------------------------------
class Statistics(NamedTuple):
    """Mean and std per band of S2 (13 bands) and S1 (VV, VH), as the encodings use them.

    ``ssl4eo`` is the paper's table (docs/method.md, "Normalisation statistics"); ``store`` the split's own,
    computed by ``noldo stats`` (CATALOG.md, "Store statistics"). A named tuple: hashable (the device path
    caches tables by it) and carried through Lightning's batch transfer in a ``loader: device`` batch.
    """

    source: str
    s2: tuple[tuple[float, float], ...]
    s1: tuple[tuple[float, float], ...]

    def of(self, modality: str, bands: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), each (len(bands), 1, 1) float64, of some bands of a modality."""
        table = np.array(self.s2 if modality == "s2" else self.s1, dtype="float64")[list(bands)]
        return table[:, 0, None, None], table[:, 1, None, None]


#: TorchGeo's S1 normalisation of its SSL4EO-S12 MoCo weights: (mean, std) of VV and VH in dB.
SSL4EO_MOCO_S1 = ((-12.59, 5.26), (-20.26, 5.91))
NORMALIZATIONS = ("cromss", "zscore", "ssl4eo-moco")
PAPER_STATISTICS = Statistics("ssl4eo", tuple((b.mean, b.std) for b in catalog.S2_BANDS),
                              tuple((b.mean, b.std) for b in catalog.S1_BANDS))
STATISTICS = ("ssl4eo", "store")


def statistics(source: str, split: Split) -> Statistics:
    """The statistics the encodings use: ``ssl4eo`` (the paper's table), ``store`` (``split``'s own, from
    ``noldo stats``) or ``store:NAME`` (those of split NAME of the same store, e.g. the training split's for
    its validation and test splits); a clear error naming ``noldo stats`` when the split has none."""
    if source == "ssl4eo":
        return PAPER_STATISTICS
    if source != "store" and not source.startswith("store:"):
        raise NoldoError(f"stats must be one of {', '.join(STATISTICS)} or store:SPLIT, got {source!r}")
    if source.startswith("store:"):
        split = Split.open(split.location, source.removeprefix("store:"))
    kept = split.attrs.get("statistics") or {}
    fix = f"compute them with: noldo stats {split.location} --split {split.name}"
    if "s2" not in kept or "s1" not in kept:
        raise NoldoError(f"split {split.name} has no S2 and S1 statistics; {fix}")
    pairs = {}
    for modality, bands in (("s2", catalog.S2_BANDS), ("s1", catalog.S1_BANDS)):
        empty = [b.name for b in bands if not kept[modality].get(b.name, {}).get("count")]
        if empty:
            raise NoldoError(f"split {split.name} has no valid {modality} pixels in band {empty[0]}: its statistics "
                             "cannot normalise it; use --stats ssl4eo")
        pairs[modality] = tuple((kept[modality][b.name]["mean"], kept[modality][b.name]["std"]) for b in bands)
    return Statistics(f"store:{split.name}", pairs["s2"], pairs["s1"])


def encode(x: np.ndarray, modality: str, bands: Sequence[int], normalization: str = "cromss",
           stats: Statistics = PAPER_STATISTICS) -> np.ndarray:
    """Encode (bands, H, W) S1 dB or S2 DN as the original pipeline does (docs/method.md, "Normalisation statistics"),
    or as TorchGeo's SSL4EO-S12 MoCo weights expect (docs/weights.md).

    ``cromss``: clip to mean ± 2·std per band, scale to [0, 1], truncate to 1/255 steps (the
    SSL4EO-S12 uint8 encoding). ``zscore``: clip to mean ± 2·std, then (x − mean) / std; both with the
    mean and std of ``stats`` (the paper's table by default). ``ssl4eo-moco``:
    the normalisation of TorchGeo's transforms for those weights, unclipped: S2 DN ÷ 10000, S1
    (x − mean) / std with TorchGeo's statistics (VV −12.59 ± 5.26, VH −20.26 ± 5.91 dB). Nodata (S2 0,
    S1 NaN) becomes 0 in all.
    """
    nodata = np.isnan(x) if modality == "s1" else x == 0
    if normalization == "ssl4eo-moco":
        if modality == "s2":
            out = x.astype("float64") / 10000
        else:
            mean, std = (np.array(v)[list(bands), None, None] for v in zip(*SSL4EO_MOCO_S1, strict=True))
            out = (x.astype("float64") - mean) / std
        return np.where(nodata, 0.0, out).astype("float32")
    mean, std = stats.of(modality, bands)
    low, high = mean - 2 * std, mean + 2 * std
    value = np.clip(np.where(nodata, low, x.astype("float64")), low, high)
    if normalization == "cromss":
        out = np.floor((value - low) / (high - low) * 255) / 255
    elif normalization == "zscore":
        out = (value - mean) / std
    else:
        raise NoldoError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    return np.where(nodata, 0.0, out).astype("float32")


#: TorchGeo's SSL4EO-S12 keys every item has besides ours (where and when, and each channel's wavelength).
GEO_KEYS = ("x", "y", "t", "wavelength")
#: Central wavelength (µm) of each S2 band, and of Sentinel-1's C band as TorchGeo gives it.
S2_WAVELENGTHS = tuple(b.wavelength_nm / 1000 for b in catalog.S2_BANDS)
S1_WAVELENGTH = 55_500.0


def band_indices(modality: str, bands: str | Sequence[int | str]) -> tuple[int, ...]:
    """Band indices of a modality: a subset name (``13B``, ``9B``), or explicit indices or band names
    (``["B04", "B3", "B2"]``: zero-padded aliases accepted, :func:`noldo.catalog.band_name`); S1 has VV, VH."""
    if modality == "s1":
        return (0, 1)
    if isinstance(bands, str):
        return catalog.band_subset(bands)
    return tuple(catalog.band_index(b) if isinstance(b, str) else int(b) for b in bands)


# --- the spatial-temporal prior (docs/method.md, "Spatial-temporal label smoothing") ------------
def _one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    """(…, H, W) labels → (…, K, H, W) float one-hot; 255 (nodata) is all zeros."""
    return (labels[..., None, :, :] == np.arange(k)[:, None, None]).astype("float32")


def _normalise(maps: np.ndarray) -> np.ndarray:
    total = maps.sum(axis=-3, keepdims=True)
    k = maps.shape[-3]
    return np.where(total > 0, maps / np.where(total > 0, total, 1), 1.0 / k)


def prior(labels: np.ndarray, season: int, k: int = NUM_CLASSES) -> np.ndarray:
    """The ``ts`` prior of one sample: ½·(N(G ∗ season frequency) + N(G ∗ onehot(labels[season]))).

    ``labels`` is (seasons, H, W); G is a Gaussian with σ = 3 px, truncate 4, reflect border; N
    renormalises each pixel's class vector (a pixel with no labelled neighbour gets 1/K).
    """
    maps = np.concatenate([_one_hot(labels, k).mean(axis=0), _one_hot(labels[season], k)])  # temporal, spatial
    smooth = gaussian_filter(maps, (0, PRIOR_SIGMA, PRIOR_SIGMA), truncate=PRIOR_TRUNCATE, mode="reflect")
    return (0.5 * (_normalise(smooth[:k]) + _normalise(smooth[k:]))).astype("float32")


def _gaussian_kernel(device: torch.device) -> torch.Tensor:
    x = torch.arange(-PRIOR_RADIUS, PRIOR_RADIUS + 1, dtype=torch.float32, device=device)
    kernel = torch.exp(-0.5 * (x / PRIOR_SIGMA) ** 2)
    return kernel / kernel.sum()


def _blur(maps: torch.Tensor, pad: int) -> torch.Tensor:
    """Separable Gaussian over the last two axes, one grouped convolution per axis, after padding ``pad`` px
    with scipy's ``reflect`` border (edge sample repeated): the output is 2·(radius − pad) px smaller."""
    kernel = _gaussian_kernel(maps.device)
    c = maps.shape[1]
    x = torch.cat([maps[..., :pad].flip(-1), maps, maps[..., maps.shape[-1] - pad:].flip(-1)], dim=-1)
    x = torch.nn.functional.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = torch.cat([x[..., :pad, :].flip(-2), x, x[..., x.shape[-2] - pad:, :].flip(-2)], dim=-2)
    return torch.nn.functional.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def prior_batch(labels: torch.Tensor, season: torch.Tensor, k: int = NUM_CLASSES, margin: int = 0) -> torch.Tensor:
    """:func:`prior` for a batch on the accelerator: labels (N, seasons, H + 2·margin, W + 2·margin), season (N,)
    → (N, K, H, W), the prior of the labels without their outer ``margin`` px.

    With ``margin`` ≥ :data:`PRIOR_RADIUS` (the labels of a crop with the filter margin, as
    :class:`NoLPretrainDataset` hands them over) these are the values of the whole tile's prior.
    """
    trim = max(margin - PRIOR_RADIUS, 0)
    labels = labels[..., trim:labels.shape[-2] - trim, trim:labels.shape[-1] - trim]
    classes = torch.arange(k, device=labels.device).view(1, k, 1, 1)
    frequency = sum((labels[:, s].unsqueeze(1) == classes).float() for s in range(labels.shape[1])) / labels.shape[1]
    chosen = (labels[torch.arange(len(season), device=labels.device), season].unsqueeze(1) == classes).float()
    smooth = _blur(torch.cat([frequency, chosen], dim=1), max(PRIOR_RADIUS - margin, 0))  # temporal, spatial

    def normalise(maps: torch.Tensor) -> torch.Tensor:
        total = maps.sum(dim=1, keepdim=True)
        return torch.where(total > 0, maps / total.clamp_min(1e-30), torch.full_like(maps, 1.0 / k))

    return 0.5 * (normalise(smooth[:, :k]) + normalise(smooth[:, k:]))


# --- joint augmentation -------------------------------------------------------------------------
def flips_and_turns(rng: np.random.Generator, rotation: str = "90", flips: bool = True) -> tuple[bool, bool, int]:
    """The draws of :func:`augment` after its crop, in its order: flip across (last axis), flip down, quarter
    turns (0 unless ``rotation`` is ``"90"``)."""
    across = flips and bool(rng.random() < 0.5)
    down = flips and bool(rng.random() < 0.5)
    return across, down, int(rng.integers(0, 4)) if rotation == "90" else 0


def augment(arrays: dict[str, np.ndarray], rng: np.random.Generator, crop: int | None,
            rotation: str = "90", flips: bool = True) -> dict[str, np.ndarray]:
    """Crop, flip and rotate every (…, H, W) array the same way; labels (integer arrays) use nearest only.

    ``rotation``: ``"90"`` (multiples of 90°, exact), ``"free"`` (uniform ±90° with probability 0.2, as the
    original; bilinear for images and priors, nearest for labels, reflect border) or ``"none"``.
    """
    height, width = next(iter(arrays.values())).shape[-2:]
    if crop is not None and (crop > height or crop > width):
        raise NoldoError(f"crop {crop} is larger than the {height}×{width} tile")
    if crop is not None:
        top, left = rng.integers(0, height - crop + 1), rng.integers(0, width - crop + 1)
        arrays = {k: v[..., top:top + crop, left:left + crop] for k, v in arrays.items()}
    across, down, turns = flips_and_turns(rng, rotation, flips)
    if across:
        arrays = {k: v[..., :, ::-1] for k, v in arrays.items()}
    if down:
        arrays = {k: v[..., ::-1, :] for k, v in arrays.items()}
    if rotation == "90":
        arrays = {k: np.rot90(v, turns, axes=(-2, -1)) for k, v in arrays.items()}
    elif rotation == "free" and rng.random() < 0.2:
        from scipy.ndimage import rotate

        angle = rng.uniform(-90, 90)
        arrays = {k: rotate(v, angle, axes=(-1, -2), reshape=False, order=0 if v.dtype.kind in "iu" else 1,
                            mode="reflect") for k, v in arrays.items()}
    elif rotation not in ("90", "free", "none"):
        raise NoldoError(f"rotation must be '90', 'free' or 'none', got {rotation!r}")
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


# --- datasets -----------------------------------------------------------------------------------
#: Items of a batch read at once from object storage, per data-loader process (each waits on requests).
READ_THREADS = 16


class _Arrays(dict):
    """The arrays of a zarr group by name, each opened on first use."""

    def __init__(self, group: zarr.Group) -> None:
        super().__init__()
        self.zarr_group = group

    def __missing__(self, name: str) -> zarr.Array:
        self[name] = self.zarr_group[name]
        return self[name]


class DatasetNotFoundError(NoldoError, FileNotFoundError):
    """A dataset's store or split is missing; the message names the command that makes or fetches it."""


class StoreDataset(Dataset):
    """Base: a split of a store, opened lazily in whichever process reads it, in TorchGeo's dataset shape
    (class-level metadata, ``transforms``, ``_verify``, ``plot``; docs/torchgeo.md).

    Every item also has TorchGeo's SSL4EO-S12 keys: ``x``, ``y`` (the sample centre in its UTM grid, m),
    ``t`` (the acquisition time of its season, seconds since 1970, NaN when unknown), one value per season
    of the item, and ``wavelength`` (µm) of each image channel (S2 bands, then S1, whose C-band radar
    wavelength TorchGeo gives as 55 500 µm).
    """

    #: The splits of NoLDO-S12 (CATALOG.md, "Splits"); custom split names are accepted too.
    splits: ClassVar[tuple[str, ...]] = tuple(catalog.SPLITS)
    all_bands: ClassVar[tuple[str, ...]] = tuple(b.name for b in catalog.S2_BANDS)
    s1_bands: ClassVar[tuple[str, ...]] = tuple(b.name for b in catalog.S1_BANDS)
    rgb_bands: ClassVar[tuple[str, ...]] = ("B4", "B3", "B2")
    classes: ClassVar[tuple[str, ...]] = tuple(c.name for c in catalog.DW_CLASSES)

    def __init__(self, root: RootLike, split: str, min_clear: int | None = None, stats: str = "ssl4eo",
                 transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self._verify(root, split)
        self.store = Split.open(root, split)  # schema-checked; refuses stores of a newer noldo
        self.root, self.split, self.layout = self.store.location, split, self.store.layout
        self.stats = statistics(stats, self.store)
        self.transforms = transforms
        frame = self.store.index()  # one read: the ids and the acquisition times
        self.ids = frame["sample"].tolist()
        times = acquisition_times(frame, self.layout.seasons)
        self.times = np.where(np.isnat(times), np.nan, times.astype("int64")).astype("float64")
        self.min_clear = min_clear
        if min_clear is not None:
            if not 0 <= min_clear <= 100:
                raise NoldoError(f"--min-clear is a cloud score 0–100, got {min_clear}")
            self._require("s2_cloud")
        self._group: _Arrays | None = None
        self._pid: int | None = None
        self._readers: tuple[int, ThreadPoolExecutor] | None = None
        self._centres: np.ndarray | None = None

    @staticmethod
    def _verify(root: RootLike, split: str) -> None:
        """Cheap check that the split exists (its group and index); the full check is ``noldo verify``."""
        location = StoreLocation.of(root)
        if location.is_file(f"{group_name(split)}/zarr.json") and location.is_file(index_name(split)):
            return
        raise DatasetNotFoundError(
            f"Dataset not found in `root={str(location)!r}`: no split {split!r} there. Fetch a release with "
            f"`noldo download --release OWNER/NAME --out {location}`, convert the published files (`noldo download "
            f"--what nol --out FILES && noldo convert FILES/ssl4eo_s12_nol.zip --out {location}`), or build it "
            f"with `noldo build --region REGION --split {split} --out {location}` (`--region demo --source "
            "synthetic` for the demo)")

    @property
    def group(self) -> _Arrays:
        """The split's arrays by name, opened once per process (opening one costs about 1 ms)."""
        if self._group is None or self._pid != os.getpid():
            self._group, self._pid = _Arrays(self.store.group()), os.getpid()
        return self._group

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_group": None, "_pid": None, "_readers": None}  # workers open their own

    def _where_and_when(self, index: int, seasons: Sequence[int], channels: Sequence[float]) -> dict[str, Any]:
        """TorchGeo's ``x``, ``y``, ``t`` (one per season) and ``wavelength`` (one per channel) of an item."""
        if self._centres is None:  # one read of the small transform array per process
            affine = self.group["transform"][:]
            self._centres = np.stack([affine[:, 2] + affine[:, 0] * self.layout.width / 2,
                                      affine[:, 5] + affine[:, 4] * self.layout.height / 2], axis=1)
        x, y = self._centres[index]
        return {"x": torch.full((len(seasons),), x, dtype=torch.float64),
                "y": torch.full((len(seasons),), y, dtype=torch.float64),
                "t": torch.from_numpy(self.times[index, list(seasons)]),
                "wavelength": torch.tensor(channels, dtype=torch.float32)}

    def _finish(self, item: dict[str, Any]) -> dict[str, Any]:
        return self.transforms(item) if self.transforms is not None else item

    def plot(self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None):
        """A matplotlib Figure of an item (TorchGeo's signature): RGB from the item's bands by name, S1 VV,
        the label, the prior's arg-max and a ``prediction`` if the item has one."""
        return plot(sample, self.legend, rgb=self.rgb_indices, show_titles=show_titles, suptitle=suptitle)

    def __getitems__(self, keys: Sequence[Any]) -> list[dict[str, Any]]:
        """The items of a batch (PyTorch's DataLoader asks for a batch this way). On object storage they are
        read by :data:`READ_THREADS` threads of this process, so many items' requests are in flight at
        once instead of one after another; a local store is read in order."""
        if not self.root.remote or len(keys) < 2:
            return [self[key] for key in keys]
        if self._readers is None or self._readers[0] != os.getpid():
            self._readers = os.getpid(), ThreadPoolExecutor(READ_THREADS, thread_name_prefix="noldo-read")
        return list(self._readers[1].map(self.__getitem__, keys))

    def __len__(self) -> int:
        return len(self.ids)

    def _require(self, *arrays: str) -> None:
        missing = [a for a in arrays if a not in self.layout.arrays]
        if missing:
            raise NoldoError(f"split {self.split} of {self.root} has no {', '.join(missing)} array")

    def _cloudy(self, index: int) -> np.ndarray | None:
        """Where the cloud score of each season is under ``min_clear`` (None when not masking): labels there are
        ignored. Pixels without a score (255) are not masked."""
        if self.min_clear is None:
            return None
        return self.group["s2_cloud"][index] < self.min_clear


class NoLPretrainDataset(StoreDataset):
    """CromSS pretraining samples: S1, S2, the noisy DW label and the spatial-temporal prior of one season.

    Args:
        root, split: the store and its 4-season split.
        bands: S2 subset (``13B``, ``9B``) or band indices.
        crop: output size (random crop when augmenting, centre crop otherwise); None keeps the tile.
        augment: random crop, flips and rotation, applied jointly to images, prior and label.
        normalization: ``cromss`` (the original uint8-style encoding) or ``zscore``.
        stats: the mean and std they use: ``ssl4eo`` (the paper's table) or ``store`` (the split's own, from
            ``noldo stats``).
        rotation: ``90`` or ``free`` (see :func:`augment`).
        season: a fixed season (validation) instead of a random one per item.
        min_clear: ignore labels whose cloud score (``s2_cloud``) is under this (0–100; None: all labels).
        prior: ``cpu`` computes the prior here; ``batch`` returns the labels of all seasons with the filter
            margin as ``labels`` (seasons, h + 24, w + 24), so :func:`prior_batch` with ``margin=12`` computes
            the same prior on the accelerator (with ``rotation: free``, from labels rotated nearest-neighbour
            rather than from the prior rotated bilinearly); ``none`` skips it.
        loader: ``item`` gives the items below; ``device`` the raw crops (README "Performance"): ``s2`` uint16,
            ``s1`` float32, all seasons' ``labels`` uint8 with the filter margin, ``truth`` uint8, the
            ``draws`` (flip across, flip down, quarter turns) and the ``raw`` encoding, which
            :func:`benchmark.device_batch.device_batch` turns on the accelerator into the batch of the items
            (with the prior unless ``prior: none``; ``prior: cpu`` and ``rotation: free`` need ``item``).

    Items: ``{"s1": (2,h,w), "s2": (C,h,w), "label": (h,w) int64 (255 = nodata), "prior": (9,h,w),
    "meta": {...}}``.
    """

    def __init__(self, root: RootLike, split: str = "nol", bands: str | Sequence[int] = "13B",
                 crop: int | None = 256, augment: bool = True, normalization: str = "cromss",
                 rotation: str = "90", season: int | None = None, prior: str = "cpu", seed: int | None = None,
                 min_clear: int | None = None, loader: str = "item", stats: str = "ssl4eo",
                 transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None):
        super().__init__(root, split, min_clear, stats, transforms)
        self._require("s1", "s2", "dw")
        self.bands = band_indices("s2", bands)
        self.legend = catalog.DW_CLASSES
        self.rgb_indices = _rgb_indices(self.bands)
        self.wavelengths = (*(S2_WAVELENGTHS[b] for b in self.bands), S1_WAVELENGTH, S1_WAVELENGTH)
        self.crop, self.augment, self.normalization = crop, augment, normalization
        self.rotation, self.season, self.prior_mode, self.seed = rotation, season, prior, seed
        self.seasons, self.loader = self.layout.seasons, loader
        if loader not in ("item", "device"):
            raise NoldoError(f"loader must be 'item' or 'device', got {loader!r}")
        if loader == "device" and (prior == "cpu" or rotation == "free"):
            raise NoldoError("loader: device computes the prior on the accelerator and turns by multiples of 90°: "
                             "set prior: batch (or none) and rotation: 90 (or none), or use loader: item")

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, rng = _item_rng(key, self.seed)
        season = self.season if self.season is not None else int(rng.integers(self.seasons))
        g = self.group
        labels = g["dw"][index]  # all seasons, for the temporal prior
        if (cloudy := self._cloudy(index)) is not None:
            labels = np.where(cloudy, IGNORE, labels).astype(labels.dtype)
        rows, cols = _window(labels.shape[-2:], self.crop, rng if self.augment else None)
        meta = {"sample": self.ids[index], "index": index, "season": season}
        where = self._where_and_when(index, (season,), self.wavelengths)
        if self.loader == "device":
            return self._finish(self._raw_item(index, season, labels, rows, cols, rng) | where | {"meta": meta})
        arrays = {"s1": encode(g["s1"][index, season][:, rows, cols], "s1", (0, 1), self.normalization, self.stats),
                  "s2": encode(g["s2"][index, season][list(self.bands), rows, cols], "s2", self.bands,
                               self.normalization, self.stats),
                  "label": labels[season][rows, cols].astype("int64")}
        if "truth" in self.layout.arrays:  # a synthetic store: keep the truth for diagnostics
            arrays["truth"] = g["truth"][index][rows, cols].astype("int64")
        if self.prior_mode == "cpu":
            arrays["prior"] = _windowed_prior(labels, season, rows, cols)
        elif self.prior_mode == "batch":
            arrays["labels"] = _with_margin(labels, rows, cols).astype("int64")
        if self.augment:
            arrays = augment(arrays, rng, None, self.rotation)
        item = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        return self._finish(item | where | {"meta": meta})

    def _raw_item(self, index: int, season: int, labels: np.ndarray, rows: slice, cols: slice,
                  rng: np.random.Generator) -> dict[str, Any]:
        """The stored values of the crop, the labels with the filter margin, and the augmentation draws; views
        where they can be, so that the collate copies each pixel once."""
        g = self.group
        s2 = g["s2"][index, season]
        arrays = {"s1": g["s1"][index, season][:, rows, cols],
                  "s2": (s2 if self.bands == tuple(range(len(s2))) else s2[list(self.bands)])[:, rows, cols],
                  "labels": _with_margin(labels, rows, cols)}
        if "truth" in self.layout.arrays:
            arrays["truth"] = g["truth"][index][rows, cols]
        draws = flips_and_turns(rng, self.rotation) if self.augment else (False, False, 0)
        item = {k: torch.from_numpy(v) for k, v in arrays.items()}
        item["draws"] = torch.tensor(draws, dtype=torch.int64)
        item["raw"] = {"bands": self.bands, "normalization": self.normalization, "stats": self.stats,
                       "prior": self.prior_mode != "none"}
        return item


class DownstreamDataset(StoreDataset):
    """Single-modality segmentation tiles with the labels of a task, 255 = ignore (legends: CATALOG.md).

    ``task`` names one of :data:`benchmark.tasks.TASKS`: ``dw`` (DW classes 0–8), ``osm`` (OSM classes
    1–13 → 0–12), ``dfc2020`` (8 DW-like classes, stored in ``dw``), ``truth`` (the known truth of a
    synthetic store); the attribute :attr:`task` is its :class:`~benchmark.tasks.Task`. Items:
    ``{"image": (C,h,w), "label": (h,w) int64, "meta": {...}}``.
    """

    def __init__(self, root: RootLike, split: str, task: str = "dw", modality: str = "s2",
                 bands: str | Sequence[int] = "13B", crop: int | None = None, augment: bool = False,
                 normalization: str = "cromss", season: int = 0, seed: int | None = None,
                 min_clear: int | None = None, stats: str = "ssl4eo",
                 transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None):
        super().__init__(root, split, min_clear, stats, transforms)
        self.task = get_task(task)
        if modality not in ("s1", "s2"):
            raise NoldoError(f"modality must be 's1' or 's2', got {modality!r}")
        self._require(modality, self.task.array)
        self.num_classes, self.modality, self.bands = self.task.num_classes, modality, band_indices(modality, bands)
        self.classes, self.legend = tuple(self.task.class_names), self.task.legend
        self.rgb_indices = _rgb_indices(self.bands) if modality == "s2" else None
        self.wavelengths = tuple(S2_WAVELENGTHS[b] for b in self.bands) if modality == "s2" else (S1_WAVELENGTH,) * 2
        self.crop, self.augment, self.normalization, self.season, self.seed = crop, augment, normalization, season, seed

    @property
    def in_channels(self) -> int:
        return len(self.bands)

    def _label(self, index: int) -> np.ndarray:
        data = self.group[self.task.array][index]
        if data.ndim == 3:  # (season, H, W)
            data = data[self.season]
        labels = self.task.decode(data)
        if (cloudy := self._cloudy(index)) is not None:
            labels[cloudy[self.season]] = IGNORE
        return labels

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, rng = _item_rng(key, self.seed)
        image = self.group[self.modality][index, self.season][list(self.bands)]
        arrays = {"image": encode(image, self.modality, self.bands, self.normalization, self.stats),
                  "label": self._label(index)}
        if self.augment:
            arrays = augment(arrays, rng, self.crop)
        elif self.crop is not None:
            arrays = _centre_crop(arrays, self.crop)
        item = {k: torch.from_numpy(v) for k, v in arrays.items()}
        item["meta"] = {"sample": self.ids[index], "index": index, "modality": self.modality}
        return self._finish(item | self._where_and_when(index, (self.season,), self.wavelengths))


def _item_rng(key: int | tuple[int, int], seed: int | None) -> tuple[int, np.random.Generator]:
    """The sample index and its random generator: from (seed, epoch, index) when the key carries the epoch
    (see :class:`EpochSampler`), so augmentation is reproducible whatever the workers or a resume do."""
    if isinstance(key, tuple):
        index, epoch = key
        return index, np.random.default_rng([seed or 0, epoch, index])
    base = seed if seed is not None else torch.initial_seed()
    return key, np.random.default_rng([base % 2**63, key, torch.randint(0, 2**31, ()).item()])


class EpochSampler(torch.utils.data.DistributedSampler):
    """Yields ``(index, epoch)`` for a subset of indices, shuffled by (seed, epoch) when ``shuffle``.

    Lightning calls :meth:`set_epoch` each epoch, so order and augmentation depend only on the seed and
    the epoch: a resumed run sees exactly what the uninterrupted one would have. Under torch.distributed
    (initialised when the sampler is made) rank r of W takes items r, r + W, … of that order, cut
    (``drop_last``) or cyclically extended to a multiple of W: equal, disjoint shards. Being a
    ``DistributedSampler``, Lightning uses it as it is instead of wrapping it (its wrapper forwards
    ``set_epoch`` only from 2.6.1 on); docs/method.md, "Pretraining samples".
    """

    def __init__(self, indices: Sequence[int], seed: int = 0, shuffle: bool = True, drop_last: bool = False) -> None:
        dist = torch.distributed
        on = dist.is_available() and dist.is_initialized()
        super().__init__(list(indices), dist.get_world_size() if on else 1, dist.get_rank() if on else 0, shuffle,
                         seed, drop_last)  # ``dataset`` holds the indices

    def __iter__(self):
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)
        shard = np.resize(order, self.total_size)[self.rank::self.num_replicas]
        return iter([(self.dataset[i], self.epoch) for i in shard])


def _window(shape: tuple[int, int], crop: int | None, rng: np.random.Generator | None) -> tuple[slice, slice]:
    """The crop window: random with ``rng`` (drawn first, as :func:`augment` does), else centred."""
    height, width = shape
    if crop is None:
        return slice(0, height), slice(0, width)
    if crop > height or crop > width:
        raise NoldoError(f"crop {crop} is larger than the {height}×{width} tile")
    if rng is None:
        top, left = (height - crop) // 2, (width - crop) // 2
    else:
        top, left = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
    return slice(top, top + crop), slice(left, left + crop)


def _with_margin(labels: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """``labels[..., rows, cols]`` with :data:`PRIOR_RADIUS` px more on every side, reflected as scipy's
    ``reflect`` border does (edge sample repeated) where the tile ends: the Gaussian of the prior sees
    there what it sees on the whole tile."""
    height, width = labels.shape[-2:]
    r = PRIOR_RADIUS
    top, left = max(rows.start - r, 0), max(cols.start - r, 0)
    bottom, right = min(rows.stop + r, height), min(cols.stop + r, width)
    pads = ((top - rows.start + r, rows.stop + r - bottom), (left - cols.start + r, cols.stop + r - right))
    return np.pad(labels[..., top:bottom, left:right], ((0, 0),) * (labels.ndim - 2) + pads, mode="symmetric")


def _windowed_prior(labels: np.ndarray, season: int, rows: slice, cols: slice) -> np.ndarray:
    """:func:`prior` of the whole tile, restricted to a window, computed on the window plus the filter
    radius only: identical values, a fraction of the work for small crops."""
    r = PRIOR_RADIUS
    return prior(_with_margin(labels, rows, cols), season)[:, r:-r, r:-r]


def _centre_crop(arrays: dict[str, np.ndarray], crop: int) -> dict[str, np.ndarray]:
    height, width = next(iter(arrays.values())).shape[-2:]
    top, left = (height - crop) // 2, (width - crop) // 2
    return {k: np.ascontiguousarray(v[..., top:top + crop, left:left + crop]) for k, v in arrays.items()}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors (in shared memory in a worker, as PyTorch's default collate does: no copy on the way to the
    main process); keep ``meta`` as a list of dicts and the ``raw`` encoding (``loader: device``) once. In a
    worker, the raw arrays of ``loader: device`` go into a free slot of its :class:`~benchmark.batch_ring.BatchRing`
    when there is one: there the batch holds stand-ins that become tensors in the main process."""
    stack = torch.utils.data.default_collate
    keys = [k for k in items[0] if k not in ("meta", "raw")]
    ring = worker_ring() if "raw" in items[0] else None
    ringed = (ring.collate(items, [k for k in keys if k in RING_ARRAYS]) if ring is not None else None) or {}
    batch = {k: stack([item[k] for item in items]) for k in keys if k not in ringed} | ringed
    batch["meta"] = [item["meta"] for item in items]
    if "raw" in items[0]:
        batch["raw"] = items[0]["raw"]
    return batch


def loader(dataset: Dataset, batch_size: int, shuffle: bool, workers: int = 0, drop_last: bool = False,
           seed: int | None = None, indices: Sequence[int] | None = None) -> torch.utils.data.DataLoader:
    """A DataLoader over ``indices`` (default: all) with an :class:`EpochSampler`, the ``spawn`` start method
    and our collate."""
    sampler = EpochSampler(range(len(dataset)) if indices is None else indices, seed or 0, shuffle, drop_last)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                       collate_fn=collate, drop_last=drop_last,
                                       multiprocessing_context=MP_CONTEXT if workers else None,
                                       persistent_workers=workers > 0)


def _rgb_indices(bands: Sequence[int]) -> tuple[int, int, int] | None:
    """Positions of B4, B3, B2 among the selected S2 bands (None if one is missing)."""
    wanted = [catalog.band_index(name) for name in StoreDataset.rgb_bands]
    return tuple(bands.index(b) for b in wanted) if all(b in bands for b in wanted) else None


def plot(sample: dict[str, Any], legend: tuple[catalog.LandCoverClass, ...] = catalog.DW_CLASSES,
         rgb: Sequence[int] | None = None, show_titles: bool = True, suptitle: str | None = None):
    """A matplotlib Figure of a dataset item: S2 (or the image) as RGB from the channels ``rgb`` (B4, B3, B2 by
    default, which the datasets' ``plot`` finds by name among their bands), S1 VV, label, prior arg-max and
    ``prediction``. Encoded values in [0, 1] are shown as they are."""
    from matplotlib.figure import Figure

    from noldo.plot import label_colours

    panels = []
    image = sample.get("s2", sample.get("image"))
    if image is not None and image.shape[0] > 2 and rgb is not None:
        panels.append(("S2 (B4, B3, B2)", np.clip(image[list(rgb)].permute(1, 2, 0).numpy(), 0, 1)))
    if "s1" in sample or (image is not None and image.shape[0] == 2):
        vv = sample["s1"][0] if "s1" in sample else image[0]
        panels.append(("S1 VV (encoded)", vv.numpy()))
    for key, title in (("label", "label"), ("prediction", "prediction")):
        if key in sample:
            panels.append((title, label_colours(np.asarray(sample[key]).astype("uint8"), legend)))
    if "prior" in sample:
        panels.append(("prior (arg-max)", label_colours(sample["prior"].argmax(0).numpy().astype("uint8"), legend)))
    fig = Figure(figsize=(3.2 * len(panels), 3.4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, data) in zip(axes[0], panels, strict=True):
        ax.imshow(data, cmap="gray" if data.ndim == 2 else None, interpolation="nearest")
        if show_titles:
            ax.set_title(title)
        ax.set_axis_off()
    fig.suptitle(suptitle if suptitle is not None else str(sample.get("meta", {}).get("sample", "")))
    fig.tight_layout()
    return fig
