"""A store as Croissant 1.0 JSON-LD (``ROOT/croissant.json``, written by ``noldo card``; docs/card.md).

Every path is relative to the JSON-LD file, which sits in ROOT, so a reader of Croissant reads the
store where it is. The sample index of each split is a ``cr:FileObject`` with its sha256 and a
``cr:RecordSet`` with one field per column; each Zarr group is a ``cr:FileSet`` (Croissant has no
reader for Zarr). The manifest is a ``cr:FileSet`` too: it lists this file's sha256, so this file
cannot give the manifest's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from noldo.location import MANIFEST
from noldo.store import group_name

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
#: The JSON-LD context of Croissant 1.0.
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
PARQUET = "application/x-parquet"
#: Zarr has no registered media type; Croissant then names the format by the URL of its specification.
ZARR = "https://zarr-specs.readthedocs.io/en/latest/v3/core/index.html"

#: Arrow type predicates → Croissant data types, tried in order; other columns (binary, nested) get no field.
_DATA_TYPES = ((pa.types.is_boolean, "sc:Boolean"), (pa.types.is_integer, "sc:Integer"),
               (pa.types.is_floating, "sc:Float"), (pa.types.is_timestamp, "sc:DateTime"),
               (pa.types.is_date, "sc:Date"), (pa.types.is_string, "sc:Text"), (pa.types.is_large_string, "sc:Text"))


@dataclass(frozen=True)
class IndexFile:
    """A split's sample index as Croissant describes it."""

    split: str
    description: str
    entry: Mapping[str, Any]  # its manifest entry: path, bytes, sha256
    schema: pa.Schema


def data_type(arrow_type: pa.DataType) -> str | None:
    """The Croissant data type of an Arrow column type, or None for one it has no type for."""
    return next((name for test, name in _DATA_TYPES if test(arrow_type)), None)


def _file_set(name: str, includes: str, encoding: str, description: str) -> dict[str, Any]:
    return {"@type": "cr:FileSet", "@id": name, "name": name, "description": description,
            "encodingFormat": encoding, "includes": includes}


def _record_set(index: IndexFile) -> dict[str, Any]:
    path = index.entry["path"]
    typed = [(f.name, data_type(f.type)) for f in index.schema]
    fields = [{"@type": "cr:Field", "@id": f"{index.split}/{column}", "name": column, "dataType": kind,
               "source": {"fileObject": {"@id": path}, "extract": {"column": column}}}
              for column, kind in typed if kind]
    left_out = [column for column, kind in typed if not kind]
    note = f" Columns without a Croissant type, not described here: {', '.join(left_out)}." if left_out else ""
    return {"@type": "cr:RecordSet", "@id": index.split, "name": index.split,
            "description": f"The sample index of {index.split}: row i describes sample i of "
                           f"{group_name(index.split)}.{note}",
            "key": {"@id": f"{index.split}/sample"}, "field": fields}


def croissant(indexes: Sequence[IndexFile], *, description: str, url: str, licences: Sequence[str],
              cite_as: str, keywords: Sequence[str]) -> dict[str, Any]:
    """The Croissant JSON-LD of a store with these split indexes (``licences`` are URLs)."""
    distribution: list[dict[str, Any]] = [
        _file_set(MANIFEST, MANIFEST, "application/json",
                  "size and sha256 of every file of the store (this description included)")]
    for index in indexes:
        entry = index.entry
        distribution += [
            {"@type": "cr:FileObject", "@id": entry["path"], "name": entry["path"], "contentUrl": entry["path"],
             "contentSize": f"{entry['bytes']} B", "encodingFormat": PARQUET, "sha256": entry["sha256"],
             "description": f"sample index of {index.split}"},
            _file_set(group_name(index.split), f"{group_name(index.split)}/**", ZARR,
                      f"Zarr v3 group of {index.split}: {index.description}")]
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": "NoLDO-S12",
        "description": description,
        "url": url,
        "license": list(licences),
        "citeAs": cite_as,
        "keywords": list(keywords),
        "isAccessibleForFree": True,
        "distribution": distribution,
        "recordSet": [_record_set(index) for index in indexes],
    }
