"""``noldo card``: a store's Hugging Face dataset card (``README.md``) and Croissant description
(``croissant.json``), written beside its manifest so the store can be published as it is (docs/card.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from noldo.catalog import HF_REPO, REFERENCES, SHARD_SAMPLES
from noldo.catalog_doc import bibtex, citation_section
from noldo.croissant import IndexFile, croissant
from noldo.errors import NoldoError
from noldo.location import MANIFEST, RootLike, StoreLocation
from noldo.lock import writing
from noldo.manifest import known_hashes, read_manifest, refresh_manifest, write_manifest
from noldo.markdown import table
from noldo.store import Split, describe, group_name, index_name, require_splits

CARD = "README.md"
#: The line that marks a card as noldo's: a README.md without it is the user's, and is never replaced.
MARK = "<!-- written by `noldo card`: change the store and run it again rather than editing this file -->"
CROISSANT = "croissant.json"
DESCRIPTION = ("NoLDO-S12 pairs Sentinel-1 and Sentinel-2 patches with noisy Dynamic World labels (the nol "
               "pretraining split) and with expert Dynamic World and OpenStreetMap labels (the downstream "
               "splits), stored as Zarr v3 groups with a Parquet sample index per split.")
#: Hub licence identifiers of the catalogue's licences; the others are ``other`` (docs/card.md).
HUB_LICENCES = {"cc-by-4.0": "cc-by-4.0", "cloud-score-plus": "cc-by-4.0", "odbl-1.0": "odbl", "cc0-1.0": "cc0-1.0"}
#: Dataset sizes as the hub names them: "n<1K", "1K<n<10K", ...
_SIZE_STEPS = ("1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B", "100B", "1T")


@dataclass(frozen=True)
class SplitFacts:
    """What the card says of one split, read once from the store and its manifest."""

    name: str
    attrs: Mapping[str, Any]  # group attributes
    summary: Mapping[str, Any]  # its entry of store.describe: samples, layout, arrays
    index: Mapping[str, Any]  # the manifest entry of its sample index
    stored_bytes: int  # its files in the manifest: group and index

    @property
    def decoded_bytes(self) -> int:
        return sum(a["bytes"] for a in self.summary["arrays"].values())


def read_facts(location: StoreLocation, manifest: Mapping[str, Any]) -> list[SplitFacts]:
    """Every split of the store as the card describes it."""
    summary = describe(location)["splits"]
    entries = {e["path"]: e for e in manifest["files"]}
    facts = []
    for name in summary:
        if index_name(name) not in entries:
            raise NoldoError(f"{location}/{index_name(name)} is not in {MANIFEST}; run noldo verify {location}")
        stored = sum(e["bytes"] for e in manifest["files"] if e.get("split") == name)
        facts.append(SplitFacts(name, Split.open(location, name).attrs, summary[name], entries[index_name(name)],
                                stored))
    return facts


def _licences(facts: list[SplitFacts]) -> dict[str, Mapping[str, str]]:
    found = {key: lic for split in facts for key, lic in split.attrs.get("licences", {}).items()}
    return dict(sorted(found.items()))


def _synthetic(facts: list[SplitFacts]) -> list[str]:
    return [split.name for split in facts if split.summary["source"] == "synthetic"]


def _tags(facts: list[SplitFacts]) -> list[str]:
    arrays = {a for split in facts for a in split.summary["arrays"]}
    optional = {"sentinel-1": "s1" in arrays, "sentinel-2": "s2" in arrays, "openstreetmap": "osm" in arrays,
                "synthetic": bool(_synthetic(facts))}
    return ["remote-sensing", "earth-observation", "satellite-imagery", "land-cover", "noisy-labels", "multimodal",
            "geospatial", "zarr", *(tag for tag, present in optional.items() if present)]


def size_category(samples: int) -> str:
    """The hub's size category of a dataset of this many samples (``1K<n<10K``)."""
    step = len(str(samples)) - 4  # 1000 … 9999 → 0
    if step < 0:
        return "n<1K"
    return f"{_SIZE_STEPS[step]}<n<{_SIZE_STEPS[step + 1]}" if step + 1 < len(_SIZE_STEPS) else "n>1T"


def front_matter(facts: list[SplitFacts]) -> dict[str, Any]:
    """The card's YAML metadata: licences, task, tags, size, one config per split (its sample index)."""
    licences = _licences(facts)
    hub = sorted({HUB_LICENCES.get(key, "other") for key in licences})
    meta: dict[str, Any] = {"pretty_name": "NoLDO-S12", "license": hub[0] if len(hub) == 1 else hub}
    if custom := [lic for key, lic in licences.items() if key not in HUB_LICENCES]:
        meta["license_name"] = "-".join(lic["key"] for lic in custom)
        meta["license_link"] = custom[0]["url"] if len(custom) == 1 else CARD
    return {
        **meta,
        "task_categories": ["image-segmentation"],
        "task_ids": ["semantic-segmentation"],
        "tags": _tags(facts),
        "size_categories": [size_category(sum(split.summary["samples"] for split in facts))],
        "configs": [{"config_name": split.name, "data_files": [{"split": split.name, "path": split.index["path"]}]}
                    for split in facts],
        "dataset_info": [{"config_name": split.name,
                          "splits": [{"name": split.name, "num_bytes": split.decoded_bytes,
                                      "num_examples": split.summary["samples"]}],
                          "download_size": split.stored_bytes, "dataset_size": split.decoded_bytes}
                         for split in facts],
    }


def _size(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def _body(facts: list[SplitFacts], repo: str) -> str:
    synthetic = _synthetic(facts)
    warning = (f"\n\n**Simulated data.** {', '.join(synthetic)} {'was' if len(synthetic) == 1 else 'were'} built "
               "by noldo's synthetic source: every value is simulated, none is satellite data (noldo's CATALOG.md, "
               "\"The synthetic source\").") if synthetic else ""
    splits = table(("split", "samples", "seasons", "tile (px)", "source", "size", "description"),
                   ((s.name, f"{s.summary['samples']:,}", s.summary["seasons"],
                     f"{s.summary['height']}×{s.summary['width']}", s.summary["source"],
                     _size(s.stored_bytes), s.attrs.get("description")) for s in facts))
    arrays = table(("split", "array", "dims", "shape", "dtype", "licence", "stored"),
                   ((s.name, f"`{name}`", ", ".join(a["dims"]), "×".join(map(str, a["shape"])), a["dtype"],
                     s.attrs.get("array_licences", {}).get(name), _size(a["stored_bytes"]))
                    for s in facts for name, a in s.summary["arrays"].items()))
    licences = table(("key", "licence", "attribution"),
                     ((key, f"[{lic['name']}]({lic['url']})", lic["attribution"])
                      for key, lic in _licences(facts).items()))
    first = facts[0].name
    return f"""# NoLDO-S12

{DESCRIPTION}{warning}

## Splits

{splits}

Size is what the split's files take (Zarr group and sample index, compressed); `dataset_info` in the
metadata above gives the decoded size as `dataset_size`.

## Arrays

{arrays}

Every array shares the leading `sample` axis; row i of `<split>.parquet` describes sample i.
Bands, legends, nodata values and the store layout are in the group attributes and in noldo's
CATALOG.md (`noldo catalog`).

## Files

- `<split>.zarr/`: a Zarr v3 group per split, in shards of {SHARD_SAMPLES} samples.
- `<split>.parquet`: the sample index of the split; the configs of this card point at it, so the
  dataset viewer and `datasets.load_dataset("{repo}", "{first}")` show the index, not the pixels.
- `manifest.json`: size and sha256 of every file; `noldo verify` checks them.
- `croissant.json`: this store in Croissant 1.0 (`mlcroissant.Dataset(jsonld="croissant.json")`).

## Loading

```bash
pip install noldo
noldo download --release {repo} --out noldo-s12 && noldo verify noldo-s12
```

```python
import noldo
ds = noldo.open("noldo-s12", "{first}")  # xarray Dataset with band, polarization, season and sample coordinates
ds = noldo.open("hf://datasets/{repo}", "{first}")  # or in place from the hub, every object verified

import xarray as xr
ds = xr.open_zarr("noldo-s12/{group_name(first)}")  # plain xarray, named dimensions
```

## Licences

{licences}

{citation_section()}
"""


def dataset_card(facts: list[SplitFacts], repo: str = HF_REPO) -> str:
    """``README.md``: YAML front matter, then what the store holds, how to load it, licences, citation."""
    meta = yaml.safe_dump(front_matter(facts), sort_keys=False, allow_unicode=True, width=120)
    return f"---\n{meta}---\n\n{MARK}\n\n{_body(facts, repo)}"


def croissant_description(location: StoreLocation, facts: list[SplitFacts], repo: str = HF_REPO) -> dict[str, Any]:
    """``croissant.json``: the store in Croissant 1.0, its paths relative to ROOT."""
    indexes = [IndexFile(split.name, split.attrs.get("description", ""), split.index,
                         pq.read_schema(pa.BufferReader(location.read_bytes(split.index["path"]))))
               for split in facts]
    return croissant(indexes, description=DESCRIPTION, url=f"https://huggingface.co/datasets/{repo}",
                     licences=[lic["url"] for lic in _licences(facts).values()], cite_as=bibtex(REFERENCES[0]),
                     keywords=_tags(facts))


def _refuse_foreign_card(out: StoreLocation) -> None:
    if out.is_file(CARD) and MARK not in out.read_bytes(CARD).decode(errors="replace"):
        raise NoldoError(f"{out}/{CARD} exists and was not written by noldo card; move it away (or write the "
                         "card elsewhere with --out DIR) so that it is not replaced")


def _write(location: StoreLocation, out: StoreLocation, manifest: Mapping[str, Any], repo: str) -> list[str]:
    facts = read_facts(location, manifest)
    out.write_bytes(CARD, dataset_card(facts, repo).encode())
    out.write_json(CROISSANT, croissant_description(location, facts, repo))
    return [f"{out}/{CARD}", f"{out}/{CROISSANT}"]


def write_card(root: RootLike, out: RootLike | None = None, repo: str = HF_REPO) -> list[str]:
    """Write the card and the Croissant file into ROOT and list them in its manifest (under the splits'
    locks), or into ``out`` leaving ROOT as it is; returns the paths written."""
    location = StoreLocation.of(root)
    splits = require_splits(location)
    if out is not None and StoreLocation.of(out) != location:
        manifest = read_manifest(location)
        if manifest is None:
            raise NoldoError(f"{location} has no {MANIFEST}; run noldo manifest {location} first")
        _refuse_foreign_card(StoreLocation.of(out))
        return _write(location, StoreLocation.of(out), manifest, repo)
    with writing(location, *splits, command="noldo card"):
        _refuse_foreign_card(location)  # before the manifest is touched
        written = _write(location, location, write_manifest(location, known_hashes(location)), repo)
        refresh_manifest(location, lambda path: path in (CARD, CROISSANT))
    return [*written, f"{location}/{MANIFEST}"]
