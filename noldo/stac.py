"""A store's splits as STAC 1.1 objects: one Collection per split, its Items, the root Catalog (docs/stac.md).

Each sample gives one *source Item* (id = the sample id) with its imagery (``s2``, ``s1``, ``s2_cloud``)
and one *label Item* per label array (``<sample>-dw``, ``-osm``, ``-truth``) that holds the label
extension fields and links to its source Item (``rel: source``), as the label extension has it. Every
asset points at a whole Zarr v3 array of the split, ``<split>.zarr/<array>`` (media type
``application/vnd.zarr; version=3``); an Item's data is that array's slice at the Item's
``noldo:sample_index`` along the array's first dimension, ``sample``. The extensions an object declares
are exactly those whose fields it holds (:func:`used_extensions`).
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pystac
import shapely
from pystac.utils import datetime_to_str, str_to_datetime

from noldo import catalog
from noldo._version import __version__
from noldo.catalog import REFERENCES, SHARD_SAMPLES, array_kind
from noldo.errors import NoldoError
from noldo.grid import Grid
from noldo.index import acquisition_times, footprints
from noldo.store import Split, group_name, index_name

ZARR = "application/vnd.zarr; version=3"
PARQUET = "application/vnd.apache.parquet"
CATALOG = "catalog.json"
CATALOG_ID = "noldo-s12"

#: The extensions used, by field prefix; ``noldo:`` fields (sample index, season times) have no schema.
EXTENSIONS = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.3.2/schema.json",
    "product": "https://stac-extensions.github.io/product/v1.0.0/schema.json",
    "label": "https://stac-extensions.github.io/label/v1.0.1/schema.json",
    "ml-aoi": "https://stac-extensions.github.io/ml-aoi/v0.2.0/schema.json",
}

#: ``ml-aoi:split`` by a word of the split name (its last such word counts): ``nol`` pretrains, so it is training data.
ML_AOI_SPLITS = {"nol": "train", "train": "train", "val": "validate", "validate": "validate",
                 "validation": "validate", "test": "test"}

#: The eo extension's common band names of the Sentinel-2 bands.
S2_COMMON_NAMES = {"B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "rededge071",
                   "B6": "rededge075", "B7": "rededge078", "B8": "nir", "B8A": "nir08", "B9": "nir09",
                   "B10": "cirrus", "B11": "swir16", "B12": "swir22"}

#: The SPDX identifier of each licence of :data:`noldo.catalog.LICENCES` (None: not on the SPDX list).
SPDX = {"copernicus": None, "cc-by-4.0": "CC-BY-4.0", "cloud-score-plus": "CC-BY-4.0", "odbl-1.0": "ODbL-1.0",
        "cc0-1.0": "CC0-1.0"}

#: Who produced and licenses the data under each licence.
PROVIDERS = {
    "copernicus": ("European Space Agency, Copernicus Sentinel-1 and Sentinel-2", ["producer", "licensor"],
                   "https://sentinels.copernicus.eu"),
    "cc-by-4.0": ("Dynamic World: Google, World Resources Institute, National Geographic Society",
                  ["producer", "licensor"], "https://dynamicworld.app"),
    "cloud-score-plus": ("Google, Cloud Score+", ["producer", "licensor"],
                         "https://developers.google.com/earth-engine/datasets/catalog/GOOGLE_CLOUD_SCORE_PLUS_V1_S2_HARMONIZED"),
    "odbl-1.0": ("OpenStreetMap contributors", ["producer", "licensor"], "https://www.openstreetmap.org/copyright"),
}

_S2 = [{"name": b.name, "description": b.description, "eo:common_name": S2_COMMON_NAMES[b.name],
        "eo:center_wavelength": round(b.wavelength_nm / 1000, 4), "gsd": b.resolution_m} for b in catalog.S2_BANDS]
_S1 = [{"name": b.name, "description": b.description, "gsd": b.resolution_m} for b in catalog.S1_BANDS]

#: Title, roles and fields of each array's asset (its description, data type and nodata come from the schema).
ASSETS: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "s2": ("Sentinel-2 L1C", ["data", "reflectance"],
           {"constellation": "sentinel-2", "instruments": ["msi"], "product:type": "S2MSI1C", "bands": _S2,
            "ml-aoi:role": "feature"}),
    "s1": ("Sentinel-1 GRD backscatter", ["data", "sigma0"],
           {"constellation": "sentinel-1", "instruments": ["c-sar"], "product:type": "GRD", "bands": _S1,
            "sar:instrument_mode": "IW", "sar:frequency_band": "C", "sar:center_frequency": 5.405,
            "sar:polarizations": [b.name for b in catalog.S1_BANDS], "ml-aoi:role": "feature"}),
    "s2_cloud": ("Cloud Score+ of the Sentinel-2 scene", ["cloud"], {}),
    "dw": ("Dynamic World labels", ["labels"], {"ml-aoi:role": "label"}),
    "osm": ("OpenStreetMap land use", ["labels"], {"ml-aoi:role": "label"}),
    "truth": ("Known land cover (synthetic)", ["labels"], {"ml-aoi:role": "label"}),
    "dw_trust": ("Trust in each Dynamic World label", ["metadata"], {}),
}
SOURCE_ARRAYS = ("s2", "s1", "s2_cloud")
#: The arrays of each label Item: its label array, and arrays about those labels.
LABEL_ARRAYS = {"dw": ("dw", "dw_trust"), "osm": ("osm",), "truth": ("truth",)}

#: When a sample without recorded acquisition times can have been acquired: from Sentinel-2A's launch on.
SENTINEL2_LAUNCH = datetime(2015, 6, 23, tzinfo=UTC)
#: Decimal places of footprint coordinates (1e-7° is about a centimetre).
DECIMALS = 7
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]+$")


def ml_aoi_split(split: str) -> str | None:
    """The ``ml-aoi:split`` of a split (``train``, ``validate``, ``test``), None if its name tells none.

    Example:
        >>> ml_aoi_split("nol"), ml_aoi_split("dfc2020_val"), ml_aoi_split("osm_test_512x512"), ml_aoi_split("demo")
        ('train', 'validate', 'test', None)
    """
    roles = [ML_AOI_SPLITS[word] for word in split.split("_") if word in ML_AOI_SPLITS]
    return roles[-1] if roles else None


def label_methods(array: str, source: str | None, split: str) -> list[str]:
    """``label:methods``: ``manual`` for OpenStreetMap and for the expert Dynamic World tiles that
    ``noldo convert`` reads (every converted split but ``nol``), ``automated`` for Dynamic World's model
    output and the synthetic truth."""
    manual = array == "osm" or (array == "dw" and source == "convert" and split != "nol")
    return ["manual" if manual else "automated"]


def used_extensions(obj: Any) -> list[str]:
    """The schema URIs of the extensions whose fields (``prefix:name`` keys) a STAC dict holds, at any depth."""
    prefixes: set[str] = set()
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            prefixes.update(key.partition(":")[0] for key in value if ":" in key)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return [uri for prefix, uri in EXTENSIONS.items() if prefix in prefixes]


def stac_dict(obj: pystac.STACObject) -> dict[str, Any]:
    """A STAC object as JSON, its hrefs as given, declaring the extensions it uses."""
    d = obj.to_dict(include_self_link=False, transform_hrefs=False)
    if extensions := used_extensions(d):
        d["stac_extensions"] = extensions
    return d


def lonlat_bbox(geometry: shapely.Geometry) -> list[float]:
    """The bbox of a footprint; one split at the antimeridian gets west > east (RFC 7946, section 5.2)."""
    west, south, east, north = geometry.bounds
    parts = getattr(geometry, "geoms", [geometry])
    if west == -180.0 and east == 180.0 and len(parts) > 1:
        west = min(p.bounds[0] for p in parts if p.bounds[2] == 180.0)
        east = max(p.bounds[2] for p in parts if p.bounds[0] == -180.0)
    return [west, south, east, north]


def relative(target: str, document: str) -> str:
    """The href of ``target`` from ``document``, both paths below the catalogue root."""
    href = posixpath.relpath(target, posixpath.dirname(document) or ".")
    return href if href.startswith("../") else f"./{href}"


def collection_path(split: str) -> str:
    return f"{split}/collection.json"


def item_path(split: str, item_id: str) -> str:
    return f"{split}/items/{item_id}.json"


def geoparquet_path(split: str) -> str:
    """The split's Items as stac-geoparquet, at the catalogue root."""
    return f"items-{split}.parquet"


def asset_definition(name: str) -> pystac.ItemAssetDefinition:
    """What every asset of array ``name`` holds, its href aside."""
    title, roles, fields = ASSETS[name]
    kind = array_kind(name)
    values: dict[str, Any] = {"data_type": kind.dtype}
    if kind.nodata is not None:
        values["nodata"] = "nan" if math.isnan(kind.nodata) else kind.nodata
    return pystac.ItemAssetDefinition.create(title, kind.description, ZARR, roles, {**values, **fields})


def licence_field(keys: set[str]) -> str:
    """STAC's ``license``: the one SPDX identifier of the licences, else ``other`` (the links name them)."""
    ids = {SPDX.get(key) for key in keys}
    return ids.pop() if len(ids) == 1 and None not in ids else "other"


def _time(value: np.datetime64) -> datetime:
    return value.astype("datetime64[s]").astype(datetime).replace(tzinfo=UTC)


def time_fields(times: np.ndarray, unknown: tuple[datetime, datetime]) -> dict[str, datetime | None]:
    """``datetime``, or ``start_datetime``/``end_datetime`` spanning the seasons' times; ``unknown`` is the
    span for a sample without any."""
    known = sorted({_time(t) for t in times if not np.isnat(t)})
    if len(known) == 1:
        return {"datetime": known[0]}
    start, end = (known[0], known[-1]) if known else unknown
    return {"datetime": None, "start_datetime": start, "end_datetime": end}


@dataclass
class Extents:
    """What the Items of a collection span, gathered as they are written: bbox, time, CRS codes, label methods."""

    bbox: list[float] = field(default_factory=lambda: [180.0, 90.0, -180.0, -90.0])
    times: list[datetime] = field(default_factory=list)  # the earliest and the latest
    codes: set[str] = field(default_factory=set)
    methods: set[str] = field(default_factory=set)
    items: list[str] = field(default_factory=list)

    def add(self, item: Mapping[str, Any]) -> None:
        west, south, east, north = item["bbox"]
        if west > east:  # across the antimeridian
            west, east = -180.0, 180.0
        self.bbox = [min(self.bbox[0], west), min(self.bbox[1], south), max(self.bbox[2], east),
                     max(self.bbox[3], north)]
        props = item["properties"]
        spans = [str_to_datetime(props[k]) for k in ("datetime", "start_datetime", "end_datetime") if props.get(k)]
        self.times = [min(self.times[:1] + spans), max(self.times[1:] + spans)]
        self.codes.add(props["proj:code"])
        self.methods.update(props.get("label:methods", ()))
        self.items.append(item["id"])


class SplitStac:
    """The STAC objects of one split. ``store_href(path, document)`` is the href of a store file (a path
    below ROOT) from a catalogue document (a path below the catalogue root)."""

    def __init__(self, split: Split, store_href: Callable[[str, str], str]) -> None:
        self.split, self.name, self.attrs, self.store_href = split, split.name, split.attrs, store_href
        arrays = split.layout.arrays
        self.sources = [a for a in SOURCE_ARRAYS if a in arrays]
        self.labels = {label: [a for a in members if a in arrays] for label, members in LABEL_ARRAYS.items()
                       if label in arrays}
        self.definitions = {a: asset_definition(a) for a in (*self.sources, *(m for ms in self.labels.values()
                                                                               for m in ms))}
        self.role = ml_aoi_split(self.name)
        self.source = self.attrs.get("provenance", {}).get("source")
        created = self.attrs.get("provenance", {}).get("created")
        self.unknown_time = (SENTINEL2_LAUNCH, datetime.fromisoformat(created) if created else datetime.now(UTC))
        anywhere = item_path(self.name, "item")  # every item file is in one folder: the same hrefs for each
        self.item_links = [(rel, relative(target, anywhere)) for rel, target in (
            ("root", CATALOG), ("parent", collection_path(self.name)), ("collection", collection_path(self.name)))]
        self.asset_hrefs = {a: store_href(f"{group_name(self.name)}/{a}", anywhere) for a in self.definitions}
        self.label_fields = {label: self._label_fields(label) for label in self.labels}

    def _label_fields(self, label: str) -> dict[str, Any]:
        """The label extension's fields of the label items of array ``label``."""
        legend, kind = catalog.ARRAY_LEGENDS[label], array_kind(label)
        classes = ", ".join(f"{c.value} {c.name}" for c in legend)
        return {"label:type": "raster", "label:properties": None, "label:tasks": ["segmentation"],
                "label:classes": [{"name": None, "classes": [c.value for c in legend]}],
                "label:methods": label_methods(label, self.source, self.name),
                "label:description": f"{kind.description}. Classes: {classes}; {kind.nodata} = no label."}

    @property
    def item_count(self) -> int:
        return self.split.layout.samples * (1 + len(self.labels))

    def _licence(self, arrays: list[str]) -> tuple[str, list[pystac.Link]]:
        """The ``license`` field and links of the data of ``arrays`` (the georeference's, without any)."""
        keys = {self.attrs["array_licences"][a] for a in arrays or ["transform"]}
        links, urls = [], set()
        for key in sorted(keys):
            licence = self.attrs["licences"][key]
            if licence["url"] not in urls:
                urls.add(licence["url"])
                links.append(pystac.Link("license", licence["url"], media_type="text/html", title=licence["name"]))
        return licence_field(keys), links

    def _item(self, item_id: str, index: int, geometry: dict[str, Any], bbox: list[float], grid: Grid,
              times: np.ndarray, arrays: list[str]) -> pystac.Item:
        licence, licence_links = self._licence(arrays)
        properties: dict[str, Any] = {
            "license": licence, "proj:code": grid.crs, "proj:shape": list(grid.shape),
            "proj:transform": list(grid.affine), "noldo:sample_index": index,
            "noldo:season_datetimes": [None if np.isnat(t) else datetime_to_str(_time(t)) for t in times],
            **({"ml-aoi:split": self.role} if self.role else {})}
        item = pystac.Item(item_id, geometry, bbox, properties=properties, collection=self.name,
                           **time_fields(times, self.unknown_time))
        item.add_links([pystac.Link(rel, href, media_type=pystac.MediaType.JSON) for rel, href in self.item_links])
        item.add_links(licence_links)
        for name in arrays:
            item.add_asset(name, self.definitions[name].create_asset(self.asset_hrefs[name]))
        return item

    def items(self, index: int, sample: str, grid: Grid, outline: shapely.Geometry,
              times: np.ndarray) -> list[pystac.Item]:
        """The source Item of a sample and its label Items."""
        outline = shapely.transform(outline, lambda xy: np.round(xy, DECIMALS))
        where = (json.loads(shapely.to_geojson(outline)), lonlat_bbox(outline), grid, times)
        source = self._item(sample, index, *where, self.sources)
        found = [source]
        for label, arrays in self.labels.items():
            item = self._item(f"{sample}-{label}", index, *where, arrays)
            item.properties |= self.label_fields[label]
            link = {"label:assets": self.sources} if self.sources else {}
            item.add_link(pystac.Link("source", relative(item_path(self.name, sample), item_path(self.name, item.id)),
                                      media_type=pystac.MediaType.GEOJSON, extra_fields=link))
            found.append(item)
        return found

    def item_dicts(self, batch: int = 16 * SHARD_SAMPLES) -> Iterator[dict[str, Any]]:
        """Every Item of the split as JSON, sample by sample, reading the store a batch of samples at a time."""
        frame = self.split.index()
        times = acquisition_times(frame, self.split.layout.seasons)
        ids = frame["sample"].tolist()
        if unsafe := next((i for i in ids if not _SAFE_ID.match(i)), None):  # before the first file is written
            raise NoldoError(f"sample id {unsafe!r} of split {self.name} cannot name a STAC item file "
                             "(use letters, digits, '.', '_' and '-')")
        for start in range(0, len(ids), batch):
            grids = self.split.grids(start, min(start + batch, len(ids)))
            for offset, (grid, outline) in enumerate(zip(grids, footprints(grids), strict=True)):
                i = start + offset
                for item in self.items(i, ids[i], grid, outline, times[i]):
                    yield stac_dict(item)

    def collection(self, extents: Extents) -> dict[str, Any]:
        """The split's Collection as JSON, linking every Item gathered in ``extents``."""
        layout, attrs, path = self.split.layout, self.attrs, collection_path(self.name)
        licence, licence_links = self._licence(list(attrs["array_licences"]))
        start, end = extents.times
        simulated = self.source == "synthetic"  # noldo made the data: nobody else produced it
        providers = [pystac.Provider(name, roles=roles, url=url) for name, roles, url in
                     (PROVIDERS[key] for key in sorted(attrs["licences"]) if key in PROVIDERS and not simulated)]
        providers.append(pystac.Provider("noldo", f"noldo {__version__} (source: {self.source})",
                                         ["producer", "processor"] if simulated else ["processor"]))
        summaries: dict[str, Any] = {"proj:code": sorted(extents.codes)}
        if self.role:
            summaries["ml-aoi:split"] = [self.role]
        if self.labels:
            summaries |= {"label:type": ["raster"], "label:tasks": ["segmentation"],
                          "label:methods": sorted(extents.methods)}
        bands = [band for a in self.sources for band in self.definitions[a].properties.get("bands", [])]
        if bands:
            summaries["bands"] = bands
        collection = pystac.Collection(
            self.name, f"{attrs['description']}: {layout.samples} samples, {layout.seasons} season(s), "
                       f"{layout.height}×{layout.width} pixels of 10 m; a source item per sample and a label item "
                       "per label array (docs/stac.md of noldo).",
            pystac.Extent(pystac.SpatialExtent([extents.bbox]), pystac.TemporalExtent([[start, end]])),
            title=attrs.get("title"), license=licence, providers=providers,
            keywords=["Sentinel-1", "Sentinel-2", "land cover", "noisy labels", "semantic segmentation"],
            summaries=pystac.Summaries(summaries),
            extra_fields={"noldo:legends": {a: [{"value": c.value, "name": c.name, "color_hint": c.colour[1:]}
                                                 for c in catalog.ARRAY_LEGENDS[a]] for a in self.labels}})
        collection.clear_links()
        collection.item_assets = dict(self.definitions)
        group = self.store_href(group_name(self.name), path)
        collection.add_asset("zarr", pystac.Asset(group, f"{self.name}.zarr", "the split's Zarr v3 group", ZARR,
                                                  ["data"]))
        collection.add_asset("index", pystac.Asset(self.store_href(index_name(self.name), path), "sample index",
                                                   "GeoParquet 1.1, row i = sample i", PARQUET, ["metadata"]))
        collection.add_asset("geoparquet-items", pystac.Asset(
            relative(geoparquet_path(self.name), path), "stac-geoparquet", "every item of this collection",
            PARQUET, ["collection-mirror"]))
        for rel, target in (("root", CATALOG), ("parent", CATALOG)):
            collection.add_link(pystac.Link(rel, relative(target, path), media_type=pystac.MediaType.JSON))
        collection.add_link(pystac.Link("store", group, media_type=ZARR, title=f"{self.name}.zarr"))
        collection.add_links([*licence_links, *cite_as()])
        d = stac_dict(collection)
        d["links"] += [{"rel": "item", "href": relative(item_path(self.name, i), path),
                        "type": pystac.MediaType.GEOJSON} for i in extents.items]
        return d


def cite_as() -> list[pystac.Link]:
    """``cite-as`` links to the publications to cite (:data:`noldo.catalog.REFERENCES`)."""
    return [pystac.Link("cite-as", f"https://doi.org/{r.doi}" if r.doi else f"https://arxiv.org/abs/{r.arxiv}",
                        title=r.title) for r in REFERENCES if r.doi or r.arxiv]


def root_catalog(titles: Mapping[str, str | None]) -> dict[str, Any]:
    """The root Catalog as JSON, linking the split collections (split name → collection title)."""
    root = pystac.Catalog(CATALOG_ID, "NoLDO-S12: Sentinel-1/2 samples with noisy Dynamic World labels for "
                                      "pretraining, and the downstream splits (docs/stac.md of noldo)", "NoLDO-S12")
    root.clear_links()
    root.add_link(pystac.Link("root", f"./{CATALOG}", media_type=pystac.MediaType.JSON))
    for name, title in titles.items():
        root.add_link(pystac.Link("child", relative(collection_path(name), CATALOG),
                                  media_type=pystac.MediaType.JSON, title=title))
    root.add_links(cite_as())
    return stac_dict(root)
