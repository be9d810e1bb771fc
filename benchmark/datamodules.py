"""Lightning DataModules over the datasets of :mod:`benchmark.data`, for the CLIs."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np

from benchmark.data import DownstreamDataset, NoLPretrainDataset, loader
from benchmark.tasks import get_task


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded (train, validation) partition of ``range(n)``; validation has ⌈n·fraction⌉ items (≥ 1)."""
    order = np.random.default_rng(seed).permutation(n)
    size = max(1, math.ceil(n * fraction)) if n > 1 else 0
    return sorted(order[size:].tolist()), sorted(order[:size].tolist())


class NoLDataModule(L.LightningDataModule):
    """Pretraining data: augmented training samples and a held-out validation set without augmentation,
    centre-cropped, at a fixed season; ``loader`` as :class:`NoLPretrainDataset` takes it."""

    def __init__(self, root: str | Path, split: str = "nol", bands: str = "13B", crop: int = 256,
                 batch_size: int = 8, workers: int = 0, val_fraction: float = 0.05, normalization: str = "cromss",
                 rotation: str = "90", prior: str = "cpu", seed: int = 0, min_clear: int | None = None,
                 loader: str = "item", stats: str = "ssl4eo"):
        super().__init__()
        self.root, self.split, self.bands, self.crop, self.min_clear = root, split, bands, crop, min_clear
        self.loader, self.stats = loader, stats
        self.batch_size, self.workers, self.val_fraction = batch_size, workers, val_fraction
        self.normalization, self.rotation, self.prior, self.seed = normalization, rotation, prior, seed

    def setup(self, stage: str | None = None) -> None:
        common = {"split": self.split, "bands": self.bands, "crop": self.crop, "normalization": self.normalization,
                  "prior": self.prior, "min_clear": self.min_clear, "loader": self.loader, "stats": self.stats}
        self.train_set = NoLPretrainDataset(self.root, augment=True, rotation=self.rotation, seed=self.seed, **common)
        self.val_set = NoLPretrainDataset(self.root, augment=False, season=0, **common)
        self.train_ids, self.val_ids = split_indices(len(self.train_set), self.val_fraction, self.seed)

    def train_dataloader(self):
        return loader(self.train_set, self.batch_size, shuffle=True, workers=self.workers, drop_last=True,
                      seed=self.seed, indices=self.train_ids)

    def val_dataloader(self):
        return loader(self.val_set, self.batch_size, shuffle=False, workers=self.workers, indices=self.val_ids)


class DownstreamDataModule(L.LightningDataModule):
    """Fine-tuning data: train (augmented), validation and test splits of one task and modality.

    Evaluation never drops samples. ``train_fraction`` keeps a seeded subset of the training tiles.
    """

    def __init__(self, root: str | Path, task: str, modality: str, train_split: str, test_split: str,
                 val_split: str | None = None, bands: str = "13B", crop: int | None = None, batch_size: int = 8,
                 workers: int = 0, train_fraction: float = 1.0, normalization: str = "cromss", seed: int = 0,
                 min_clear: int | None = None, stats: str = "ssl4eo"):
        super().__init__()
        self.root, self.task, self.modality, self.bands, self.min_clear = root, task, modality, bands, min_clear
        self.stats = f"store:{train_split}" if stats == "store" else stats  # every split encoded alike
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.crop, self.batch_size, self.workers = crop, batch_size, workers
        self.train_fraction, self.normalization, self.seed = train_fraction, normalization, seed

    def dataset(self, which: str, augment: bool = False) -> DownstreamDataset:
        return DownstreamDataset(self.root, self.splits[which], self.task, self.modality, self.bands,
                                 crop=self.crop if augment else None, augment=augment,
                                 normalization=self.normalization, seed=self.seed, min_clear=self.min_clear,
                                 stats=self.stats)

    def setup(self, stage: str | None = None) -> None:
        self.train_set = self.dataset("train", augment=True)
        count = max(1, round(len(self.train_set) * self.train_fraction))
        self.train_ids = sorted(np.random.default_rng(self.seed).permutation(len(self.train_set))[:count].tolist())
        self.test_set = self.dataset("test")
        self.val_set = self.dataset("val") if self.splits["val"] else self.test_set

    @property
    def num_classes(self) -> int:
        return get_task(self.task).num_classes

    def train_dataloader(self):
        return loader(self.train_set, self.batch_size, shuffle=True, workers=self.workers, drop_last=True,
                      seed=self.seed, indices=self.train_ids)

    def val_dataloader(self):
        return loader(self.val_set, self.batch_size, shuffle=False, workers=self.workers)

    def test_dataloader(self):
        return loader(self.test_set, self.batch_size, shuffle=False, workers=self.workers)
