"""``noldo stac``: a store's STAC catalogue as files, and one stac-geoparquet file per split (docs/stac.md).

By default the catalogue goes into ``ROOT/stac/`` under the splits' locks and is listed in the store's
manifest, so it is published with the store and its relative hrefs reach the data wherever the store
is copied; ``--out DIR`` writes it elsewhere and leaves ROOT as it is. Items are written one by one as
they are made (none is kept), and the geoparquet file is built from chunks on a temporary disk.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import posixpath
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet
from tqdm.auto import tqdm

from noldo.errors import NoldoError
from noldo.location import LocalLocation, ReleaseLocation, RootLike, StoreLocation
from noldo.lock import writing
from noldo.manifest import known_hashes, write_manifest
from noldo.stac import (
    CATALOG,
    CATALOG_ID,
    Extents,
    SplitStac,
    collection_path,
    geoparquet_path,
    item_path,
    root_catalog,
)
from noldo.store import Split, require_splits

log = logging.getLogger(__name__)

#: Where the catalogue goes inside a store.
STAC_DIR = "stac"
#: Items per stac-geoparquet chunk (held in memory while it is converted).
CHUNK_ITEMS = 4096


def _absolute(location: StoreLocation) -> str:
    return str(location.path.resolve()) if isinstance(location, LocalLocation) else str(location)


@dataclass
class Target:
    """Where the catalogue is written: below ``prefix`` of ``location``; ``inside`` if that is the store's
    ``ROOT/stac``, when it remembers the size and sha256 of every file written (paths below ROOT)."""

    location: StoreLocation
    prefix: str
    inside: bool
    written: dict[str, list] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.location}/{self.prefix}" if self.prefix else str(self.location)

    def rel(self, path: str) -> str:
        return posixpath.join(self.prefix, path) if self.prefix else path

    def put(self, path: str, data: bytes) -> None:
        self.location.write_bytes(self.rel(path), data)
        if self.inside:  # for the manifest
            self.written[self.rel(path)] = [len(data), hashlib.sha256(data).hexdigest()]

    def prepare(self) -> None:
        """Refuse a directory holding anything but an earlier noldo catalogue; remove that one, and only it
        (its ``catalog.json``, split folders and ``items-*.parquet``)."""
        names = self.location.children(self.prefix)
        if not names:
            return
        path = self.rel(CATALOG)
        try:
            ours = self.location.is_file(path) and self.location.read_json(path).get("id") == CATALOG_ID
        except ValueError:
            ours = False
        foreign = [name for name in names if not (name == CATALOG or fnmatch.fnmatch(name, "items-*.parquet")
                                                  or {"collection.json", "items"} & set(self.location.children(
                                                      self.rel(name))))]  # items/ alone: a run that stopped
        if not ours or foreign:
            raise NoldoError(f"{self} holds {(foreign or names)[0]!r}, which is not part of a noldo STAC catalogue; "
                             "choose a new or empty directory")
        for name in names:
            self.location.remove(self.rel(name))


def target_for(root: StoreLocation, out: RootLike | None) -> Target:
    """``ROOT/stac`` (``out`` None or that directory), or ``out`` outside ROOT."""
    if out is None:
        return Target(root, STAC_DIR, True)
    out = StoreLocation.of(out)
    base, path = _absolute(root), _absolute(out)
    if path == posixpath.join(base, STAC_DIR):
        return Target(root, STAC_DIR, True)
    if path == base or path.startswith(base + "/"):
        raise NoldoError(f"{out} is inside the store {root}: leave out --out to write {root}/{STAC_DIR}, or choose a "
                         "directory outside it")
    return Target(out, "", False)


def store_hrefs(root: StoreLocation, target: Target, href_base: str | None) -> Callable[[str, str], str]:
    """How a catalogue document (a path below the catalogue) refers to a store file (a path below ROOT):
    below ``href_base`` if given, relative inside ROOT, else by ROOT's absolute path or URL."""
    if href_base:
        return lambda path, document: f"{href_base.rstrip('/')}/{path}"
    if target.inside:
        return lambda path, document: posixpath.relpath(path, posixpath.dirname(target.rel(document)))
    base = _absolute(root)
    return lambda path, document: f"{base}/{path}"


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _pretty(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


def write_collection(stac: SplitStac, target: Target, progress: bool = False) -> dict[str, Any]:
    """Write a split's Items (as they are made), its stac-geoparquet file and its Collection; returns the
    Collection."""
    extents = Extents()

    def written():
        with tqdm(total=stac.item_count, desc=f"stac {stac.name}", unit="item", disable=not progress) as bar:
            for item in stac.item_dicts():
                target.put(item_path(stac.name, item["id"]), _compact(item))
                extents.add(item)
                bar.update()
                yield item

    with tempfile.TemporaryDirectory(prefix="noldo-stac-") as tmp:
        chunks = Path(tmp, "chunks")
        chunks.mkdir()
        reader = parse_stac_items_to_arrow(written(), chunk_size=CHUNK_ITEMS, schema="ChunksToDisk", tmpdir=chunks)
        collection = stac.collection(extents)
        mirror = {**collection, "links": [link for link in collection["links"] if link["rel"] != "item"]}
        to_parquet(reader, Path(tmp, "items.parquet"), collections={stac.name: mirror})
        target.put(geoparquet_path(stac.name), Path(tmp, "items.parquet").read_bytes())
    target.put(collection_path(stac.name), _pretty(collection))
    return collection


def write_stac(root: RootLike, out: RootLike | None = None, href_base: str | None = None,
               progress: bool = False) -> dict[str, Any]:
    """Write the STAC catalogue of a store (docs/stac.md); returns what was written."""
    location = StoreLocation.of(root)
    splits = require_splits(location)
    target = target_for(location, out)
    if target.inside and isinstance(location, ReleaseLocation):
        raise NoldoError(f"{location} is a published release and read-only; write its catalogue with --out DIR")
    hrefs = store_hrefs(location, target, href_base)
    titles, summary = {}, {}
    with writing(location, *splits, command="noldo stac") if target.inside else nullcontext():
        target.prepare()
        target.put(CATALOG, _pretty(root_catalog({})))  # marks the folder as ours should this run be interrupted
        for name in splits:
            split = Split.open(location, name)
            if split.layout.samples == 0:
                log.warning("split %s has no samples: it has no collection", name)
                continue
            stac = SplitStac(split, hrefs)
            titles[name] = write_collection(stac, target, progress).get("title")
            summary[name] = {"items": split.layout.samples, "label_items": stac.item_count - split.layout.samples,
                             "geoparquet": f"{target}/{geoparquet_path(name)}"}
        target.put(CATALOG, _pretty(root_catalog(titles)))
        if target.inside:
            write_manifest(location, {**known_hashes(location), **target.written})
    return {"catalog": f"{target}/{CATALOG}", "collections": summary, "manifest": target.inside}
