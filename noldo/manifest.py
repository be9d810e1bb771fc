"""``ROOT/manifest.json``: size and sha256 of every file of a store, and what each file holds."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from noldo._version import __version__
from noldo.catalog import SHARD_SAMPLES
from noldo.errors import NoldoError
from noldo.files import PARTIAL_SUFFIX
from noldo.location import MANIFEST, RootLike, StoreLocation
from noldo.lock import writing_manifest
from noldo.store import describe

MANIFEST_VERSION = 1
_SHARD = re.compile(r"^(?P<split>[^/]+)\.zarr/(?P<array>[^/]+)/c/(?P<shard>\d+)(/0)*$")


def store_files(root: RootLike, sizes: Mapping[str, int] | None = None) -> Iterator[str]:
    """Every published file of a store (paths below ROOT): not the manifest, build or download state
    (``.noldo*``), nor leftovers of interrupted writes. ``sizes`` is a listing already made."""
    for rel in StoreLocation.of(root).sizes() if sizes is None else sizes:
        top = rel.split("/", 1)[0]
        if (not top.startswith(".noldo") and rel != MANIFEST and not rel.endswith(PARTIAL_SUFFIX)
                and not top.endswith(".creating")):
            yield rel


def describe_file(rel: str, samples: Mapping[str, int]) -> dict[str, Any]:
    """What a store file holds: split, array and sample range for shards; ``meta`` or ``index`` otherwise (no
    split for a file about the whole store)."""
    if m := _SHARD.match(rel):
        split, shard = m["split"], int(m["shard"])
        start = shard * SHARD_SAMPLES
        stop = min(start + SHARD_SAMPLES, samples.get(split, start + SHARD_SAMPLES))
        return {"split": split, "group": f"{split}.zarr", "array": m["array"], "shard_index": shard,
                "sample_start": start, "sample_stop": stop, "n_samples": stop - start}
    if rel.endswith(".parquet") and "/" not in rel:
        return {"split": rel[: -len(".parquet")], "group": None, "array": "index"}
    if not rel.split("/", 1)[0].endswith(".zarr"):  # about the whole store (README.md, stac/: docs/card.md, stac.md)
        return {"split": None, "group": None, "array": "meta"}
    split = rel.split("/", 1)[0].removesuffix(".zarr")
    return {"split": split, "group": f"{split}.zarr", "array": "meta"}


def build_manifest(root: RootLike, known_hashes: Mapping[str, list] | None = None) -> dict[str, Any]:
    """Hash every store file (reusing ``known_hashes[rel] = [size, sha256]`` when the size matches)."""
    location = StoreLocation.of(root)
    summary = describe(location)["splits"]
    samples = {name: s["samples"] for name, s in summary.items()}
    known = known_hashes or {}
    files, sizes = [], location.sizes()
    for rel in store_files(location, sizes):
        size = sizes[rel]
        cached = known.get(rel)
        digest = cached[1] if cached and cached[0] == size else location.sha256(rel)
        files.append({"path": rel, "bytes": size, "sha256": digest, **describe_file(rel, samples)})
    splits = {name: {**{k: s[k] for k in ("samples", "seasons", "height", "width", "source")},
                     "arrays": sorted(s["arrays"])} for name, s in summary.items()}
    return {
        "schema_version": MANIFEST_VERSION,
        "dataset": "NoLDO-S12",
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "noldo_version": __version__,
        "total_bytes": sum(f["bytes"] for f in files),
        "splits": splits,
        "files": files,
    }


def write_manifest(root: RootLike, known_hashes: Mapping[str, list] | None = None) -> dict[str, Any]:
    """Build and atomically write ``ROOT/manifest.json``; returns it."""
    location = StoreLocation.of(root)
    with writing_manifest(location, command="noldo manifest"):
        manifest = build_manifest(location, known_hashes)
        location.write_json(MANIFEST, manifest)
    return manifest


def refresh_manifest(root: RootLike, rewritten: Callable[[str], bool]) -> dict[str, Any] | None:
    """After a command rewrote files of a store that has a manifest: write the manifest again, hashing what
    ``rewritten`` names (and any new or resized file), keeping the other hashes; None without a manifest."""
    if read_manifest(root) is None:
        return None
    return write_manifest(root, known_hashes(root, rewritten))


def read_manifest(root: RootLike) -> dict[str, Any] | None:
    """The store's manifest, None if it has none, or a clear error if it is unreadable."""
    location = StoreLocation.of(root)
    if not location.is_file(MANIFEST):
        return None
    try:
        manifest = location.read_json(MANIFEST)
        files = manifest["files"]
        if not all({"path", "bytes", "sha256"} <= set(f) for f in files):
            raise ValueError("a file entry lacks path, bytes or sha256")
    except (ValueError, KeyError, TypeError) as exc:
        raise NoldoError(f"is damaged ({exc})") from None
    return manifest


def known_hashes(root: RootLike, rewritten: Callable[[str], bool] | None = None) -> dict[str, list]:
    """``path → [size, sha256]`` of every file the store's manifest lists (empty without a manifest), but
    those ``rewritten`` says a command has just written again: a file rewritten at the same size would
    otherwise keep its old hash."""
    manifest = read_manifest(root) or {"files": []}
    return {f["path"]: [f["bytes"], f["sha256"]] for f in manifest["files"]
            if rewritten is None or not rewritten(f["path"])}
