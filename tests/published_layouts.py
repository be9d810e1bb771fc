"""Small files in the layouts of the published NoLDO-S12 zips and of DFC2020, made by the tests."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin


def tif_bytes(data: np.ndarray, epsg: int, left: float, top: float, res: float = 10.0) -> bytes:
    """A GeoTIFF (bands, height, width) as bytes."""
    data = data if data.ndim == 3 else data[None]
    with rasterio.io.MemoryFile() as memory:
        with memory.open(driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                         dtype=data.dtype, crs=f"EPSG:{epsg}", transform=from_origin(left, top, res, res)) as dst:
            dst.write(data)
        return memory.read()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def nol_zip(path: Path, ids=(3, 17, 42), size=32, seed=0):
    """``dw_complete_ids.csv`` and ``<id>/<s2 index>/label.tif``; returns the zip and the expected dw arrays."""
    rng = np.random.default_rng(seed)
    members, rows, expected = {}, [], {}
    days = ["20210901", "20201201", "20210601", "20210301"]  # deliberately not in date order
    for ident in ids:
        subs = [f"{d}T101021_{d}T101022_T32UPU" for d in days]
        labels = {s: rng.integers(0, 9, (size, size), dtype="uint8") for s in subs}
        for s, label in labels.items():
            members[f"ssl4eo_s12_nol/{ident:07d}/{s}/label.tif"] = tif_bytes(label, 4326, 11.0 + ident / 100, 48.2,
                                                                             res=0.0001)
        rows.append([ident, *subs])
        expected[f"{ident:07d}"] = np.stack([labels[s] for s in sorted(subs)])
    table = io.StringIO()
    csv.writer(table).writerows([["ids", "sub1", "sub2", "sub3", "sub4"], *rows])
    members["ssl4eo_s12_nol/dw_complete_ids.csv"] = table.getvalue().encode()
    return _zip(path, members), expected


def tiles_zip(path: Path, splits: dict[str, tuple[int, int]], with_osm: bool = False, seed=0):
    """DW/OSM tile folders: ``<split>/image_s2/s2_<name>.tif``, image_s1, label_dw (and label_osm).

    ``splits`` maps a folder name to (tile count, tile size). Returns the zip and, per split and tile
    name, the raw arrays written (s2 int16, s1 float32, dw and osm as stored in the files) and georef.
    """
    rng = np.random.default_rng(seed)
    members, expected = {}, {}
    for split, (count, size) in splits.items():
        expected[split] = {}
        for i in range(count):
            name = f"{11.4 + i / 10:.10f}_{48.1:.10f}-2019061{i}"
            left, top = 690000.0 + 1000 * i, 5330000.0
            s2 = rng.integers(0, 5000, (13, size, size)).astype("int16")
            s1 = rng.normal(-15, 4, (2, size, size)).astype("float32")
            dw = rng.integers(0, 11, (size, size), dtype="uint8")
            members[f"{split}/image_s2/s2_{name}.tif"] = tif_bytes(s2, 32632, left, top)
            members[f"{split}/image_s1/s1_{name}.tif"] = tif_bytes(s1, 32632, left, top)
            members[f"{split}/label_dw/dw_{name}.tif"] = tif_bytes(dw, 32632, left, top)
            tile = {"s2": s2, "s1": s1, "dw": dw, "transform": (10.0, 0.0, left, 0.0, -10.0, top)}
            if with_osm:
                osm = rng.integers(0, 14, (size, size), dtype="uint8")
                members[f"{split}/label_osm/osm_{name}.tif"] = tif_bytes(osm, 3857, 1.2e6, 6.1e6)  # CromSS' header
                tile["osm"] = osm
            expected[split][name] = tile
    return _zip(path, members), expected


def dfc_folder(path: Path, count=3, size=16, seed=0):
    """SEN12MS-style DFC2020 folders; returns the folder and the raw arrays per split and patch."""
    rng = np.random.default_rng(seed)
    expected = {}
    for split in ("validation", "test"):
        expected[split] = {}
        for i in range(1, count + 1):
            arrays = {"s1": rng.normal(-15, 4, (2, size, size)).astype("float32"),
                      "s2": rng.integers(0, 5000, (13, size, size)).astype("uint16"),
                      "dfc": rng.integers(1, 11, (size, size)).astype("uint16")}
            for kind, data in arrays.items():
                folder = path / f"{kind}_{split}"
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"ROIs0000_{split}_{kind}_0_p{i}.tif").write_bytes(tif_bytes(data, 32631, 500000.0 + i * 1000,
                                                                                       4e6))
            expected[split][i] = arrays
    return path, expected
