"""Memory and time of ``noldo stats`` against numpy over the whole arrays, on stores of growing size.

    python -m benchmark.perf.stats [--samples 250 1000] [--tile 128] [--workers 2] [--json out.json]

For each size a synthetic `nol` store is built (once, kept under --work), then measured in fresh
processes: ``noldo stats --no-store`` (dask, streamed shard by shard) and the baseline that loads
each array whole and calls numpy (``np.percentile`` etc., as a notebook would). Peak resident memory
is the child's ``ru_maxrss``. The streamed peak should stay flat while the baseline's grows with the
store.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmark.perf.common import report
from noldo.store import Split

_BASELINE = """
import sys, numpy as np, zarr
group = zarr.open_group(sys.argv[1], mode="r")
for name in ("s2", "s1"):
    data = group[name][:]
    axis = 2
    for c in range(data.shape[axis]):
        v = np.take(data, c, axis=axis).ravel()
        v = v[~np.isnan(v)] if v.dtype.kind == "f" else v[v != 0]
        [np.percentile(v, p, method="inverted_cdf") for p in (1, 2, 98, 99)], v.mean(), v.std(), v.min(), v.max()
    del data
for name in ("dw", "truth"):
    labels = group[name][:].ravel()
    np.bincount(labels[labels != 255], minlength=9)
"""


def _measure(command: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (MB; Linux reports ``ru_maxrss`` in KiB) of a child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{command[:3]} failed with status {status}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/noldo-perf-stats"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    noldo = [sys.executable, "-m", "noldo", "-q"]
    rows = []
    for n in args.samples:
        root = args.work / f"nol-{n}-{args.tile}"
        if not (root / "manifest.json").exists():
            subprocess.run([*noldo, "build", "--region", "8,46,14,50", "--source", "synthetic", "--out", str(root),
                            "--samples", str(n), "--tile-size", str(args.tile)], check=True, stdout=subprocess.DEVNULL)
        stored = sum(p.stat().st_size for p in (root / "nol.zarr").rglob("*") if p.is_file())
        layout = Split.open(root, "nol").layout
        decoded = sum(layout.nbytes(a) for a in ("s2", "s1", "dw", "truth")) / 1e6
        streamed = _measure([*noldo, "stats", str(root), "--no-store", "--workers", str(args.workers)])
        whole = _measure([sys.executable, "-c", _BASELINE, str(root / "nol.zarr")])
        rows.append((n, f"{decoded:,.0f}", f"{stored / 1e6:,.0f}", f"{streamed[1]:,.0f}", f"{streamed[0]:.1f}",
                     f"{whole[1]:,.0f}", f"{whole[0]:.1f}"))
    report("stats", ("samples", "decoded MB", "stored MB", "noldo stats peak MB", "noldo stats s",
                     "numpy whole-array peak MB", "numpy s"), rows, args.json, tile=args.tile, workers=args.workers)


if __name__ == "__main__":
    main()
