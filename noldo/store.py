"""Zarr v3 stores of NoLDO-S12: split layout and schema, the reader every command uses, and the shard writer.

A store ``ROOT`` (a :class:`~noldo.location.StoreLocation`) holds one Zarr group per split at
``ROOT/<split>.zarr``, a Parquet index ``ROOT/<split>.parquet`` (row i = sample i) and
``ROOT/manifest.json``. Build state lives in ``ROOT/.noldo/<split>/``: one index fragment and one
commit marker per finished shard. Readers open a split with :meth:`Split.open`; the only writer is
:class:`SplitWriter`. The schema-version policy is in docs/architecture.md ("Store schema").
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import socket
import struct
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from zarr.codecs import BloscCodec

from noldo import catalog
from noldo._version import __version__
from noldo.catalog import DERIVED_ARRAYS, GEOREF_ARRAYS, SCHEMA_MINOR, SCHEMA_VERSION, SHARD_SAMPLES, array_kind
from noldo.errors import NoldoError
from noldo.files import atomic_write_bytes, atomic_write_json
from noldo.grid import Grid, grid_from_affine
from noldo.index import GEO_COLUMNS, acquisition_times, geo_index, geoparquet_bytes
from noldo.location import RootLike, StoreLocation
from noldo.shard_codec import encode_shard

log = logging.getLogger(__name__)

_SPLIT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")


def group_name(split: str) -> str:
    """``<split>.zarr``: the split's group below ROOT."""
    return f"{split}.zarr"


def index_name(split: str) -> str:
    """``<split>.parquet``: the split's sample index below ROOT."""
    return f"{split}.parquet"


def check_split_name(split: str) -> str:
    """Return ``split`` if it is a valid split name (lower-case letters, digits, underscores)."""
    if not _SPLIT_NAME.match(split or ""):
        raise NoldoError(f"invalid split name {split!r}: use lower-case letters, digits and underscores")
    return split


@dataclass(frozen=True)
class Layout:
    """The shape of one split: sample count, seasons, tile size and the arrays it holds.

    ``arrays`` lists the image arrays (``s2``, ``s1``, ``dw``, ``osm``, ``truth``); the georeference
    arrays (``crs_epsg``, ``center_lon``, ``center_lat``, ``transform``) are always present.
    """

    samples: int
    seasons: int
    height: int
    width: int
    arrays: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in self.arrays:
            if name not in catalog.IMAGE_ARRAYS:
                raise NoldoError(f"{name!r} is not an image array; choose from {', '.join(catalog.IMAGE_ARRAYS)}")
        if self.samples < 0 or self.seasons < 1 or self.height < 1 or self.width < 1:
            raise NoldoError(f"invalid layout {self}")

    @property
    def all_arrays(self) -> tuple[str, ...]:
        """The arrays every shard writes: the image and georeference arrays."""
        return (*self.arrays, *GEOREF_ARRAYS)

    @property
    def stored_arrays(self) -> tuple[str, ...]:
        """Every array of the split: :attr:`all_arrays` and those finalising derives from the index."""
        return (*self.all_arrays, *DERIVED_ARRAYS)

    @property
    def shards(self) -> int:
        return math.ceil(self.samples / SHARD_SAMPLES)

    def shard_range(self, shard: int) -> tuple[int, int]:
        """Half-open sample range [start, stop) of a shard."""
        start = shard * SHARD_SAMPLES
        return start, min(start + SHARD_SAMPLES, self.samples)

    def shape(self, name: str, samples: int | None = None) -> tuple[int, ...]:
        """Shape of an array for ``samples`` samples (default: the whole split)."""
        n = self.samples if samples is None else samples
        sizes = {"sample": n, "season": self.seasons, "band": len(catalog.S2_BANDS),
                 "polarization": len(catalog.S1_BANDS), "y": self.height, "x": self.width, "affine": 6}
        return tuple(sizes[d] for d in array_kind(name).dims)

    def nbytes(self, name: str, samples: int | None = None) -> int:
        """Decoded bytes of an array for ``samples`` samples (default: the whole split)."""
        return math.prod(self.shape(name, samples)) * np.dtype(array_kind(name).dtype).itemsize

    def chunks(self, name: str) -> tuple[int, ...]:
        """Inner chunk: one sample × one season × all bands × the full tile."""
        return tuple(1 if d in ("sample", "season") else s for d, s in zip(array_kind(name).dims,
                                                                            self.shape(name, 1), strict=True))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "arrays": list(self.arrays)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Layout:
        return cls(**{**obj, "arrays": tuple(obj["arrays"])})


def _json_nodata(value: float | int | None) -> float | int | str | None:
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


def split_attributes(split: str, layout: Layout, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """Group attributes of a split: schema version, bands, legends, nodata, seasons, provenance, licences."""
    seasons = catalog.SEASONS if layout.seasons == len(catalog.SEASONS) else ()
    info = catalog.split_info(split)
    used_licences = sorted({array_kind(a).licence for a in layout.all_arrays})
    return {
        "schema_version": SCHEMA_VERSION,
        "schema_minor": SCHEMA_MINOR,
        "title": f"NoLDO-S12 {split}",
        "description": info.description if info else f"custom split {split}",
        "split": split,
        "layout": layout.to_json(),
        "shard_samples": SHARD_SAMPLES,
        "bands": {"s2": [asdict(b) for b in catalog.S2_BANDS], "s1": [asdict(b) for b in catalog.S1_BANDS]},
        "s2_scale_factor": 1e-4,
        "s1_units": "dB",
        "legends": {a: [asdict(c) for c in catalog.ARRAY_LEGENDS[a]] for a in layout.arrays
                    if a in catalog.ARRAY_LEGENDS},
        "nodata": {a: _json_nodata(array_kind(a).nodata) for a in layout.arrays},
        "seasons": [asdict(s) for s in seasons] or [{"index": 0, "name": "t0", "reference_date": None}],
        "season_rule": (f"location offset d in [0, {catalog.SEASON_MAX_OFFSET_DAYS}) days; window "
                        f"[reference - d - {catalog.SEASON_HALF_WINDOW_DAYS} d, reference - d + "
                        f"{catalog.SEASON_HALF_WINDOW_DAYS} d)") if seasons else "one acquisition per tile",
        "grid_rule": (f"UTM zone of the centre, {catalog.PIXEL_SIZE} m pixels, upper-left corner snapped "
                      f"to the {catalog.PIXEL_SIZE} m lattice; transform in rasterio order a, b, c, d, e, f"),
        "provenance": {"noldo_version": __version__,
                       "created": datetime.now(UTC).isoformat(timespec="seconds"), **provenance},
        "licences": {k: asdict(catalog.LICENCES[k]) for k in used_licences},
        "array_licences": {a: array_kind(a).licence for a in layout.stored_arrays},
    }


def cf_attributes(name: str) -> dict[str, Any]:
    """The CF attributes of an array, so xarray masks its nodata and decodes its times by itself:
    ``_FillValue``, ``long_name``, ``units``, ``standard_name``, ``flag_values``/``flag_meanings`` of a
    label array, ``calendar`` of ``time``, and ``coordinates`` (the time and centre of each sample)."""
    kind = array_kind(name)
    attrs: dict[str, Any] = {"long_name": kind.description}
    if kind.nodata is not None:  # xarray reads a float _FillValue as base64 of a little-endian double
        attrs["_FillValue"] = (base64.b64encode(struct.pack("<d", kind.nodata)).decode()
                               if np.dtype(kind.dtype).kind == "f" else kind.nodata)
    attrs |= {k: v for k, v in (("units", kind.units), ("standard_name", kind.standard_name)) if v}
    if name == "time":
        attrs["calendar"] = "proleptic_gregorian"
    if legend := catalog.ARRAY_LEGENDS.get(name):
        attrs["flag_values"] = [c.value for c in legend]
        attrs["flag_meanings"] = " ".join(re.sub(r"[^a-z0-9]+", "_", c.name.lower()).strip("_") for c in legend)
    coordinates = [c for c in ("time", "center_lon", "center_lat")
                   if c != name and set(array_kind(c).dims) <= set(kind.dims)]
    return attrs | ({"coordinates": " ".join(coordinates)} if coordinates else {})


def _create_arrays(group: zarr.Group, layout: Layout, names: tuple[str, ...]) -> None:
    for name in names:
        kind = array_kind(name)
        sharded = kind.dims[-1] == "x"
        shape = layout.shape(name)
        group.create_array(
            name,
            shape=shape,
            dtype=kind.dtype,
            chunks=layout.chunks(name) if sharded else (SHARD_SAMPLES, *shape[1:]),
            shards=(SHARD_SAMPLES, *shape[1:]) if sharded else None,
            compressors=[_COMPRESSOR],
            fill_value=kind.nodata if kind.nodata is not None else 0,
            dimension_names=list(kind.dims),
            attributes={"description": kind.description, "licence": kind.licence,
                        "nodata": _json_nodata(kind.nodata), **cf_attributes(name)},
        )


def shard_name(split: str, array: zarr.Array, shard: int) -> str:
    """Path below ROOT of the object that holds shard ``shard`` (samples 64·k … 64·k + 63) of an array."""
    key = array.metadata.encode_chunk_key((shard,) + (0,) * (array.ndim - 1))
    return f"{group_name(split)}/{array.basename}/{key}"


# --- reading ---------------------------------------------------------------------------------------
def list_splits(root: RootLike) -> list[str]:
    """Names of the splits in a store, sorted."""
    location = StoreLocation.of(root)
    if not location.is_store_dir():
        raise NoldoError(f"{location} is not a noldo store (no such directory)")
    return [name.removesuffix(".zarr") for name in location.children()
            if name.endswith(".zarr") and location.is_file(f"{name}/zarr.json")]


def require_splits(root: RootLike) -> list[str]:
    """:func:`list_splits`, or a clear error for a store that holds none."""
    splits = list_splits(root)
    if not splits:
        raise NoldoError(f"{StoreLocation.of(root)} holds no noldo splits (no <split>.zarr groups)")
    return splits


def writable_group(root: RootLike, split: str) -> zarr.Group:
    """The split's group opened for changing its metadata (attributes, arrays), without consolidated metadata."""
    return zarr.open_group(StoreLocation.of(root).zarr_store(group_name(split), read_only=False), mode="r+",
                           use_consolidated=False)


def read_attributes(root: RootLike, split: str) -> dict[str, Any]:
    """Group attributes of a split, read straight from its ``zarr.json`` (no schema check)."""
    location = StoreLocation.of(root)
    meta = f"{group_name(split)}/zarr.json"
    if not location.is_file(meta):
        available = ", ".join(list_splits(location)) or "none"
        raise NoldoError(f"no split {split!r} in {location} (splits: {available})")
    try:
        return location.read_json(meta)["attributes"]
    except (ValueError, KeyError) as exc:
        raise NoldoError(f"{location}/{meta} is not valid Zarr metadata ({exc}); re-create or re-download the "
                         "store") from None


def schema_of(attrs: Mapping[str, Any]) -> tuple[int, int]:
    """(``schema_version``, ``schema_minor``) of a split; a split without ``schema_minor`` is minor 0."""
    return int(attrs["schema_version"]), int(attrs.get("schema_minor", 0))


def check_schema(attrs: Mapping[str, Any], where: str) -> Layout:
    """The layout of a split written by a noldo schema this version reads, or a clear error."""
    version = attrs.get("schema_version")
    if not isinstance(version, int):
        raise NoldoError(f"{where} has no schema_version; it was not written by noldo")
    if version > SCHEMA_VERSION:
        raise NoldoError(f"{where} uses store schema {version}, newer than this noldo supports "
                         f"({SCHEMA_VERSION}); upgrade noldo: pip install -U noldo")
    if not attrs.get("layout"):
        raise NoldoError(f"{where} has no layout attribute; it was not written by noldo")
    return Layout.from_json(attrs["layout"])


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a store, opened read-only and schema-checked: attributes, layout, ids, arrays.

    Every reader (verify, plot, info, the sources, ``benchmark.data``) goes through this class.

    Example:
        >>> split = Split.open("demo-data", "nol")
        >>> split.layout.samples, split.ids()[0]  # doctest: +SKIP
        (64, 'nol-0000000')
    """

    location: StoreLocation
    name: str
    attrs: Mapping[str, Any]
    layout: Layout

    @classmethod
    def open(cls, root: RootLike, name: str) -> Split:
        location = StoreLocation.of(root)
        attrs = read_attributes(location, name)
        return cls(location, name, attrs, check_schema(attrs, f"{location}/{group_name(name)}"))

    def group(self) -> zarr.Group:
        """A fresh read-only handle on the split's Zarr group (one per process: handles must not cross a fork)."""
        return zarr.open_group(self.location.zarr_store(group_name(self.name)), mode="r", use_consolidated=False)

    @property
    def has_index(self) -> bool:
        return self.location.is_file(index_name(self.name))

    def index(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The sample index (row i = sample i) as a DataFrame, without the footprints (:meth:`geo_index`
        has them), or a clear error if it is missing."""
        if not self.has_index:
            raise NoldoError(f"{self.location}/{index_name(self.name)} is missing; re-run the command that made "
                             "the split, or noldo download")
        table = self.location.read_parquet(index_name(self.name), columns)
        return table if columns else table.drop(columns=[c for c in GEO_COLUMNS if c in table.columns])

    def index_columns(self) -> list[str]:
        """The column names of the index file, footprints included."""
        return pq.read_schema(pa.BufferReader(self.location.read_bytes(index_name(self.name)))).names

    def geo_index(self):
        """The sample index as a :class:`geopandas.GeoDataFrame` of footprints (EPSG:4326); an index
        written before schema 1.1 gets its footprints computed from the grids."""
        import geopandas as gpd

        if "geometry" in self.index_columns():
            return gpd.read_parquet(io.BytesIO(self.location.read_bytes(index_name(self.name))))
        return geo_index(self.index(), self.grids())

    @cached_property
    def _ids(self) -> tuple[str, ...]:
        return tuple(self.index(["sample"])["sample"].tolist())

    def ids(self) -> list[str]:
        """The sample ids in sample order."""
        return list(self._ids)

    def sample_index(self, sample: str | int) -> int:
        """The position of a sample given by index (``3``, ``"3"``) or id (``"nol-0000003"``)."""
        ids = self._ids
        if isinstance(sample, str) and not sample.lstrip("-").isdigit():
            if sample not in ids:
                raise NoldoError(f"no sample {sample!r} in {self.name} (ids look like {ids[0]!r})")
            return ids.index(sample)
        i = int(sample)
        if not 0 <= i < len(ids):
            raise NoldoError(f"sample index {i} is outside 0–{len(ids) - 1} of split {self.name}")
        return i

    def season_names(self) -> list[str]:
        return [s["name"] for s in self.attrs["seasons"]]

    def grids(self, start: int = 0, stop: int | None = None) -> list[Grid]:
        """The pixel grids of samples [start, stop)."""
        group = self.group()
        stop = self.layout.samples if stop is None else stop
        epsg, affine = group["crs_epsg"][start:stop], group["transform"][start:stop]
        return [grid_from_affine(e, a, self.layout.height, self.layout.width) for e, a in zip(epsg, affine,
                                                                                                strict=True)]


def open_dataset(root: RootLike, split: str = "nol", chunks: Mapping[str, int] | None = None, mask: bool = True):
    """Open a split as a lazy :class:`xarray.Dataset`: named dims, band/season/sample coordinates, the
    ``time`` coordinate (sample, season) of acquisition times and CF attributes.

    ``mask`` (default) turns nodata into NaN (S2 0, S1 NaN, labels 255, OSM 0; integers become floats);
    ``mask=False`` keeps the stored integers. The times come from the index (the ``time`` array holds the
    same); an array written before schema 1.1 (no ``_FillValue``) gets the same masking, and an older split
    the same times (``noldo upgrade`` stores them).

    Example:
        >>> ds = noldo.open("demo-data", "nol")
        >>> ds.s2.sel(band="B4").isel(sample=0, season=2).values  # doctest: +SKIP
    """
    import xarray as xr

    reader = Split.open(root, split)
    ds = xr.open_zarr(reader.location.zarr_store(group_name(split)), consolidated=None, mask_and_scale=mask,
                      chunks=dict(chunks) if chunks is not None else {"sample": SHARD_SAMPLES})
    coords: dict[str, Any] = {
        "band": [b.name for b in catalog.S2_BANDS],
        "polarization": [b.name for b in catalog.S1_BANDS],
        "season": reader.season_names(),
    }
    if reader.has_index:
        coords["sample"] = np.array(reader.ids(), dtype=object)
    ds = ds.assign_coords({k: v for k, v in coords.items() if k in ds.dims})
    if not reader.has_index:
        return ds
    for name in reader.layout.arrays if mask else ():
        nodata = array_kind(name).nodata
        if "_FillValue" not in ds[name].encoding and not isinstance(nodata, float):  # before schema 1.1
            ds[name] = ds[name].where(ds[name] != nodata)
    # from the index already read for the ids (no request per shard), in memory as groupby("time.season") needs
    times = acquisition_times(reader.index(), reader.layout.seasons).astype("datetime64[ns]")
    return ds.assign_coords(time=(("sample", "season"), times, ds["time"].attrs if "time" in ds.variables else {}))


def describe(root: RootLike) -> dict[str, Any]:
    """A JSON-ready summary: per split, sample count and each array's shape, dtype, bytes and stored bytes."""
    location = StoreLocation.of(root)
    splits = {}
    for name in list_splits(location):
        split = Split.open(location, name)
        arrays = {}
        for array_name, array in sorted(split.group().arrays()):
            stored = sum(location.sizes(f"{group_name(name)}/{array_name}").values())
            arrays[array_name] = {"dims": list(array.metadata.dimension_names or ()), "shape": list(array.shape),
                                  "dtype": str(array.dtype), "bytes": int(array.nbytes), "stored_bytes": stored}
        layout = split.attrs["layout"]
        splits[name] = {"samples": next(iter(arrays.values()))["shape"][0] if arrays else 0,
                        "seasons": layout.get("seasons"), "height": layout.get("height"),
                        "width": layout.get("width"), "source": split.attrs.get("provenance", {}).get("source"),
                        "arrays": arrays}
    return {"root": str(location), "splits": splits}


# --- writing ---------------------------------------------------------------------------------------
class SplitWriter:
    """The only writer of a split: creates the group, writes whole shards atomically, finalises.

    Each shard is written in one go (all its samples, one object per array, each written under a
    temporary name then renamed), then its index fragment, then its commit marker. A killed writer
    leaves only whole files; shards without a marker are simply written again. A split holding a
    different layout is refused: remove it first (:func:`remove_split`, ``--overwrite``).

    Example:
        >>> w = SplitWriter(root, "nol", Layout(64, 4, 264, 264, ("s2", "s1", "dw")), {"source": "x"})
        >>> for k in w.pending_shards(): w.write_shard(k, arrays, index)   # doctest: +SKIP
        >>> hashes = w.finalize()   # then noldo.manifest.write_manifest(root, hashes)  # doctest: +SKIP
    """

    def __init__(self, root: RootLike, split: str, layout: Layout, provenance: Mapping[str, Any]) -> None:
        self.location = StoreLocation.of(root)
        self.split = check_split_name(split)
        self.layout = layout
        self.group_name = group_name(split)
        self.work = self.location.state_dir(split)
        self.location.is_store_dir()  # refuses a ROOT that is a file
        if self.location.is_file(f"{self.group_name}/zarr.json"):
            existing = Split.open(self.location, split).layout
            if existing != layout:
                raise NoldoError(f"{self.location}/{self.group_name} already holds a different {split} split "
                                 f"({_describe(existing)}, asked for {_describe(layout)}); "
                                 "pass --overwrite to replace it")
            log.info("resuming %s/%s", self.location, self.group_name)
        else:
            self._create(provenance)
        self.encoder = ShardEncoder(self.location, split)
        self.group = self.encoder.group
        self.location.remove_partials(self.group_name)

    def _create(self, provenance: Mapping[str, Any]) -> None:
        """Create the group's metadata in memory, then write it with the group's own ``zarr.json`` last:
        until that object exists there is no split, on disk as on object storage."""
        shutil.rmtree(self.work, ignore_errors=True)
        self.location.remove(index_name(self.split))
        self.location.remove(self.group_name)  # leftovers of a creation that did not finish
        metadata: dict[str, Any] = {}
        group = zarr.create_group(zarr.storage.MemoryStore(metadata), zarr_format=3,
                                  attributes=split_attributes(self.split, self.layout, provenance))
        _create_arrays(group, self.layout, self.layout.stored_arrays)
        for key in sorted(metadata, key=lambda k: k == "zarr.json"):
            self.location.write_bytes(f"{self.group_name}/{key}", metadata[key].to_bytes())

    def _marker(self, shard: int):
        return self.work / f"shard-{shard:05d}.json"

    def _fragment(self, shard: int):
        return self.work / f"index-{shard:05d}.parquet"

    def marker(self, shard: int) -> dict[str, Any] | None:
        """The commit marker of a shard (files, hashes and the writer's extra fields), or None."""
        path = self._marker(shard)
        return json.loads(path.read_text()) if path.exists() else None

    def shard_done(self, shard: int) -> bool:
        """True if every array of the shard was committed and all its files are still there."""
        marker = self.marker(shard)
        if marker is None:
            return False
        arrays = {rel.split("/")[1] for rel in marker["files"]}
        return arrays >= set(self.layout.all_arrays) and all(self.location.exists(rel) for rel in marker["files"])

    def add_arrays(self, names: tuple[str, ...], provenance: Mapping[str, Any],
                   known_hashes: Mapping[str, list] | None = None) -> None:
        """Add image arrays to an existing split (e.g. ``osm``); their shards are then pending.

        ``known_hashes`` (path → [size, sha256], from the manifest) spares hashing a downloaded or
        converted split again when its commit markers are recreated.
        """
        new = tuple(n for n in names if n not in self.layout.arrays)
        if not new:
            return
        self._bootstrap(known_hashes or {})
        self.layout = replace(self.layout, arrays=(*self.layout.arrays, *new))
        for name in new:
            if name in self.group:
                del self.group[name]
        _create_arrays(self.group, self.layout, new)
        fresh = split_attributes(self.split, self.layout, {})
        for key in ("layout", "legends", "nodata", "licences", "array_licences"):
            self.group.attrs[key] = fresh[key]
        self.group.attrs["provenance"] = {**self.group.attrs["provenance"], **provenance}

    def _bootstrap(self, known: Mapping[str, list]) -> None:
        """Recreate commit markers and index fragments for a finished split that has none (a downloaded
        or converted store), so arrays can be added to it."""
        if not self.location.is_file(index_name(self.split)) or all(self.marker(k) for k in
                                                                    range(self.layout.shards)):
            return
        table = Split.open(self.location, self.split).index()
        for shard in range(self.layout.shards):
            files = {}
            for name in self.layout.all_arrays:
                rel = shard_name(self.split, self.group[name], shard)
                size, entry = self.location.size(rel), known.get(rel)
                files[rel] = [size, entry[1] if entry and entry[0] == size else self.location.sha256(rel)]
            start, stop = self.layout.shard_range(shard)
            self.work.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self._fragment(shard), table.iloc[start:stop].to_parquet(index=False))
            atomic_write_json(self._marker(shard), {"shard": shard, "samples": [start, stop], "files": files})

    def pending_shards(self) -> list[int]:
        """Shards still to write, in order."""
        return [k for k in range(self.layout.shards) if not self.shard_done(k)]

    def write_shard(self, shard: int, arrays: Mapping[str, np.ndarray], index: pd.DataFrame,
                    extra: Mapping[str, Any] | None = None) -> None:
        """Write all arrays of one shard, its index rows, then its commit marker.

        ``arrays`` maps every array of the layout to the shard's samples (leading axis; read one array
        at a time, so it may load lazily) — or, for a split that already has the shard, only the added
        arrays; ``index`` has one row per sample with at least a ``sample`` column; ``extra`` is kept
        in the commit marker for the caller.
        """
        self.check_shard(shard, arrays, index)
        written = self.encoder.write(shard, arrays, self.layout)
        self.commit_shard(shard, written, index, extra)

    def check_shard(self, shard: int, names: Sequence[str], index: pd.DataFrame) -> None:
        """Refuse a shard whose arrays or index rows do not fit the split (before anything is written)."""
        start, stop = self.layout.shard_range(shard)
        n = stop - start
        previous = self.marker(shard) or {"files": {}}
        if not set(names) <= set(self.layout.all_arrays) or not (previous["files"] or set(names) == set(
                self.layout.all_arrays)):
            raise NoldoError(f"shard {shard}: arrays {sorted(names)} differ from {sorted(self.layout.all_arrays)}")
        if len(index) != n or "sample" not in index.columns:
            raise NoldoError(f"shard {shard}: the index needs {n} rows with a 'sample' column")

    def commit_shard(self, shard: int, written: Mapping[str, Any], index: pd.DataFrame,
                     extra: Mapping[str, Any] | None = None) -> None:
        """Record a shard written by :meth:`ShardEncoder.write` (here or on a dask worker): its index
        rows, then its commit marker."""
        start, stop = self.layout.shard_range(shard)
        previous = self.marker(shard) or {"files": {}}
        frame = index.reset_index(drop=True).assign(shard=shard, row_in_shard=np.arange(stop - start))
        if self._fragment(shard).exists() and previous["files"]:  # adding arrays: keep the rows, add columns
            old = pd.read_parquet(self._fragment(shard))
            if list(old["sample"]) != list(frame["sample"]):
                raise NoldoError(f"shard {shard}: the index rows do not match the split's samples")
            frame = pd.concat([old.drop(columns=[c for c in frame.columns if c in old.columns]), frame], axis=1)
        self.work.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self._fragment(shard), frame.to_parquet(index=False))
        atomic_write_json(self._marker(shard), {**previous, "shard": shard, "samples": [start, stop],
                                                "files": {**previous["files"], **written["files"]},
                                                "writer": written["writer"], **(extra or {})})

    def resize(self, samples: int) -> None:
        """Shrink the split to ``samples`` (e.g. when a region ran out of candidates) before the last shard."""
        if samples > self.layout.samples:
            raise NoldoError(f"cannot grow {self.split} from {self.layout.samples} to {samples} samples")
        self.layout = replace(self.layout, samples=samples)
        for name in self.layout.stored_arrays:
            if name in self.group:  # a split made before schema 1.1 has no derived arrays yet
                self.group[name].resize(self.layout.shape(name))
        self.group.attrs["layout"] = self.layout.to_json()
        self.encoder = ShardEncoder(self.location, self.split)  # the old one opened its arrays at the old shape
        self.group = self.encoder.group

    def finalize(self) -> dict[str, list]:
        """Write the Parquet index and the consolidated metadata once every shard is committed.

        Returns the size and sha256 of every shard object (path → [size, sha256]) for the manifest.
        """
        missing = self.pending_shards()
        if missing:
            raise NoldoError(f"cannot finalise {self.split}: shards {missing[:5]} are not written yet")
        frames = [pd.read_parquet(self._fragment(k)) for k in range(self.layout.shards)]
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"sample": []})
        write_derived(self.location, self.split, self.group, self.layout, table)
        consolidate(self.location, self.split)
        known: dict[str, list] = {}
        for k in range(self.layout.shards):
            known.update(self.marker(k)["files"])
        return known


class _HashingStore(zarr.storage.WrapperStore):
    """A zarr store that remembers the size and sha256 of every object it writes, so a shard's hash
    comes from the bytes sent, not from reading the object back. On object storage each object is
    written by :meth:`~noldo.location.ObjectLocation.write_bytes` (``put(key, bytes)``: one PUT)."""

    def __init__(self, store: zarr.abc.store.Store, put: Callable[[str, bytes], None] | None = None) -> None:
        super().__init__(store)
        self.put = put
        self.written: dict[str, list] = {}

    def _with_store(self, store: zarr.abc.store.Store) -> _HashingStore:
        return type(self)(store, self.put)

    async def set(self, key: str, value: Any) -> None:
        data = value.to_bytes()
        if self.put is None:
            await self._store.set(key, value)
        else:
            await asyncio.to_thread(self.put, key, data)
        self.written[key] = [len(data), hashlib.sha256(data).hexdigest()]


class ShardEncoder:
    """Encodes whole shards of a split into its store: the part of :class:`SplitWriter` a dask worker
    runs when the workers write the shards themselves (its state stays with the writer)."""

    def __init__(self, root: RootLike, split: str) -> None:
        self.location = StoreLocation.of(root)
        self.split = split
        group = group_name(split)
        put = (lambda key, data: self.location.write_bytes(f"{group}/{key}", data)) if self.location.remote else None
        self.store = _HashingStore(self.location.zarr_store(group, read_only=False), put)
        self.group = zarr.open_group(self.store, mode="r+", use_consolidated=False)
        self._arrays: dict[str, zarr.Array] = {}  # opened once: zarr reads an array's metadata on every open

    def array(self, name: str) -> zarr.Array:
        """The split's array ``name``, writing every chunk (an all-nodata shard is a shard)."""
        if name not in self._arrays:
            self._arrays[name] = self.group[name].with_config({"write_empty_chunks": True})
        return self._arrays[name]

    def write(self, shard: int, arrays: Mapping[str, np.ndarray], layout: Layout) -> dict[str, Any]:
        """Write the given arrays of one shard; returns the objects written (path → [size, sha256])
        and who wrote them (host, pid)."""
        start, stop = layout.shard_range(shard)
        files: dict[str, list] = {}
        for name in arrays:
            data = np.asarray(arrays[name])
            kind = array_kind(name)
            if data.shape != layout.shape(name, stop - start) or data.dtype != np.dtype(kind.dtype):
                raise NoldoError(f"shard {shard}: {name} is {data.dtype}{list(data.shape)}, expected "
                                 f"{kind.dtype}{list(layout.shape(name, stop - start))}")
            array = self.array(name)
            rel = shard_name(self.split, array, shard)
            encoded = encode_shard(array, data) if kind.dims[-1] == "x" else None
            if encoded is None:
                array[start:stop] = data
                files[rel] = self.store.written.pop(rel.removeprefix(f"{group_name(self.split)}/"))
            else:
                self.location.write_bytes(rel, encoded)
                files[rel] = [len(encoded), hashlib.sha256(encoded).hexdigest()]
        return {"files": files, "writer": {"host": socket.gethostname(), "pid": os.getpid()}}


def write_derived(location: StoreLocation, split: str, group: zarr.Group, layout: Layout,
                  table: pd.DataFrame) -> None:
    """What a finished split derives from its index rows: the ``time`` array and the GeoParquet index
    with each sample's footprint."""
    if "time" not in group:
        _create_arrays(group, layout, ("time",))
    times = acquisition_times(table, layout.seasons).astype("int64")  # NaT is int64's minimum, catalog.NAT
    group["time"].with_config({"write_empty_chunks": True})[:] = times
    epsg, affine = group["crs_epsg"][:], group["transform"][:]
    grids = [grid_from_affine(e, a, layout.height, layout.width) for e, a in zip(epsg, affine, strict=True)]
    location.write_bytes(index_name(split), geoparquet_bytes(table, grids))


def consolidate(location: StoreLocation, split: str) -> None:
    """Write the split's consolidated metadata (the last step of every change to its arrays' metadata)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        zarr.consolidate_metadata(location.zarr_store(group_name(split), read_only=False))


def _describe(layout: Layout) -> str:
    return (f"{layout.samples} samples, {layout.seasons} seasons, {layout.height}×{layout.width}, "
            f"arrays {'/'.join(layout.arrays)}")


def remove_split(root: RootLike, split: str) -> None:
    """Delete a split: its group, index and build state."""
    location = StoreLocation.of(root)
    location.remove(group_name(split))
    location.remove(index_name(split))
    shutil.rmtree(location.state_dir(split), ignore_errors=True)


def georef_arrays(grids: Sequence[Grid]) -> dict[str, np.ndarray]:
    """The per-sample georeference arrays (``crs_epsg``, ``center_lon``, ``center_lat``, ``transform``)."""
    centres = np.array([g.center_lonlat() for g in grids], dtype="float64").reshape(-1, 2)
    return {
        "crs_epsg": np.array([g.epsg for g in grids], dtype="int32"),
        "center_lon": centres[:, 0].copy(),
        "center_lat": centres[:, 1].copy(),
        "transform": np.array([g.affine for g in grids], dtype="float64").reshape(-1, 6),
    }
