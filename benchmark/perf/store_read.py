"""Reading the same S2 data from our Zarr store, one GeoTIFF per sample, and the CromSS LMDB layout.

    python -m benchmark.perf.store_read [--samples 64] [--reads 200] [--json out.json]

Random whole-sample reads (4 seasons × 13 bands) and random one-season reads (what pretraining does),
in samples/s and MB/s of decoded data, in one process and with 1 or 2 worker processes that each open
their own handle. Also the size of each layout and its compression ratio. Warm page cache.
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from benchmark.perf.common import report
from noldo.store import Split

_handles: dict = {}


def _open(layout: str, path: str):
    if layout not in _handles:
        if layout == "zarr":
            import zarr

            _handles[layout] = zarr.open_group(path, mode="r")["s2"]
        elif layout == "lmdb":
            import lmdb

            _handles[layout] = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False)
        else:
            _handles[layout] = Path(path)
    return _handles[layout]


def read(layout: str, path: str, job: tuple[int, int | None]) -> int:
    """Read sample ``index`` (one ``season`` or all); returns the decoded bytes."""
    index, season = job
    handle = _open(layout, path)
    if layout == "zarr":
        data = handle[index] if season is None else handle[index, season]
    elif layout == "lmdb":
        with handle.begin() as txn:
            raw, shape, _ = pickle.loads(txn.get(str(index).encode()))
        data = np.frombuffer(raw, dtype="uint16").reshape(shape)
        data = data if season is None else data[season]
    else:
        import rasterio

        with rasterio.open(handle / f"{index:05d}.tif") as src:
            bands = None if season is None else list(range(season * 13 + 1, season * 13 + 14))
            data = src.read(bands)
    return data.nbytes


def write_layouts(store: Path, folder: Path) -> dict[str, tuple[str, int]]:
    """GeoTIFF-per-sample (ZSTD, predictor 2) and LMDB copies of the store's S2; path and bytes of each."""
    import lmdb
    import rasterio

    group = Split.open(store, "nol").group()
    s2, grids = group["s2"], {"crs_epsg": group["crs_epsg"][:], "transform": group["transform"][:]}
    n, seasons, bands, h, w = s2.shape
    tif = folder / "geotiff"
    tif.mkdir()
    env = lmdb.open(str(folder / "s2.lmdb"), map_size=1 << 36)
    with env.begin(write=True) as txn:
        for i in range(n):
            data = s2[i]
            with rasterio.open(tif / f"{i:05d}.tif", "w", driver="GTiff", width=w, height=h, count=seasons * bands,
                               dtype="uint16", compress="zstd", predictor=2, interleave="band", tiled=True,
                               crs=f"EPSG:{grids['crs_epsg'][i]}",
                               transform=rasterio.Affine(*grids["transform"][i])) as dst:
                dst.write(data.reshape(seasons * bands, h, w))
            txn.put(str(i).encode(), pickle.dumps((data.tobytes(), data.shape, f"{i:07d}")))
    env.close()

    def size(path: Path) -> int:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size

    return {"zarr": (str(store / "nol.zarr"), size(store / "nol.zarr" / "s2")),
            "geotiff": (str(tif), size(tif)), "lmdb": (str(folder / "s2.lmdb"), size(folder / "s2.lmdb"))}


def throughput(layout: str, path: str, jobs: list, workers: int) -> float:
    started = time.perf_counter()
    if workers == 0:
        total = sum(read(layout, path, job) for job in jobs)
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.map(partial(read, layout, path), jobs[: 2 * workers])  # start the workers, open the handles
            started = time.perf_counter()
            total = sum(pool.map(partial(read, layout, path), jobs, chunksize=4))
    return len(jobs) / (time.perf_counter() - started), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        from noldo.build import BuildSpec, build

        store = Path(tmp) / "demo"
        build(BuildSpec("demo", "synthetic", samples=args.samples), store)
        layouts = write_layouts(store, Path(tmp))
        raw = args.samples * 4 * 13 * 264 * 264 * 2
        size_rows = [(name, f"{size / 1e6:.0f}", f"{raw / size:.2f}×") for name, (_, size) in layouts.items()]
        report("store_size", ("layout", "MB on disk", "compression"), size_rows, None)
        rows = []
        for kind in ("whole sample", "one season"):
            jobs = [(int(i), None if kind == "whole sample" else int(rng.integers(4)))
                    for i in rng.integers(0, args.samples, args.reads)]
            for workers in (0, 1, 2):
                rates = {name: throughput(name, path, jobs, workers) for name, (path, _) in layouts.items()}
                zarr_rate = rates["zarr"][0]
                rows.append((kind, workers, *(f"{r:.0f} ({b / 1e6 / (len(jobs) / r):.0f} MB/s)"
                                              for r, b in rates.values()),
                             f"{zarr_rate / rates['geotiff'][0]:.2f}×", f"{zarr_rate / rates['lmdb'][0]:.2f}×"))
        print()
        report("store_read", ("read", "workers", "Zarr samples/s", "GeoTIFF samples/s", "LMDB samples/s",
                              "Zarr vs GeoTIFF", "Zarr vs LMDB"), rows, args.json, sizes=size_rows)


if __name__ == "__main__":
    main()
