"""``noldo verify``: schema, completeness and sha256 of a store, each problem with the command that repairs it."""

from __future__ import annotations

import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from noldo.catalog import array_kind
from noldo.errors import NoldoError
from noldo.location import RootLike, StoreLocation
from noldo.manifest import MANIFEST, read_manifest, store_files
from noldo.store import (
    Split,
    group_name,
    index_name,
    read_attributes,
    require_splits,
    schema_of,
    shard_name,
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store."""

    path: str
    message: str
    repair: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}; repair: {self.repair}"


def _repair(root: StoreLocation, split: str | None, bad_file: str | None = None) -> str:
    """The command that re-creates a split's data (after removing a bad file, if any)."""
    command = None
    if split is not None:
        try:
            command = read_attributes(root, split).get("provenance", {}).get("command")
        except NoldoError:
            command = None
    if not command:
        return "re-create the store with the command that made it, or fetch it again with noldo download"
    return f"rm {shlex.quote(f'{root}/{bad_file}')} && {command}" if bad_file else command


def _check_split(root: StoreLocation, name: str, sizes: dict[str, int]) -> list[Problem]:
    try:
        split = Split.open(root, name)
    except NoldoError as exc:
        return [Problem(group_name(name), str(exc), _repair(root, None))]
    layout, problems = split.layout, []
    present = dict(split.group().arrays())
    current = schema_of(split.attrs) >= (1, 1)  # schema 1.1 on: derived arrays and footprints
    for array_name in layout.stored_arrays if current else layout.all_arrays:
        kind = array_kind(array_name)
        array = present.get(array_name)
        if array is None:
            problems.append(Problem(f"{group_name(name)}/{array_name}", "array is missing", _repair(root, name)))
            continue
        dims = tuple(array.metadata.dimension_names or ())
        if dims != kind.dims or str(array.dtype) != kind.dtype or array.shape[1:] != layout.shape(array_name)[1:]:
            problems.append(Problem(f"{group_name(name)}/{array_name}", f"is {array.dtype}{list(array.shape)} with "
                                    f"dims {list(dims)}, expected {kind.dtype} with dims {list(kind.dims)}",
                                    _repair(root, name)))
            continue
        for shard in range(layout.shards):
            rel = shard_name(name, array, shard)
            if rel not in sizes:
                start, stop = layout.shard_range(shard)
                problems.append(Problem(rel, f"shard {shard} of {array_name} (samples {start}–{stop - 1}) is "
                                        "missing", _repair(root, name)))
    index = index_name(name)
    if not split.has_index:
        problems.append(Problem(index, "the sample index is missing", _repair(root, name)))
    else:
        try:
            rows = split.index()
            if len(rows) != layout.samples:
                problems.append(Problem(index, f"has {len(rows)} rows for {layout.samples} samples",
                                        _repair(root, name, index)))
            elif current and "geometry" not in split.index_columns():
                problems.append(Problem(index, "has no sample footprints (geometry column)",
                                        f"noldo upgrade {shlex.quote(str(root))}"))
        except Exception as exc:  # any parquet/arrow decoding error means a damaged index
            problems.append(Problem(index, f"cannot be read ({type(exc).__name__})", _repair(root, name, index)))
    return problems


def _check_hashes(root: StoreLocation, manifest: dict[str, Any], sizes: dict[str, int], progress: bool,
                  quick: bool) -> tuple[list[Problem], int]:
    """Problems of the files against the manifest, and the bytes read to hash them. ``quick`` takes the
    store's own SHA-256 of an object where it keeps one instead of reading it."""
    entries = manifest["files"]
    listed = {e["path"] for e in entries}
    problems = [Problem(rel, f"is not listed in {MANIFEST}",
                        f"noldo manifest {shlex.quote(str(root))} (if the file belongs to the store)")
                for rel in store_files(root, sizes) if rel not in listed]
    present = []
    for e in entries:
        split = e.get("split")
        if e["path"] not in sizes:
            problems.append(Problem(e["path"], f"is listed in {MANIFEST} but missing", _repair(root, split)))
        elif (size := sizes[e["path"]]) != e["bytes"]:
            problems.append(Problem(e["path"], f"has {size} bytes, {MANIFEST} says {e['bytes']}",
                                    _repair(root, split, e["path"])))
        else:
            present.append(e)
    read = 0

    def digest(entry: dict[str, Any]) -> str:
        nonlocal read
        if quick and (kept := root.stored_sha256(entry["path"])):
            return kept
        read += entry["bytes"]
        return root.sha256(entry["path"], bar.update)

    with tqdm(total=sum(e["bytes"] for e in present), unit="B", unit_scale=True, desc="sha256",
              disable=not progress, leave=False) as bar, ThreadPoolExecutor(max(8, os.cpu_count() or 2)) as pool:
        for e, found in zip(present, pool.map(digest, present), strict=True):
            if found != e["sha256"]:
                problems.append(Problem(e["path"], f"sha256 does not match {MANIFEST} (the file is corrupt)",
                                        _repair(root, e.get("split"), e["path"])))
    return problems, read


def verify(root: RootLike, progress: bool = False, quick: bool = False) -> tuple[list[Problem], dict[str, Any]]:
    """Check a store; returns the problems found and a summary (splits, files, bytes, bytes read to hash).

    ``quick``: on object storage that keeps a SHA-256 per object (S3 ``ChecksumSHA256``), compare that
    with the manifest instead of reading the object; every other file is read.
    """
    location = StoreLocation.of(root)
    splits = require_splits(location)
    sizes = location.sizes()  # one listing: every size and presence check below uses it
    problems = [p for split in splits for p in _check_split(location, split, sizes)]
    files, size, read = 0, 0, 0
    try:
        manifest = read_manifest(location)
    except NoldoError as exc:
        manifest = None
        problems.append(Problem(MANIFEST, str(exc), f"noldo manifest {shlex.quote(str(location))}"))
    else:
        if manifest is None:
            problems.append(Problem(MANIFEST, "is missing, so file contents cannot be checked",
                                    f"noldo manifest {shlex.quote(str(location))}"))
    if manifest is not None:
        reported = {p.path for p in problems}
        found, read = _check_hashes(location, manifest, sizes, progress, quick)
        problems += [p for p in found if p.path not in reported]
        files, size = len(manifest["files"]), manifest.get("total_bytes", 0)
    summary = {"root": str(location), "ok": not problems, "splits": splits, "files": files, "bytes": size,
               "bytes_read": read, "problems": [str(p) for p in problems]}
    return problems, summary
