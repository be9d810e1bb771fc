"""``noldo upgrade``: bring a store written by an older noldo to the current store schema (CHANGELOG.md).

Schema 1.0 → 1.1 adds, per split, the CF attributes of every array (xarray then masks nodata itself), the
``time`` array of acquisition times, the footprints of the GeoParquet index, and then ``schema_minor``;
finally the manifest is rewritten (shards keep their hashes; metadata, indexes and ``time`` are hashed
again). Every step rewrites whole objects and can be repeated, so an interrupted upgrade is finished by
running it again.
"""

from __future__ import annotations

from noldo.catalog import SCHEMA_MINOR, SCHEMA_VERSION, array_kind
from noldo.location import RootLike, StoreLocation
from noldo.lock import writing
from noldo.manifest import refresh_manifest
from noldo.store import (
    Split,
    cf_attributes,
    consolidate,
    require_splits,
    schema_of,
    writable_group,
    write_derived,
)


def _rewritten(path: str) -> bool:
    """What an upgrade may have written again: metadata, indexes and the ``time`` array (never a shard of data)."""
    return path.endswith("zarr.json") or (path.endswith(".parquet") and "/" not in path) or "/time/" in path


def upgrade(root: RootLike) -> dict[str, list[str]]:
    """Upgrade every split of ``root`` below schema :data:`~noldo.catalog.SCHEMA_VERSION`.
    :data:`~noldo.catalog.SCHEMA_MINOR`; returns the splits ``upgraded`` and those already ``current``."""
    location = StoreLocation.of(root)
    splits = require_splits(location)
    done: dict[str, list[str]] = {"upgraded": [], "current": []}
    with writing(location, *splits, command="noldo upgrade"):
        for name in splits:
            split = Split.open(location, name)
            group = writable_group(location, name)
            if schema_of(split.attrs) >= (SCHEMA_VERSION, SCHEMA_MINOR) and "time" in group and (
                    "geometry" in split.index_columns()):
                done["current"].append(name)
                continue
            for array_name, array in group.arrays():
                array.update_attributes(cf_attributes(array_name))
            write_derived(location, name, group, split.layout, split.index())
            licences = group.attrs.get("array_licences", {})
            group.attrs["array_licences"] = {**licences, "time": array_kind("time").licence}
            group.attrs["schema_minor"] = SCHEMA_MINOR  # last: until then a re-run upgrades it again
            consolidate(location, name)
            done["upgraded"].append(name)
        refresh_manifest(location, _rewritten)  # also after an upgrade that stopped before its manifest
    return done
