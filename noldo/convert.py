"""``noldo convert``: the original NoLDO-S12 zips (GeoTIFF folders) and DFC2020 into noldo stores.

Recognised layouts (docs/data.md, "Published files"):

* NoL labels: ``dw_complete_ids.csv`` (ids, sub1..sub4) and ``<id:07d>/<s2 system:index>/label.tif``
  → split ``nol`` with the ``dw`` array (4 seasons, chronological; values 0–8 as published).
* DW / OSM tiles: ``<split>/image_s1/s1_<name>.tif``, ``image_s2/s2_<name>.tif``,
  ``label_dw/dw_<name>.tif``, ``label_osm/osm_<name>.tif`` → one split per folder (``dw_train``,
  ``osm_test``, ...); expert DW values 1–9 → 0–8, unlabelled (0) and cloud (10) → 255.
* DFC2020 (SEN12MS style): ``{s1,s2,dfc}_{validation,test}/ROIs0000_<split>_<kind>_0_p<i>.tif``
  → ``dfc2020_val`` / ``dfc2020_test`` with the DFC classes mapped onto 8 Dynamic World classes.

Every sample keeps its own georeference (EPSG and transform from its files). Zip members are read
through :mod:`zipfile`, which checks each member's CRC; a source sitting in a ``noldo download``
root is first checked against the hub's sha256. Conversion writes whole shards and resumes.
"""

from __future__ import annotations

import csv
import io
import re
import time
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from noldo import catalog
from noldo.download import STATE, Downloader
from noldo.encodings import DFC_TO_DW, EXPERT_DW, OSM_ORDERS
from noldo.errors import NoldoError
from noldo.grid import grid_from_affine
from noldo.location import RootLike, StoreLocation
from noldo.lock import writing
from noldo.manifest import write_manifest
from noldo.store import Layout, SplitWriter, georef_arrays

_TILE = re.compile(r"^(?:(?P<prefix>.*)/)?(?P<split>[^/]+)/(?P<folder>image_s1|image_s2|label_dw|label_osm)/"
                   r"(?P<kind>s1|s2|dw|osm)_(?P<name>.+)\.tif$")
_DFC = re.compile(r"^(?:.*/)?(?P<kind>s1|s2|dfc)_(?P<split>validation|test)/ROIs\d+_(?:validation|test)_"
                  r"(?:s1|s2|dfc)_0_p(?P<name>\d+)\.tif$")
_NOL = re.compile(r"^(?:(?P<prefix>.*)/)?(?P<id>\d{6,7})/(?P<sub>[^/]+)/label\.tif$")
_ARRAY = {"s2": "s2", "s1": "s1", "dw": "dw", "osm": "osm", "dfc": "dw"}


class Source:
    """A zip file or a folder, read member by member (zip members are CRC-checked on read)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.zip = None
            self.names = sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file())
        elif zipfile.is_zipfile(self.path):
            self.zip = zipfile.ZipFile(self.path)
            self.names = sorted(n for n in self.zip.namelist() if not n.endswith("/"))
        else:
            raise NoldoError(f"{self.path} is neither a folder nor a readable zip file")

    def read(self, name: str) -> bytes:
        try:
            return self.zip.read(name) if self.zip else (self.path / name).read_bytes()
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:  # CRC mismatch, broken deflate, truncation
            raise NoldoError(f"{self.path}: member {name} is damaged ({exc}); fetch the file again with "
                             "noldo download") from None


def read_tif(source: Source, name: str) -> tuple[np.ndarray, int | None, tuple[float, ...]]:
    """Pixels (bands, height, width), EPSG and transform of a GeoTIFF member."""
    from rasterio.errors import RasterioIOError
    from rasterio.io import MemoryFile

    try:
        with MemoryFile(source.read(name)) as memory, memory.open() as src:
            epsg = src.crs.to_epsg() if src.crs else None
            return src.read(), epsg, tuple(src.transform)[:6]
    except RasterioIOError as exc:
        raise NoldoError(f"{source.path}: {name} is not a readable GeoTIFF ({exc})") from None


@dataclass
class Item:
    """One sample to convert: its key, the member(s) of each array, and index columns."""

    key: str
    files: dict[str, list[str]]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """One split to write."""

    split: str
    seasons: int
    arrays: tuple[str, ...]
    items: list[Item]
    kind: str  # "nol", "tiles" or "dfc"


def _nol_plan(source: Source) -> Plan | None:
    table_name = next((n for n in source.names if n.rsplit("/", 1)[-1] == "dw_complete_ids.csv"), None)
    if table_name is None:
        return None
    labels = {(int(m["id"]), m["sub"]): n for n in source.names if (m := _NOL.match(n))}
    rows = list(csv.DictReader(io.StringIO(source.read(table_name).decode("utf-8-sig"))))
    items = []
    for row in rows:
        ident = int(row["ids"])
        subs = sorted((row[f"sub{i}"].strip() for i in range(1, 5)), key=lambda s: s[:8])  # chronological
        missing = [s for s in subs if (ident, s) not in labels]
        if missing:
            raise NoldoError(f"{source.path}: location {ident} lists {missing[0]} but has no label.tif for it")
        items.append(Item(f"{ident:07d}", {"dw": [labels[(ident, s)] for s in subs]},
                          {"original_id": ident, **{f"s2_id_t{t}": s for t, s in enumerate(subs)}}))
    return Plan("nol", 4, ("dw",), items, "nol")


def _tile_plans(source: Source) -> list[Plan]:
    groups: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(lambda: defaultdict(dict))
    for name in source.names:
        if m := _TILE.match(name):
            groups[m["split"].lower()][m["name"]][m["kind"]] = [name]
    plans = []
    for split, tiles in sorted(groups.items()):
        arrays = tuple(a for a in ("s2", "s1", "dw", "osm") if any(a in t for t in tiles.values()))
        items = [Item(name, files, {"original_id": name}) for name, files in sorted(tiles.items())]
        plans.append(Plan(re.sub(r"[^a-z0-9_]", "_", split), 1, arrays, items, "tiles"))
    return plans


def _dfc_plans(source: Source) -> list[Plan]:
    groups: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(lambda: defaultdict(dict))
    for name in source.names:
        if m := _DFC.match(name):
            groups[m["split"]][m["name"]][_ARRAY[m["kind"]]] = [name]
    return [Plan({"validation": "dfc2020_val", "test": "dfc2020_test"}[split], 1,
                 tuple(a for a in ("s2", "s1", "dw") if any(a in t for t in tiles.values())),
                 [Item(f"{int(n):05d}", files, {"original_id": f"p{n}"}) for n, files in
                  sorted(tiles.items(), key=lambda kv: int(kv[0]))], "dfc")
            for split, tiles in sorted(groups.items())]


def _by_shape(source: Source, plan: Plan) -> list[Plan]:
    """Split a plan by tile size (a split has one tile size); the label or S2 file decides."""
    shapes: dict[tuple[int, int], list[Item]] = defaultdict(list)
    for item in plan.items:
        reference = next(item.files[a][0] for a in ("dw", "osm", "s2", "s1") if a in item.files)
        shapes[read_tif(source, reference)[0].shape[-2:]].append(item)
    if len(shapes) == 1:
        return [plan]
    return [Plan(f"{plan.split}_{h}x{w}", plan.seasons, plan.arrays, items, plan.kind)
            for (h, w), items in sorted(shapes.items())]


def plans_for(source: Source) -> list[Plan]:
    """Every split the source holds, or a clear error if its layout is not recognised."""
    plans = [p for p in (_nol_plan(source), *_tile_plans(source), *_dfc_plans(source)) if p is not None]
    if not plans:
        raise NoldoError(f"{source.path} holds none of the known layouts (NoL labels with dw_complete_ids.csv, "
                         "DW/OSM tile folders image_s2/label_dw/..., DFC2020 s2_validation/...)")
    return [shaped for plan in plans for shaped in _by_shape(source, plan)]


def _encode(array: str, kind: str, data: np.ndarray, osm_order: str) -> np.ndarray:
    if array == "s2":
        return np.clip(data, 0, 65535).astype("uint16")
    if array == "s1":
        return data.astype("float32")
    raw = np.clip(data[0], 0, 255).astype("uint8")
    if array == "osm":
        return OSM_ORDERS[osm_order][raw]
    if kind == "nol":
        return raw  # published NoL labels are DW indices 0–8 already
    return (DFC_TO_DW if kind == "dfc" else EXPERT_DW)[raw]


def _check_bands(source: Source, name: str, array: str, data: np.ndarray) -> None:
    expected = {"s2": len(catalog.S2_BANDS), "s1": len(catalog.S1_BANDS)}.get(array)
    if expected and data.shape[0] != expected:
        raise NoldoError(f"{source.path}: {name} has {data.shape[0]} bands, {array} needs {expected}")


def _read_item(source: Source, plan: Plan, item: Item, shape: tuple[int, int], osm_order: str):
    """The encoded arrays of one sample (None where a file is missing) and its georeference, taken from the
    S2 file, else the DW label, S1, and only last the OSM label (whose header is unreliable: docs/data.md,
    "Georeference of converted tiles")."""
    arrays: dict[str, np.ndarray | None] = {}
    georefs: dict[str, tuple[int | None, tuple[float, ...]]] = {}
    for array in plan.arrays:
        layers = []
        for name in item.files.get(array, []):
            data, epsg, transform = read_tif(source, name)
            _check_bands(source, name, array, data)
            if data.shape[-2:] != shape:
                raise NoldoError(f"{source.path}: {name} is {data.shape[-2]}×{data.shape[-1]}, the split is "
                                 f"{shape[0]}×{shape[1]}")
            layers.append(_encode(array, plan.kind, data, osm_order))
            georefs.setdefault(array, (epsg, transform))
        arrays[array] = np.stack(layers) if layers else None
    georef = next(georefs[a] for a in ("s2", "dw", "s1", "osm") if a in georefs)
    return arrays, georef


def _fill(layout: Layout, array: str, n: int) -> np.ndarray:
    kind = catalog.array_kind(array)
    return np.full(layout.shape(array, n), kind.nodata, dtype=kind.dtype)


def convert(path: Path, root: RootLike, osm_order: str = "noldo", progress: bool = False) -> dict[str, Any]:
    """Convert a source zip or folder into splits of the store at ``root``; resumes; returns a summary."""
    started = time.monotonic()
    root = StoreLocation.of(root)
    path = Path(path)
    if not path.exists():
        raise NoldoError(f"{path} does not exist")
    _check_download(path)
    source = Source(path)
    plans = plans_for(source)
    with writing(root, *(plan.split for plan in plans), command="noldo convert"):
        written = _convert(source, path, plans, root, osm_order, progress)
    return {"source": str(path), "root": str(root), "splits": written,
            "seconds": round(time.monotonic() - started, 2)}


def _convert(source: Source, path: Path, plans: list[Plan], root: StoreLocation, osm_order: str,
             progress: bool) -> dict[str, int]:
    """Write every plan's split; returns the samples written per split."""
    written = {}
    for plan in plans:
        reference = next(plan.items[0].files[a][0] for a in ("dw", "osm", "s2", "s1") if a in plan.items[0].files)
        height, width = read_tif(source, reference)[0].shape[-2:]
        layout = Layout(len(plan.items), plan.seasons, height, width, plan.arrays)
        writer = SplitWriter(root, plan.split, layout, {"source": "convert", "converted_from": path.name,
                                                        "command": f"noldo convert {path} --out {root}",
                                                        "osm_order": osm_order})
        for shard in tqdm(writer.pending_shards(), desc=f"convert {plan.split}", disable=not progress):
            start, stop = layout.shard_range(shard)
            items = plan.items[start:stop]
            columns = {a: _fill(layout, a, len(items)) for a in plan.arrays}
            grids, rows = [], []
            for i, item in enumerate(items):
                arrays, (epsg, transform) = _read_item(source, plan, item, (height, width), osm_order)
                for name, data in arrays.items():
                    if data is not None:
                        columns[name][i] = data.reshape(columns[name][i].shape)
                grids.append(grid_from_affine(epsg or 0, transform, height, width))
                rows.append({"sample": f"{plan.split}-{item.key}", "epsg": epsg, **item.meta,
                             "missing": ",".join(a for a in plan.arrays if a not in item.files) or None})
            writer.write_shard(shard, {**columns, **georef_arrays(grids)}, pd.DataFrame(rows))
        write_manifest(root, known_hashes=writer.finalize())
        written[plan.split] = len(plan.items)
    return written


def _check_download(path: Path) -> None:
    """If ``path`` came from ``noldo download``, check it against the sha256 recorded from the hub."""
    for listing in sorted((path.parent / STATE).glob("published-*.json")):
        downloader = Downloader(path.parent, catalog.HF_REPO, "")
        for file in downloader.load_listing("published", listing.stem.split("-", 1)[1])[1]:
            if file.target == path.name:
                if not downloader.is_verified(file):
                    raise NoldoError(f"{path} does not match the sha256 the hub lists for it; repair: noldo "
                                     f"download --out {path.parent}")
                return
