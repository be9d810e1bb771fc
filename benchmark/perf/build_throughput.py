"""Build throughput of the synthetic source: samples/s at 1 and 2 workers, against the bare source.

    python -m benchmark.perf.build_throughput [--samples 32] [--tile-size 264] [--json out.json]

Rows: the source alone in one thread (no store: the cost of simulating the data), then full
`noldo build` runs (source + unit cache + shard writer + manifest) at 1 and 2 workers. Ratios are
against the 1-worker build in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmark.perf.common import report
from noldo.build import BuildSpec, build
from noldo.regions import candidates, parse_region
from noldo.sources import Rejected
from noldo.sources.synthetic import SyntheticSource


def source_only(samples: int, tile: int) -> tuple[float, int]:
    source, done, started = SyntheticSource(), 0, time.perf_counter()
    for candidate in candidates(parse_region("demo"), tile_size=tile):
        try:
            plan = source.plan(candidate)
        except Rejected:
            continue
        for name in source.arrays:
            source.fetch(candidate, plan, name)
        done += 1
        if done == samples:
            return time.perf_counter() - started, done
    raise RuntimeError("demo region exhausted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--tile-size", type=int, default=264)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows, results = [], {}
    seconds, n = source_only(args.samples, args.tile_size)
    results["source"] = (seconds, n)
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            spec = BuildSpec("demo", "synthetic", samples=args.samples, tile_size=args.tile_size)
            summary = build(spec, Path(tmp) / "store", workers=workers)
            results[workers] = (summary["seconds"], summary["samples"])
    base = results[1][1] / results[1][0]
    for label, key in (("source only, 1 thread (no store)", "source"), ("noldo build, 1 worker", 1),
                       ("noldo build, 2 workers", 2)):
        seconds, n = results[key]
        rate = n / seconds
        rows.append((label, n, f"{seconds:.1f}", f"{rate:.2f}", f"{rate / base:.2f}×"))
    report("build_throughput", ("run", "samples", "seconds", "samples/s", "vs 1-worker build"), rows, args.json,
           samples=args.samples, tile_size=args.tile_size)


if __name__ == "__main__":
    main()
