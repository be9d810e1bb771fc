"""``noldo build --split osm --like ROOT/<split>``: OSM land-use labels for the samples of an existing split."""

from __future__ import annotations

import shlex
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from tqdm.auto import tqdm

from noldo.errors import NoldoError
from noldo.grid import grid_from_affine
from noldo.store import SplitWriter, index_path, split_path, stored_layout


def add_osm(root: Path, split: str, options: Mapping[str, Any], *, workers: int | None = None,
            progress: bool = False) -> dict[str, Any]:
    """``noldo build --split osm --like ROOT/<split>``: add an ``osm`` array to an existing split, for its
    own samples and grids, with QC against its Dynamic World labels in the index.

    Samples are never dropped (the split's other arrays stay aligned): ``osm_qc`` in the index says
    whether a sample passes ``min_coverage`` and ``min_agreement``.
    """
    from noldo.sources.osm import OsmSource, quality

    started = time.monotonic()
    min_agreement = options.get("min_agreement", 0.0)
    source = OsmSource(**{k: v for k, v in options.items() if k != "min_agreement"})
    source.check()
    layout = stored_layout(root, split)
    if layout is None:
        raise NoldoError(f"{split_path(root, split)} has no noldo layout; it cannot take an osm array")
    command = shlex.join(["noldo", "build", "--split", "osm", "--like", str(Path(root) / split),
                          *(a for k, v in sorted(options.items()) if v is not None
                            for a in (f"--{k.replace('_', '-')}", str(v)))])
    writer = SplitWriter(root, split, layout, {})
    writer.add_arrays(("osm",), {"osm_command": command})
    group = zarr.open_group(zarr.storage.LocalStore(split_path(root, split), read_only=True), mode="r",
                            use_consolidated=False)
    ids = pd.read_parquet(index_path(root, split), columns=["sample"])["sample"].tolist()
    pending = writer.pending_shards()
    stats = Counter()
    with ThreadPoolExecutor(workers or source.parallelism) as pool:
        for shard in tqdm(pending, desc=f"osm {split}", unit="shard", disable=not progress):
            start, stop = writer.layout.shard_range(shard)
            epsg, affine = group["crs_epsg"][start:stop], group["transform"][start:stop]
            grids = [grid_from_affine(e, a, layout.height, layout.width) for e, a in zip(epsg, affine, strict=True)]
            results = list(pool.map(source.labels, grids))
            dw = group["dw"][start:stop] if "dw" in layout.arrays else [None] * len(grids)
            rows = []
            for i, ((osm, meta), labels) in enumerate(zip(results, dw, strict=True)):
                qc = quality(osm, labels)
                passed = qc["osm_coverage"] >= source.min_coverage and (
                    min_agreement == 0 or qc["osm_agreement"] >= min_agreement)
                rows.append({"sample": ids[start + i], **meta, **qc, "osm_qc": bool(passed)})
                stats["passed"] += passed
            writer.write_shard(shard, {"osm": np.stack([r[0] for r in results])}, pd.DataFrame(rows))
    manifest = writer.finalize()
    table = pd.read_parquet(index_path(root, split))
    return {"root": str(root), "split": split, "samples": len(table), "shards_written": len(pending),
            "osm_coverage_mean": round(float(table["osm_coverage"].mean()), 4),
            "osm_agreement_mean": round(float(table["osm_agreement"].mean()), 4),
            "osm_qc_passed": int(table["osm_qc"].sum()), "stored_bytes": manifest["total_bytes"],
            "seconds": round(time.monotonic() - started, 2)}
