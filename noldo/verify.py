"""``noldo verify``: schema, completeness and sha256 of a store, each problem with the command that repairs it."""

from __future__ import annotations

import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import zarr
from tqdm.auto import tqdm

from noldo.catalog import array_kind
from noldo.errors import NoldoError
from noldo.files import sha256_file
from noldo.manifest import MANIFEST, read_manifest, store_files
from noldo.store import (
    check_schema,
    index_path,
    list_splits,
    read_attributes,
    shard_file,
    split_path,
    stored_layout,
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store."""

    path: str
    message: str
    repair: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}; repair: {self.repair}"


def _repair(root: Path, split: str | None, bad_file: Path | None = None) -> str:
    """The command that re-creates a split's data (after removing a bad file, if any)."""
    command = None
    if split is not None:
        try:
            command = read_attributes(root, split).get("provenance", {}).get("command")
        except NoldoError:
            command = None
    if not command:
        return "re-create the store with the command that made it, or fetch it again with noldo download"
    return f"rm {shlex.quote(str(bad_file))} && {command}" if bad_file else command


def _check_split(root: Path, split: str) -> list[Problem]:
    where = split_path(root, split)
    try:
        attrs = read_attributes(root, split)
        check_schema(attrs, where)
        layout = stored_layout(root, split)
        if layout is None:
            raise NoldoError(f"{where} has no layout attribute; it was not written by noldo")
    except NoldoError as exc:
        return [Problem(f"{split}.zarr", str(exc), _repair(root, None))]
    problems = []
    group = zarr.open_group(zarr.storage.LocalStore(where, read_only=True), mode="r", use_consolidated=False)
    present = dict(group.arrays())
    for name in layout.all_arrays:
        kind = array_kind(name)
        array = present.get(name)
        if array is None:
            problems.append(Problem(f"{split}.zarr/{name}", "array is missing", _repair(root, split)))
            continue
        dims = tuple(array.metadata.dimension_names or ())
        if dims != kind.dims or str(array.dtype) != kind.dtype or array.shape[1:] != layout.shape(name)[1:]:
            problems.append(Problem(f"{split}.zarr/{name}", f"is {array.dtype}{list(array.shape)} with dims "
                                    f"{list(dims)}, expected {kind.dtype} with dims {list(kind.dims)}",
                                    _repair(root, split)))
            continue
        for shard in range(layout.shards):
            path = shard_file(where, array, shard)
            if not path.is_file():
                start, stop = layout.shard_range(shard)
                problems.append(Problem(str(path.relative_to(root)), f"shard {shard} of {name} (samples "
                                        f"{start}–{stop - 1}) is missing", _repair(root, split)))
    index = index_path(root, split)
    if not index.is_file():
        problems.append(Problem(index.name, "the sample index is missing", _repair(root, split)))
    else:
        try:
            rows = pd.read_parquet(index, columns=["sample"])
            if len(rows) != layout.samples:
                problems.append(Problem(index.name, f"has {len(rows)} rows for {layout.samples} samples",
                                        _repair(root, split, index)))
        except Exception as exc:  # any parquet/arrow decoding error means a damaged index
            problems.append(Problem(index.name, f"cannot be read ({type(exc).__name__})", _repair(root, split, index)))
    return problems


def _check_hashes(root: Path, manifest: dict[str, Any], progress: bool) -> list[Problem]:
    entries = manifest["files"]
    listed = {e["path"] for e in entries}
    problems = [Problem(p.relative_to(root).as_posix(), f"is not listed in {MANIFEST}",
                        f"noldo manifest {shlex.quote(str(root))} (if the file belongs to the store)")
                for p in store_files(root) if p.relative_to(root).as_posix() not in listed]
    present = []
    for e in entries:
        path = root / e["path"]
        split = e.get("split")
        if not path.is_file():
            problems.append(Problem(e["path"], f"is listed in {MANIFEST} but missing", _repair(root, split)))
        elif path.stat().st_size != e["bytes"]:
            problems.append(Problem(e["path"], f"has {path.stat().st_size} bytes, {MANIFEST} says {e['bytes']}",
                                    _repair(root, split, path)))
        else:
            present.append(e)
    with tqdm(total=sum(e["bytes"] for e in present), unit="B", unit_scale=True, desc="sha256",
              disable=not progress, leave=False) as bar, ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        digests = pool.map(lambda e: sha256_file(root / e["path"], bar.update), present)
        for e, digest in zip(present, digests, strict=True):
            if digest != e["sha256"]:
                problems.append(Problem(e["path"], f"sha256 does not match {MANIFEST} (the file is corrupt)",
                                        _repair(root, e.get("split"), root / e["path"])))
    return problems


def verify(root: Path, progress: bool = False) -> tuple[list[Problem], dict[str, Any]]:
    """Check a store; returns the problems found and a summary (splits, files, bytes hashed)."""
    root = Path(root)
    splits = list_splits(root)
    if not splits:
        raise NoldoError(f"{root} holds no noldo splits (no <split>.zarr groups)")
    problems = [p for split in splits for p in _check_split(root, split)]
    files, size = 0, 0
    try:
        manifest = read_manifest(root)
    except NoldoError as exc:
        manifest = None
        problems.append(Problem(MANIFEST, str(exc), f"noldo manifest {shlex.quote(str(root))}"))
    else:
        if manifest is None:
            problems.append(Problem(MANIFEST, "is missing, so file contents cannot be checked",
                                    f"noldo manifest {shlex.quote(str(root))}"))
    if manifest is not None:
        reported = {p.path for p in problems}
        problems += [p for p in _check_hashes(root, manifest, progress) if p.path not in reported]
        files, size = len(manifest["files"]), manifest.get("total_bytes", 0)
    summary = {"root": str(root), "ok": not problems, "splits": splits, "files": files, "bytes": size,
               "problems": [str(p) for p in problems]}
    return problems, summary
