"""The scene catalogue behind the loopback Earth Engine: footprints, band types, pixel values, listing filters.

Scenes are made so that what can hurt a client happens deterministically:

* every image has a footprint polygon (lon/lat), served as the listing's ``geometry`` and masking
  the pixels outside it;
* a share of the Sentinel-2 granules are swath-edge granules that image only the part of the area
  west of a slanted line through the middle of the bbox (every ``partial_every``-th acquisition of
  the series in the catalogue's own UTM zone); their Dynamic World and Cloud Score+ twins share the
  footprint, so samples near that line are partly unimaged;
* Sentinel-1 passes are cut into 2–3 consecutive slices of 25 s (``startTime < endTime``) that tile
  the area along latitude, so samples on a slice boundary are whole only in the mosaic of the pass;
* bands carry the pixel types of the real collections (S2 uint16, DW ``label`` uint8 and float
  probabilities, S1 double σ⁰, Cloud Score+ float).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon, box, shape

S2 = "COPERNICUS/S2_HARMONIZED"
DW = "GOOGLE/DYNAMICWORLD/V1"
S1 = "COPERNICUS/S1_GRD"
CS = "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"

S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12", "QA10", "QA20",
            "QA60")
DW_CLASSES = ("water", "trees", "grass", "flooded_vegetation", "crops", "shrub_and_scrub", "built", "bare",
              "snow_and_ice")
#: Pixel types (little-endian numpy dtypes) as the catalogue's band listings declare them. S2_HARMONIZED
#: bands are UINT16; Dynamic World ``label`` is an integer 0–8 (modelled as uint8) and its class
#: probabilities floats; S1_GRD VV/VH/HH/HV are doubles, ``angle`` a float; Cloud Score+ ``cs`` and
#: ``cs_cdf`` floats in 0–1 (the catalogue pages of the four collections).
BAND_TYPES = {S2: {b: "<u2" for b in S2_BANDS},
              DW: {"label": "u1", **{c: "<f4" for c in DW_CLASSES}},
              S1: {"VV": "<f8", "VH": "<f8", "HH": "<f8", "HV": "<f8", "angle": "<f4"},
              CS: {"cs": "<f4", "cs_cdf": "<f4"}}
SLICE_SECONDS = 25  # a GRD slice is about 25 s of a datatake
S1A_FIRST_ORBIT = datetime(2014, 4, 3, tzinfo=UTC)  # Sentinel-1A's launch; its repeat cycle is 12 days


def _hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "little")


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def collection_of(image_id: str) -> str:
    """The collection an image id belongs to (its id without the last path element)."""
    return image_id.rsplit("/", 1)[0]


@dataclass(eq=False)
class Image:
    """A catalogue image: id, start time, native CRS, footprint (lon/lat), properties, bands and their types.

    ``end`` is the end of the acquisition (``endTime``; the start when not given); ``dtypes`` the
    bands' pixel types (from :data:`BAND_TYPES` when not given).
    """

    id: str
    time: datetime
    epsg: int
    footprint: Any
    properties: dict[str, Any]
    bands: tuple[str, ...]
    end: datetime | None = None
    dtypes: tuple[str, ...] = ()
    _json: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.end = self.end or self.time
        if not self.dtypes:
            types = BAND_TYPES.get(collection_of(self.id), {})
            self.dtypes = tuple(types.get(b, "<f8") for b in self.bands)
        # footprints are not prepared: GEOS prepared geometries are not thread-safe (libgeos/geos#825), and
        # the server answers requests in threads; they are simple polygons anyway

    def dtype(self, band: str) -> np.dtype:
        return np.dtype(self.dtypes[self.bands.index(band)])

    def asset_json(self) -> str:
        """The listAssets entry (FULL view), serialised once."""
        if self._json is None:
            self._json = json.dumps(self.asset())
        return self._json

    def asset(self) -> dict[str, Any]:
        return {"type": "IMAGE", "name": f"projects/earthengine-public/assets/{self.id}", "id": self.id,
                "startTime": _stamp(self.time), "endTime": _stamp(self.end),
                "geometry": json.loads(json.dumps(self.footprint.__geo_interface__)),
                "properties": self.properties,
                "bands": [{"id": b, "dataType": data_type(np.dtype(t)), "grid": {"crsCode": f"EPSG:{self.epsg}"}}
                          for b, t in zip(self.bands, self.dtypes, strict=True)]}


def data_type(dtype: np.dtype) -> dict[str, Any]:
    """A band's ``dataType`` as the REST API lists it (PixelDataType: precision and integer range)."""
    if dtype.kind == "f":
        return {"precision": "FLOAT" if dtype.itemsize == 4 else "DOUBLE"}
    info = np.iinfo(dtype)
    return {"precision": "INT", "range": {"min": int(info.min), "max": int(info.max)} if info.min else
            {"max": int(info.max)}}


def pixels(image_id: str, band: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (values, valid mask) of a band at map coordinates; depends only on where a pixel is.

    This is the data inside the footprint; the footprint itself masks further (see ``Image.footprint``).
    """
    col, row = np.floor(x / 10).astype("int64"), np.floor(y / 10).astype("int64")
    h = _hash(image_id, band)
    collection = collection_of(image_id)
    if collection == DW:
        label = ((col // 7) + (row // 5) + _hash(image_id, "label")) % 9
        valid = (col + 2 * row) % 11 != 0  # cloud: about 9 % of the labels are masked
        if band == "label":
            return label.astype("float64"), valid
        k = DW_CLASSES.index(band)
        return np.where(label == k, 0.6, 0.05).astype("float32").astype("float64"), valid
    if collection == S1:
        if band == "angle":
            return (30 + (col % 1500) / 100).astype("float32").astype("float64"), np.ones(col.shape, bool)
        # the slices of a pass are one acquisition: their values depend on the datatake, not the slice
        if m := re.fullmatch(r"S1._IW_GRDH_1S[DS]V_\w{15}_\w{15}_(\d{6})_([0-9A-F]{6})_[0-9A-F]{4}",
                             image_id.rsplit("/", 1)[1]):
            h = _hash(S1, m[1], m[2], band)
        values = -25 + (h % 10) + (col % 13) / 2 + (row % 7) / 4
        return values, ~((col % 17 == 0) & (row % 3 == 0))
    if collection == CS:
        values = ((col * 3 + row * 5 + h) % 101) / 100
        return values.astype("float32").astype("float64"), np.ones(col.shape, bool)
    if band in ("QA10", "QA20"):
        return np.zeros(col.shape), np.ones(col.shape, bool)
    if band == "QA60":
        return np.where((col // 20 + row // 20 + h) % 9 == 0, 1024.0, 0.0), np.ones(col.shape, bool)
    values = 1000 + h % 500 + col % 50 + 2 * (row % 40)
    return values.astype("float64"), np.ones(values.shape, bool)


class Catalogue:
    """Scenes over a bbox for a time span: S2 granules in two neighbouring UTM zones with their Dynamic
    World and Cloud Score+ twins, and S1 GRD passes cut into slices.

    ``partial_every``: every n-th acquisition of the S2 series in the own zone (``epsg``) is a
    swath-edge granule imaging only the part of the area west of a slanted line through the middle of
    the bbox (0: every granule covers the whole area). ``slices_per_pass``: the number of slices of
    each S1 pass, cycled (1: one slice covering the whole area).
    """

    def __init__(self, bbox: tuple[float, float, float, float], start: str, end: str, epsg: int, *,
                 partial_every: int = 3, slices_per_pass: int | tuple[int, ...] = (2, 3)) -> None:
        west, south, east, north = bbox
        self.bbox, self.epsg = bbox, epsg
        self.area = box(west - 0.5, south - 0.5, east + 0.5, north + 0.5)
        self.swath_edge = self._swath_edge(bbox)
        t0, t1 = datetime.fromisoformat(start).replace(tzinfo=UTC), datetime.fromisoformat(end).replace(tzinfo=UTC)
        self.images: dict[str, list[Image]] = {S2: [], DW: [], CS: [], S1: []}
        self._sentinel2(t0, t1, epsg, partial_every)
        self._sentinel1(t0, t1, epsg, (slices_per_pass,) if isinstance(slices_per_pass, int) else slices_per_pass)
        for images in self.images.values():
            images.sort(key=lambda i: (i.time, i.id))
        self.by_id = {i.id: i for images in self.images.values() for i in images}

    def _swath_edge(self, bbox: tuple[float, float, float, float]) -> Polygon:
        """The part of the area west of a line through the bbox centre, slanted like an S2 swath edge."""
        west, south, east, north = bbox
        cx, cy = (west + east) / 2, (south + north) / 2
        slope = 0.25 * (east - west) / (north - south)  # lon per lat: the edge leans to the north-east
        a = self.area.bounds
        line_x = [cx + (lat - cy) * slope for lat in (a[1], a[3])]
        return self.area.intersection(Polygon([(a[0], a[1]), (line_x[0], a[1]), (line_x[1], a[3]), (a[0], a[3])]))

    def _sentinel2(self, t0: datetime, t1: datetime, epsg: int, partial_every: int) -> None:
        for zone_epsg, first_day in ((epsg, 0), (epsg + 1, 2)):
            day, n = t0 + timedelta(days=first_day, hours=10), 0
            while day < t1:
                tile = f"T{zone_epsg % 100}UPU"
                stamp = day.strftime("%Y%m%dT%H%M%S")
                index = f"{stamp}_{stamp}_{tile}"
                cloud = _hash(index) % 50
                partial = zone_epsg == epsg and partial_every and n % partial_every == 1
                footprint = self.swath_edge if partial else self.area
                props = {"CLOUDY_PIXEL_PERCENTAGE": cloud, "MGRS_TILE": tile[1:], "PROCESSING_BASELINE": "02.09",
                         "SPACECRAFT_NAME": "Sentinel-2A" if n % 2 else "Sentinel-2B"}
                self.images[S2].append(Image(f"{S2}/{index}", day, zone_epsg, footprint, props, S2_BANDS))
                self.images[CS].append(Image(f"{CS}/{index}", day, zone_epsg, footprint, {}, ("cs", "cs_cdf")))
                if cloud <= 35 and n % 7 != 3:  # Dynamic World exists for most scenes under 35 % cloud
                    self.images[DW].append(Image(f"{DW}/{index}", day, zone_epsg, footprint,
                                                 {"dynamicworld_algorithm_version": "4.0"},
                                                 (*DW_CLASSES, "label")))
                day, n = day + timedelta(days=5), n + 1

    def _sentinel1(self, t0: datetime, t1: datetime, epsg: int, slices: tuple[int, ...]) -> None:
        """IW GRD passes every 6 days, alternating descending (morning) and ascending (evening); each pass
        (datatake) is cut into consecutive 25 s slices that tile the area along latitude: slice 1 is the
        first imaged (southernmost when ascending)."""
        _, south, _, north = self.bbox
        a = self.area.bounds
        day, n = t0 + timedelta(days=1), 0
        while day < t1:
            total = slices[(n // 2) % len(slices)]  # ascending and descending passes of each length
            ascending = n % 2 == 1
            start = day + (timedelta(hours=17, minutes=5) if ascending else timedelta(hours=5, minutes=25))
            pols = ["VV", "VH"] if n % 4 else ["VV"]
            orbit = round((start - S1A_FIRST_ORBIT).total_seconds() / 86400 * 175 / 12)  # 175 orbits a cycle
            datatake = orbit * 9 % 0x1000000
            edges = [a[1], *(south + (north - south) * k / total for k in range(1, total)), a[3]]
            bands = [(edges[k], edges[k + 1]) for k in range(total)]
            if not ascending:
                bands.reverse()
            for k, (lat0, lat1) in enumerate(bands):
                s0 = start + timedelta(seconds=SLICE_SECONDS * k)
                s1 = s0 + timedelta(seconds=SLICE_SECONDS)
                index = (f"S1A_IW_GRDH_1S{'D' if len(pols) == 2 else 'S'}V_{s0:%Y%m%dT%H%M%S}_{s1:%Y%m%dT%H%M%S}_"
                         f"{orbit:06d}_{datatake:06X}_{_hash(orbit, k) % 0x10000:04X}")
                props = {"instrumentMode": "IW", "instrumentSwath": "IW", "productType": "GRD",
                         "resolution_meters": 10, "platform_number": "A", "transmitterReceiverPolarisation": pols,
                         "orbitProperties_pass": "ASCENDING" if ascending else "DESCENDING",
                         "orbitNumber_start": orbit, "orbitNumber_stop": orbit,
                         "relativeOrbitNumber_start": (orbit - 73) % 175 + 1,
                         "relativeOrbitNumber_stop": (orbit - 73) % 175 + 1,
                         "missionDataTakeID": datatake, "sliceNumber": k + 1, "totalSlices": total}
                footprint = box(a[0], lat0, a[2], lat1)
                self.images[S1].append(Image(f"{S1}/{index}", s0, epsg, footprint, props, (*pols, "angle"), s1))
            day, n = day + timedelta(days=6), n + 1

    def imaged(self, image_id: str, x: np.ndarray, y: np.ndarray, epsg: int) -> np.ndarray:
        """Which map coordinates (in EPSG ``epsg``) lie inside an image's footprint: where the image has
        pixels at all (its data may still mask some, see :func:`pixels`)."""
        from pyproj import Transformer

        lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)
        return shapely.contains_xy(self.by_id[image_id].footprint, lon, lat)

    def query(self, collection: str, query: str) -> list[Image]:
        """The images of a collection matching an AIP-160 filter as listImages builds it."""
        terms = sorted((_parse_term(t) for t in _split_and(query)), key=lambda term: term[0] == "intersects")
        return [i for i in self.images.get(collection, []) if all(_matches(i, term) for term in terms)]


def _split_and(query: str) -> list[str]:
    """Split a filter on the ANDs outside double-quoted strings."""
    parts, quoted, start, i = [], False, 0, 0
    while i < len(query):
        if query[i] == '"':
            quoted = not quoted
        elif not quoted and query.startswith(" AND ", i):
            parts.append(query[start:i])
            i = start = i + 5
            continue
        i += 1
    return [p.strip() for p in (*parts, query[start:]) if p.strip()]


def _parse_term(term: str) -> tuple:
    """A filter term, parsed once per query: ("intersects", geometry) or (name, operator, value)."""
    if m := re.fullmatch(r'intersects\("(.*)"\)', term):
        return ("intersects", shape(json.loads(m[1].replace("'", '"'))))
    m = re.fullmatch(r'(startTime|endTime|properties\.\w+)\s*(>=|<=|!=|=|<|>)\s*(.+)', term)
    if not m:
        raise ValueError(f"unsupported filter term {term!r}")
    name, op, raw = m.groups()
    value: Any = json.loads(raw) if raw.startswith('"') else float(raw)
    if name in ("startTime", "endTime"):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (name, op, value)


def _matches(image: Image, term: tuple) -> bool:
    if term[0] == "intersects":
        return image.footprint.intersects(term[1])
    name, op, value = term
    if name == "startTime":
        actual: Any = image.time
    elif name == "endTime":
        actual = image.end
    else:
        actual = image.properties.get(name.split(".", 1)[1])
    if actual is None:
        return False
    return {"=": actual == value, "!=": actual != value, "<": actual < value, "<=": actual <= value,
            ">": actual > value, ">=": actual >= value}[op]
