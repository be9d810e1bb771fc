"""NoLDO-S12 as a TorchGeo dataset: :class:`NoLDOS12` subclasses TorchGeo's ``NonGeoDataset`` (extra ``torchgeo``).

The items are those of the benchmark's own datasets (docs/torchgeo.md): on the 4-season ``nol`` split a
CromSS pretraining item of :class:`~benchmark.data.NoLPretrainDataset` (``s1``, ``s2``, ``label``, ``prior``,
``meta``), on a downstream split a tile of :class:`~benchmark.data.DownstreamDataset` (``image``, ``label``),
both with TorchGeo's SSL4EO-S12 keys ``x``, ``y``, ``t``, ``wavelength``. Nothing is augmented unless
``transforms`` does it (TorchGeo's convention); the whole tile is returned unless ``crop`` is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from benchmark.data import DatasetNotFoundError, DownstreamDataset, NoLPretrainDataset, StoreDataset
from noldo.errors import NoldoError
from noldo.location import RootLike
from noldo.store import Split

try:
    from torchgeo.datasets import DatasetNotFoundError as _TorchGeoNotFound
    from torchgeo.datasets import NonGeoDataset
except ImportError as exc:  # the extra is not installed
    raise NoldoError("benchmark.torchgeo needs TorchGeo: pip install 'noldo[torchgeo]'") from exc

#: The downstream task of each standard split (CATALOG.md, "Splits").
SPLIT_TASKS = {"dw_train": "dw", "dw_test": "dw", "osm_train": "osm", "osm_test": "osm",
               "dfc2020_val": "dfc2020", "dfc2020_test": "dfc2020"}


class NoLDOS12NotFoundError(_TorchGeoNotFound, DatasetNotFoundError):
    """TorchGeo's ``DatasetNotFoundError`` with noldo's message: which split is missing and the command to run."""

    def __init__(self, message: str) -> None:
        FileNotFoundError.__init__(self, message)


class NoLDOS12(NonGeoDataset):
    """NoLDO-S12: Sentinel-1/2 patches with noisy Dynamic World labels (``nol``) and downstream splits.

    Args:
        root: a store (directory or object-store / ``hf://`` URL).
        split: ``nol`` or a downstream split (:attr:`splits`; a custom split name works too).
        bands: S2 bands, a subset name (``13B``, ``9B``) or band names (``B01`` and ``B1`` alike).
        modality: ``s2`` (default) or ``s1``, the image of a downstream split.
        task: the labels of a downstream split (default: the split's own, :data:`SPLIT_TASKS`). A split of
            several seasons is a pretraining split (CromSS items), whatever its name.
        transforms: a callable on each item (dict in, dict out).
        **options: further arguments of the underlying dataset (``crop``, ``season``, ``prior``,
            ``normalization``, ``stats``, ``min_clear``, ``seed``).

    Raises:
        NoLDOS12NotFoundError: the split is not in ``root`` (the message names the command that makes it).

    If you use this dataset, please cite the CromSS paper (``noldo catalog`` prints the citations).
    Automatic download is not offered: ``noldo download`` fetches the published files (sha256-checked) and
    ``noldo build`` regenerates splits; a release on the hub opens in place with ``root="hf://datasets/..."``.
    """

    splits: ClassVar[tuple[str, ...]] = StoreDataset.splits
    all_bands: ClassVar[tuple[str, ...]] = StoreDataset.all_bands
    s1_bands: ClassVar[tuple[str, ...]] = StoreDataset.s1_bands
    rgb_bands: ClassVar[tuple[str, ...]] = StoreDataset.rgb_bands
    classes: ClassVar[tuple[str, ...]] = StoreDataset.classes

    def __init__(self, root: RootLike = "data", split: str = "nol", bands: str | list[str] = "13B",
                 modality: str | None = None, task: str | None = None,
                 transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None, **options: Any) -> None:
        self.root, self.split, self.transforms = root, split, transforms
        self._verify()
        options = {"augment": False, "crop": None, "transforms": transforms, **options}
        if Split.open(root, split).layout.seasons > 1:  # a pretraining split, whatever its name
            if task is not None or modality is not None:
                raise NoldoError(f"split {split} is a multi-season pretraining split: its items hold s1 and s2 "
                                 "with the noisy labels; task and modality are for downstream splits")
            self.dataset: StoreDataset = NoLPretrainDataset(root, split, bands, **options)
        else:
            task = task or SPLIT_TASKS.get(split)
            if task is None:
                raise NoldoError(f"split {split} is not a standard downstream split: give task= "
                                 "(dw, osm, dfc2020 or truth)")
            self.dataset = DownstreamDataset(root, split, task, modality or "s2", bands, **options)
        self.classes = self.dataset.classes

    def _verify(self) -> None:
        """Check that the split is there (its group and index); ``noldo verify`` checks every byte."""
        try:
            StoreDataset._verify(self.root, self.split)
        except DatasetNotFoundError as exc:
            raise NoLDOS12NotFoundError(str(exc)) from None

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)

    def plot(self, sample: dict[str, Any], show_titles: bool = True, suptitle: str | None = None):
        """A matplotlib Figure of an item: RGB (B4, B3, B2 by name), S1 VV, label, prior, ``prediction``."""
        return self.dataset.plot(sample, show_titles=show_titles, suptitle=suptitle)
