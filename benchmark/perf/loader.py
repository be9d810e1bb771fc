"""Pretraining loader throughput: our Zarr store vs the original CromSS LMDB layout, and the prior's cost.

    python -m benchmark.perf.loader [--samples 64] [--epochs 2] [--json out.json]

Both loaders do the same work per item (read one sample, pick a season, encode, build the prior,
crop, flip, rotate); only the storage differs. The LMDB is written as CromSS did: three LMDBs of
pickled ``(bytes, shape, id)`` uint8 arrays keyed by index, read with ``readahead=False``. Then the
prior of one sample on the CPU (per item, in the loader) against the batched version that can run on
the accelerator (on the CPU here).
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.data import NUM_CLASSES, NoLPretrainDataset, augment, encode, loader, prior, prior_batch
from benchmark.perf.common import report
from noldo.store import Split


def write_lmdb(store: Path, target: Path) -> int:
    """The store's nol split as the three CromSS LMDBs (uint8, the SSL4EO-S12 encoding)."""
    import lmdb

    group = Split.open(store, "nol").group()
    n = group["s2"].shape[0]
    for name, array in (("s1", "s1"), ("s2c", "s2"), ("labels", "dw")):
        env = lmdb.open(str(target / f"0k_251k_uint8_{name}.lmdb"), map_size=1 << 34)
        with env.begin(write=True) as txn:
            for i in range(n):
                data = group[array][i]
                if array != "dw":
                    bands = tuple(range(data.shape[1]))
                    data = np.stack([encode(season, array, bands) for season in data])
                    data = np.round(data * 255).astype("uint8")
                txn.put(str(i).encode(), pickle.dumps((data.tobytes(), data.shape, f"{i:07d}")))
        env.close()
    return n


class LmdbPretrainDataset(torch.utils.data.Dataset):
    """The original storage read the original way, with the same per-item work as NoLPretrainDataset."""

    def __init__(self, root: Path, n: int, crop: int = 256) -> None:
        self.root, self.n, self.crop, self.envs = root, n, crop, None

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict:
        return {**self.__dict__, "envs": None}  # each worker opens its own environments

    def _read(self, name: str, index: int) -> np.ndarray:
        with self.envs[name].begin() as txn:
            data, shape, _ = pickle.loads(txn.get(str(index).encode()))
        return np.frombuffer(data, dtype="uint8").reshape(shape)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        """``key`` is ``(index, epoch)``, as :class:`benchmark.data.EpochSampler` yields it."""
        import lmdb

        index, epoch = key

        if self.envs is None:
            self.envs = {name: lmdb.open(str(self.root / f"0k_251k_uint8_{name}.lmdb"), readonly=True, lock=False,
                                         readahead=False, meminit=False) for name in ("s1", "s2c", "labels")}
        rng = np.random.default_rng([index, epoch])
        season = int(rng.integers(4))
        labels = self._read("labels", index)
        arrays = {"s1": self._read("s1", index)[season] / np.float32(255),
                  "s2": self._read("s2c", index)[season] / np.float32(255),
                  "label": labels[season].astype("int64"), "prior": prior(labels, season)}
        return {k: torch.from_numpy(v) for k, v in augment(arrays, rng, self.crop).items()} | {"meta": {}}


def throughput(dataset, workers: int, epochs: int, batch: int = 8) -> float:
    """Samples per second over ``epochs`` after a warm-up epoch (worker start-up excluded)."""
    data = loader(dataset, batch, shuffle=True, workers=workers, seed=0)
    for _ in data:
        pass
    started, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for item in data:
            seen += len(item["s2"])
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None, help="an existing store (default: build a demo store)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.data
        if store is None:
            from noldo.build import BuildSpec, build

            store = Path(tmp) / "demo"
            build(BuildSpec("demo", "synthetic", samples=args.samples), store)
        (Path(tmp) / "lmdb").mkdir()
        n = write_lmdb(store, Path(tmp) / "lmdb")
        zarr_set, lmdb_set = NoLPretrainDataset(store, seed=0), LmdbPretrainDataset(Path(tmp) / "lmdb", n)
        rows = []
        for workers in (0, 1, 2):
            ours, theirs = throughput(zarr_set, workers, args.epochs), throughput(lmdb_set, workers, args.epochs)
            rows.append((workers, f"{ours:.1f}", f"{theirs:.1f}", f"{ours / theirs:.2f}×"))
        report("loader", ("workers", "Zarr store samples/s", "CromSS LMDB samples/s", "ratio"), rows, None)
        torch.set_num_threads(os.cpu_count() or 1)
        count = min(32, n)
        labels = torch.from_numpy(np.stack([zarr_set.group["dw"][i] for i in range(count)]).astype("int64"))
        seasons = torch.randint(0, 4, (count,))
        started = time.perf_counter()
        for i in range(count):
            prior(labels[i].numpy().astype("uint8"), int(seasons[i]), NUM_CLASSES)
        per_item = (time.perf_counter() - started) / count
        prior_batch(labels[:2], seasons[:2])  # warm-up
        started = time.perf_counter()
        prior_batch(labels, seasons)
        batched = (time.perf_counter() - started) / count
        prior_rows = [("per item in the loader (numpy/scipy)", f"{per_item * 1000:.1f}", "1.00×"),
                      (f"batched, {count} samples (torch, CPU)", f"{batched * 1000:.1f}", f"{batched / per_item:.2f}×")]
        print()
        report("prior", ("264×264 prior", "ms per sample", "vs per item"), prior_rows, args.json,
               loader=rows, samples=n, cpu_count=os.cpu_count())


if __name__ == "__main__":
    main()
