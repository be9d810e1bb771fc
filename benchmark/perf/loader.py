"""Pretraining loader throughput: against the decode limit, our Zarr store vs the original CromSS LMDB layout,
and the prior's cost.

    python -m benchmark.perf.loader [--samples 64] [--epochs 2] [--json out.json]

First our loader's two paths against the decode limit, a loader that reads the same chunks (same samples,
same seasons) and does nothing else, each with the same workers: the per-item path (``loader: item``) with
the prior on the CPU and with ``prior: batch``, and the loader side of ``loader: device`` (raw crops; what
:func:`benchmark.device_batch.device_batch` then does runs on the accelerator). Then the per-item path
against the CromSS LMDB, where both loaders do the same work per item (read one sample, pick a season,
encode, build the prior, crop, flip, rotate) and only the storage differs. The LMDB is written as CromSS
did: three LMDBs of pickled ``(bytes, shape, id)`` uint8 arrays keyed by index, read with
``readahead=False``. Last, the prior of one sample on the CPU (per item, in the loader) against the
batched version that can run on the accelerator (on the CPU here). Each loader rate is the best of
``--epochs`` epochs, the loaders of a table taking turns, so that a shared machine's load hits all alike.
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

from benchmark.data import NUM_CLASSES, NoLPretrainDataset, _item_rng, augment, encode, loader, prior, prior_batch
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


class DecodeLimit(NoLPretrainDataset):
    """The chunks a :class:`NoLPretrainDataset` item reads (its season's S1 and S2, all seasons' labels, the
    truth and cloud scores when used), read and decoded, and nothing else: the ceiling of any loader."""

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, rng = _item_rng(key, self.seed)
        season = self.season if self.season is not None else int(rng.integers(self.seasons))
        reads = [("dw", index), ("s1", (index, season)), ("s2", (index, season))]
        if "truth" in self.layout.arrays:
            reads.append(("truth", index))
        if self.min_clear is not None:
            reads.append(("s2_cloud", index))
        for name, where in reads:
            self.group[name][where]
        return {"meta": index}


def rates(datasets: dict, workers: int, epochs: int, batch: int = 8, indices=None) -> dict[str, float]:
    """Samples per second of each dataset's loader: the best of ``epochs`` epochs after a warm-up epoch (worker
    start-up excluded), the loaders taking turns so that the load of a shared machine hits them alike."""
    loaders = {name: loader(data, batch, shuffle=True, workers=workers, seed=0, indices=indices)
               for name, data in datasets.items()}
    for data in loaders.values():
        for batch in data:
            _finished(batch)
    best = dict.fromkeys(loaders, 0.0)
    for _ in range(epochs):
        for name, data in loaders.items():
            started = time.perf_counter()
            seen = sum(_finished(batch) for batch in data)
            best[name] = max(best[name], seen / (time.perf_counter() - started))
    return best


def _finished(batch: dict) -> int:
    """A batch's size, the batch done with: a ``loader: device`` batch from a worker's ring is released, as
    :func:`benchmark.device_batch.device_batch` releases it once it has the batch on the accelerator."""
    if "ring" in batch:
        batch["ring"].release()
    return len(batch["meta"])


#: The loader paths measured against the decode limit: per item with the CPU prior, with the prior left to the
#: accelerator, and the raw crops of ``loader: device``.
PATHS = {"item, CPU prior": {"prior": "cpu"}, "item, prior: batch": {"prior": "batch"},
         "device (loader side)": {"prior": "batch", "loader": "device"}}


def against_the_limit(store: Path, workers: int, epochs: int) -> tuple:
    """A row: the decode limit's samples/s, then each of :data:`PATHS` and its share of the limit."""
    found = rates({"limit": DecodeLimit(store, seed=0)} | {name: NoLPretrainDataset(store, seed=0, **options)
                                                          for name, options in PATHS.items()}, workers, epochs)
    row = [workers, f"{found['limit']:.1f}"]
    for name in PATHS:
        row += [f"{found[name]:.1f}", f"{found[name] / found['limit']:.0%}"]
    return tuple(row)


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
        limit_rows = [against_the_limit(store, workers, args.epochs) for workers in (0, 1, 2)]
        report("decode_limit", ("workers", "decode limit samples/s", *(c for p in PATHS for c in (p, "of limit"))),
               limit_rows, None)
        print()
        rows = []
        for workers in (0, 1, 2):
            found = rates({"ours": zarr_set, "theirs": lmdb_set}, workers, args.epochs)
            rows.append((workers, f"{found['ours']:.1f}", f"{found['theirs']:.1f}",
                         f"{found['ours'] / found['theirs']:.2f}×"))
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
               limit=limit_rows, loader=rows, samples=n, cpu_count=os.cpu_count())


if __name__ == "__main__":
    main()
