"""A loopback server that speaks the Earth Engine REST API the real ``earthengine-api`` client uses.

It serves the discovery document and algorithm list shipped inside the earthengine-api package, an
OAuth token endpoint for service-account keys, ``listAssets`` from a scene catalogue
(:mod:`noldo.testing.ee_catalogue`: footprints, partial scenes, S1 slices; the AIP-160 filters
listImages sends; paginated) and ``computePixels`` by evaluating the expression graph with Earth
Engine's masks, footprints and pixel types on a deterministic pixel function. It models what the
real service does that can hurt a client:

* pixels outside an image's footprint are masked, and masked pixels are served as 0 ("Masked or
  missing data will be encoded as zeroes", computePixels/getPixels reference);
* ``unmask(value, sameFootprint)``: sameFootprint defaults to true, "the output retains the
  footprint of the input image"; with false "the footprint of the output is the union of the input
  footprint with the footprint of the value image" (ee.Image.unmask reference) — a constant has no
  footprint bound, so every pixel is filled;
* every band has its own pixel type, promoted as Earth Engine does (:func:`union`), and the NPY
  answer is a structured array, one little-endian field per band, no mask field (ee/image_converter.py
  decodes it with ``numpy.load``);
* the request-size limit counts one mask byte per pixel and band (google/Xee#209, #210);
* listings are paginated (``pageSize``, ``pageToken``, ``nextPageToken``; "The server may return
  fewer assets than requested"; at most 1000 assets a FULL page, 10000 a BASIC one, and BASIC
  assets carry only type, name and id: EarthEngineAssetView reference);
* faults at a given rate, deterministic for a seed (see :class:`Faults`), and optional concurrency
  and rate quotas; the requests in flight and per second are recorded.

    with FakeEarthEngine(Catalogue(bbox, "2019-11-01", "2021-11-01", 32632)) as fake:
        key = fake.service_account_key(folder)  # then NOLDO_EE_URL=fake.url, NOLDO_EE_SERVICE_ACCOUNT_KEY=key
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import re
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any, NamedTuple

import ee
import numpy as np
import shapely
from affine import Affine
from shapely.geometry import box

from noldo.testing.ee_catalogue import Catalogue, Image, pixels
from noldo.testing.loopback import LoopbackServer, QuietHandler

__all__ = ["Catalogue", "FakeEarthEngine", "Faults", "Image", "evaluate", "pixels", "render", "union"]

EE_TESTS = Path(ee.__file__).parent / "tests"
MAX_BYTES = 48 * 2**20  # 50331648: computePixels' "48MB in uncompressed data per request"
MAX_SIDE, MAX_BANDS = 32768, 1024  # "at most 32K pixels in either dimension and at most 1024 bands"
PAGE_SIZE = 1000  # the most assets a FULL listAssets page holds (10 times more for BASIC)
RATE_LIMITED = "Too Many Requests: Request was rejected because the request rate or concurrency limit was exceeded."


def discovery_document() -> str:
    """The bundled discovery document as v1, with the listAssets filter/view parameters of the real API."""
    doc = json.loads((EE_TESTS / "cloud_api_discovery_document.json").read_text().replace("v1alpha", "v1"))
    params = doc["resources"]["projects"]["resources"]["assets"]["methods"]["listAssets"]["parameters"]
    params["filter"] = {"type": "string", "location": "query"}
    params["view"] = {"type": "string", "location": "query"}
    return json.dumps(doc)


# -- pixel types ---------------------------------------------------------------------------------------

F32, F64 = np.dtype("<f4"), np.dtype("<f8")
INTEGER_TYPES = tuple(np.dtype(t) for t in ("u1", "i1", "<u2", "<i2", "<u4", "<i4", "<i8"))  # smallest first
CASTS = {"toUint8": "u1", "toByte": "u1", "toInt8": "i1", "toUint16": "<u2", "toInt16": "<i2", "toShort": "<i2",
         "toUint32": "<u4", "toInt32": "<i4", "toInt": "<i4", "toInt64": "<i8", "toLong": "<i8", "toFloat": "<f4",
         "toDouble": "<f8"}


def integer_type(lo: int, hi: int) -> np.dtype:
    """The smallest integer type holding [lo, hi] (float64 beyond int64)."""
    for t in INTEGER_TYPES:
        info = np.iinfo(t)
        if info.min <= lo and hi <= info.max:
            return t
    return F64


def constant_type(value: float) -> np.dtype:
    """A constant's type: an integral value is the smallest integer type holding it (255 → uint8,
    -9999 → int16, 0 → uint8), any other value a double."""
    value = float(value)
    return integer_type(int(value), int(value)) if value.is_integer() else F64


def union(a: np.dtype, b: np.dtype) -> np.dtype:
    """Earth Engine's union of two pixel types ("The type of the output pixels is the union of the input
    types", ee.Image.add): any double gives a double; a float with an integer type a float if the
    integers fit exactly in its 24-bit mantissa, else a double; two integer types the smallest integer
    type holding both ranges (uint16 ∪ int16 → int32)."""
    if F64 in (a, b):
        return F64
    if a.kind == "f" or b.kind == "f":
        other = b if a.kind == "f" else a
        if other.kind == "f":
            return F32
        info = np.iinfo(other)
        return F32 if info.min >= -(2**24) and info.max <= 2**24 else F64
    ia, ib = np.iinfo(a), np.iinfo(b)
    return integer_type(min(ia.min, ib.min), max(ia.max, ib.max))


def coerce(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Values (float64) as ``dtype`` holds them: rounded to float32, or truncated and clamped to the
    integer range (Earth Engine's casts saturate)."""
    if dtype.kind == "f":
        return values if dtype == F64 else values.astype(F32).astype(F64)
    info = np.iinfo(dtype)
    return np.clip(np.trunc(values), info.min, info.max)


# -- pixel grids and bands -----------------------------------------------------------------------------

_transformers = threading.local()  # pyproj transformers are not shared between threads


class Layer(NamedTuple):
    """A band computed on a grid: values (float64), mask (valid and inside the footprint), footprint."""

    values: np.ndarray
    mask: np.ndarray
    footprint: np.ndarray


class PixelGrid:
    """The grid of a computePixels request: pixel centres in map and (lazily) lon/lat coordinates, and a
    cache of what has been computed on it."""

    def __init__(self, grid: dict[str, Any]) -> None:
        self.width, self.height = int(grid["dimensions"]["width"]), int(grid["dimensions"]["height"])
        code = grid.get("crsCode", "")
        if not re.fullmatch(r"EPSG:\d+", code):
            raise EvalError(f"the fake server needs grid.crsCode as EPSG:<code>, got {code!r}")
        self.epsg = int(code.split(":")[1])
        t = grid["affineTransform"]
        transform = Affine(t.get("scaleX", 1), t.get("shearX", 0), t.get("translateX", 0), t.get("shearY", 0),
                           t.get("scaleY", 1), t.get("translateY", 0))
        cols, rows = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        self.x, self.y = transform @ (cols, rows)
        self.shape = (self.height, self.width)
        self._lonlat: tuple[np.ndarray, np.ndarray] | None = None
        self._cache: dict[Any, Any] = {}

    def lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        if self._lonlat is None:
            from pyproj import Transformer

            cache = _transformers.__dict__.setdefault("by_epsg", {})
            if self.epsg not in cache:
                cache[self.epsg] = Transformer.from_crs(self.epsg, 4326, always_xy=True)
            self._lonlat = cache[self.epsg].transform(self.x, self.y)
        return self._lonlat

    def inside(self, footprint: Any) -> np.ndarray:
        """Which pixel centres lie inside a lon/lat polygon (vectorised; whole-grid shortcuts)."""
        key = ("inside", id(footprint))
        if key not in self._cache:
            lon, lat = self.lonlat()
            bounds = box(lon.min(), lat.min(), lon.max(), lat.max())
            if footprint.contains(bounds):
                self._cache[key] = np.ones(self.shape, bool)
            elif not footprint.intersects(bounds):
                self._cache[key] = np.zeros(self.shape, bool)
            else:
                self._cache[key] = shapely.contains_xy(footprint, lon, lat)
        return self._cache[key]

    def layer(self, band: Band) -> Layer:
        if band.compute not in self._cache:
            self._cache[band.compute] = band.compute(self)
        return self._cache[band.compute]


@dataclass(frozen=True, eq=False)
class Band:
    """A band of an evaluated expression: its name, pixel type and how to compute it on a grid."""

    name: str
    dtype: np.dtype
    compute: Callable[[PixelGrid], Layer]

    def renamed(self, name: str) -> Band:
        return Band(name, self.dtype, self.compute)


class EvalError(ValueError):
    """An expression the server refuses (answered 400 INVALID_ARGUMENT with this message)."""


# -- the expression language ---------------------------------------------------------------------------

def evaluate(node: dict[str, Any], values: dict[str, Any], catalogue: Catalogue,
             memo: dict[str, Any] | None = None) -> Any:
    """Evaluate an expression graph (``{"result": ..., "values": ...}`` nodes) to Python values, lists of
    bands (images) and lists of images (collections). Implements Image.load, select, resample, unmask,
    the casts, rename, addBands (``ee.Image.cat``), constant, add, subtract, multiply, round, and
    ImageCollection.fromImages (``ee.ImageCollection([...])``) and mosaic."""
    memo = {} if memo is None else memo
    if "valueReference" in node:
        ref = node["valueReference"]
        if ref not in memo:
            memo[ref] = evaluate(values[ref], values, catalogue, memo)
        return memo[ref]
    if "constantValue" in node:
        return node["constantValue"]
    if "arrayValue" in node:
        return [evaluate(v, values, catalogue, memo) for v in node["arrayValue"].get("values", [])]
    if "dictionaryValue" in node:
        return {k: evaluate(v, values, catalogue, memo) for k, v in node["dictionaryValue"].get("values", {}).items()}
    call = node.get("functionInvocationValue")
    if not call or "functionName" not in call:
        raise EvalError(f"the fake server does not evaluate {sorted(node)}")
    args = {k: evaluate(v, values, catalogue, memo) for k, v in call.get("arguments", {}).items()}
    name = call["functionName"]
    if name == "Image.load":
        return _load(catalogue, args["id"])
    if name.startswith("Image.") and name[6:] in CASTS:
        dtype = np.dtype(CASTS[name[6:]])
        return [Band(b.name, dtype, _mapped(b, lambda v, dt=dtype: coerce(v, dt))) for b in args["value"]]
    handler = FUNCTIONS.get(name)
    if handler is None:
        raise EvalError(f"the fake server does not implement {name}")
    try:
        return handler(**args)
    except TypeError as exc:
        raise EvalError(f"{name}: bad arguments {sorted(args)} ({exc})") from None


def _load(catalogue: Catalogue, image_id: str) -> list[Band]:
    image = catalogue.by_id.get(image_id)
    if image is None:
        raise EvalError(f"Image.load: Image asset '{image_id}' not found.")

    def band(name: str) -> Band:
        def compute(grid: PixelGrid) -> Layer:
            values, valid = pixels(image.id, name, grid.x, grid.y)
            inside = grid.inside(image.footprint)
            return Layer(coerce(values, image.dtype(name)), valid & inside, inside)
        return Band(name, image.dtype(name), compute)

    return [band(b) for b in image.bands]


def _mapped(band: Band, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[PixelGrid], Layer]:
    """A compute function applying ``fn`` to a band's values, its mask and footprint kept."""
    def compute(grid: PixelGrid) -> Layer:
        layer = grid.layer(band)
        return Layer(fn(layer.values), layer.mask, layer.footprint)
    return compute


def _constant(value: Any) -> list[Band]:
    """``Image.constant``: one band per value (``constant``, or ``constant_0``…), unbounded footprint."""
    items = value if isinstance(value, list) else [value]
    names = ["constant"] if not isinstance(value, list) else [f"constant_{i}" for i in range(len(items))]

    def band(name: str, v: float) -> Band:
        def compute(grid: PixelGrid) -> Layer:
            return Layer(np.full(grid.shape, float(v)), np.ones(grid.shape, bool), np.ones(grid.shape, bool))
        return Band(name, constant_type(v), compute)

    return [band(n, v) for n, v in zip(names, items, strict=True)]


def _pairs(function: str, a: list[Band], b: list[Band]) -> list[tuple[Band, Band, str]]:
    """Bands paired as Earth Engine pairs two images: a one-band image against every band of the other,
    else pairwise in order; the output names are those of the longer input (image1's if equal)."""
    if len(b) == 1 and len(a) >= 1:
        return [(x, b[0], x.name) for x in a]
    if len(a) == 1:
        return [(a[0], y, y.name) for y in b]
    if len(a) != len(b):
        raise EvalError(f"{function}: Images must contain the same number of bands or only 1 band. "
                        f"Got {len(a)} and {len(b)}.")
    return [(x, y, x.name) for x, y in zip(a, b, strict=True)]


def _select(input: list[Band], bandSelectors: list[Any], newNames: list[str] | None = None) -> list[Band]:
    """Band names (regular expressions, matched whole) or indices, in selector order."""
    out: list[Band] = []
    for selector in bandSelectors:
        if isinstance(selector, int):
            if not 0 <= selector < len(input):
                raise EvalError(f"Image.select: Band index {selector} out of bounds.")
            out.append(input[selector])
            continue
        matched = [b for b in input if re.fullmatch(selector, b.name)]
        if not matched:
            raise EvalError(f"Image.select: Pattern '{selector}' did not match any bands.")
        out.extend(matched)
    if newNames is not None:
        out = _rename(out, newNames)
    return out


def _rename(input: list[Band], names: list[str] | str) -> list[Band]:
    names = [names] if isinstance(names, str) else names
    if len(names) != len(input):
        raise EvalError(f"Image.rename: The number of names ({len(names)}) must match the number of bands "
                        f"({len(input)}).")
    return [b.renamed(n) for b, n in zip(input, names, strict=True)]


def _unique(name: str, taken: set[str]) -> str:
    """'foo', else 'foo_1' unless it exists, then 'foo_2'… (ee.Image.addBands without overwrite)."""
    if name not in taken:
        return name
    k = 1
    while f"{name}_{k}" in taken:
        k += 1
    return f"{name}_{k}"


def _add_bands(dstImg: list[Band], srcImg: list[Band], names: list[str] | None = None,
               overwrite: bool = False) -> list[Band]:
    """Each band keeps its own type; a clashing name replaces (overwrite) or gets a numerical suffix."""
    src = srcImg if names is None else _select(srcImg, names)
    out = list(dstImg)
    for b in src:
        if overwrite and any(d.name == b.name for d in out):
            out = [b if d.name == b.name else d for d in out]
        else:
            out.append(b.renamed(_unique(b.name, {d.name for d in out})))
    return out


def _unmask(input: list[Band], value: list[Band] | None = None, sameFootprint: bool | None = None) -> list[Band]:
    """Masked pixels take the value image's value and mask; with sameFootprint (the default when absent)
    the output keeps the input's footprint, without it the footprint is the union with the value's."""
    same = True if sameFootprint is None else bool(sameFootprint)
    value = _constant(0) if value is None else value

    def band(b: Band, v: Band, name: str) -> Band:
        dtype = union(b.dtype, v.dtype)

        def compute(grid: PixelGrid) -> Layer:
            layer, fill = grid.layer(b), grid.layer(v)
            values = np.where(layer.mask, layer.values, fill.values)
            if same:
                return Layer(coerce(values, dtype), (layer.mask | fill.mask) & layer.footprint, layer.footprint)
            return Layer(coerce(values, dtype), layer.mask | fill.mask, layer.footprint | fill.footprint)
        return Band(name, dtype, compute)

    return [band(b, v, name) for b, v, name in _pairs("Image.unmask", input, value)]


def _binary(function: str, op: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., list[Band]]:
    """Image.add/subtract/multiply: pixel by pixel, the union type, masked where either input is."""
    def apply(image1: list[Band], image2: list[Band]) -> list[Band]:
        def band(a: Band, b: Band, name: str) -> Band:
            dtype = union(a.dtype, b.dtype)

            def compute(grid: PixelGrid) -> Layer:
                la, lb = grid.layer(a), grid.layer(b)
                return Layer(coerce(op(la.values, lb.values), dtype), la.mask & lb.mask, la.footprint & lb.footprint)
            return Band(name, dtype, compute)
        return [band(a, b, name) for a, b, name in _pairs(function, image1, image2)]
    return apply


def _round(value: list[Band]) -> list[Band]:
    """The nearest integer (halves away from zero), in the input's type."""
    return [Band(b.name, b.dtype, _mapped(b, lambda v, dt=b.dtype: coerce(np.sign(v) * np.floor(np.abs(v) + 0.5),
                                                                           dt)))
            for b in value]


def _mosaic(collection: list[list[Band]]) -> list[Band]:
    """Later images on top wherever they are unmasked; a band's type is the union over the images, its
    footprint the union of theirs. Bands are matched by name (the union of the images' bands)."""
    names: list[str] = []
    for image in collection:
        names += [b.name for b in image if b.name not in names]

    def band(name: str) -> Band:
        layers = [b for image in collection for b in image if b.name == name]
        dtype = reduce(union, (b.dtype for b in layers))

        def compute(grid: PixelGrid) -> Layer:
            first = grid.layer(layers[0])
            values, mask, footprint = first.values, first.mask, first.footprint
            for b in layers[1:]:
                layer = grid.layer(b)
                values = np.where(layer.mask, layer.values, values)
                mask, footprint = mask | layer.mask, footprint | layer.footprint
            return Layer(coerce(values, dtype), mask, footprint)
        return Band(name, dtype, compute)

    return [band(n) for n in names]


def _resample(image: list[Band], mode: str = "bilinear") -> list[Band]:
    if mode not in ("bilinear", "bicubic"):
        raise EvalError(f"Image.resample: Unknown resampling mode '{mode}'.")
    return image  # the pixel function is sampled at the request grid's pixel centres


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "Image.constant": _constant,
    "Image.select": _select,
    "Image.resample": _resample,
    "Image.unmask": _unmask,
    "Image.rename": _rename,
    "Image.addBands": _add_bands,
    "Image.add": _binary("Image.add", np.add),
    "Image.subtract": _binary("Image.subtract", np.subtract),
    "Image.multiply": _binary("Image.multiply", np.multiply),
    "Image.round": _round,
    "ImageCollection.fromImages": lambda images: list(images),
    "ImageCollection.mosaic": _mosaic,
}


def render(bands: list[Band], grid: dict[str, Any] | PixelGrid) -> np.ndarray:
    """The NPY structured array computePixels returns for ``bands`` on ``grid``: one field per band in its
    own little-endian type, masked pixels 0."""
    grid = grid if isinstance(grid, PixelGrid) else PixelGrid(grid)
    out = np.zeros(grid.shape, dtype=[(b.name, b.dtype) for b in bands])
    for b in bands:
        layer = grid.layer(b)
        out[b.name] = np.where(layer.mask, layer.values, 0)
    return out


# -- faults --------------------------------------------------------------------------------------------

#: Error answers: kind → (HTTP status, status string, message). The messages are Earth Engine's.
ERRORS = {"429": (429, "RESOURCE_EXHAUSTED", "Too many concurrent aggregations."),
          "429-rate": (429, "RESOURCE_EXHAUSTED", RATE_LIMITED),
          "500": (500, "INTERNAL", "An internal error has occurred."),
          "503": (503, "UNAVAILABLE", "The service is currently unavailable."),
          "400-timeout": (400, "INVALID_ARGUMENT", "Computation timed out."),
          "400-memory": (400, "INVALID_ARGUMENT", "User memory limit exceeded.")}
PIXEL_ONLY = {"shape", "dtype", "byteorder", "400-memory"}  # faults of computePixels answers only


@dataclass
class Faults:
    """Which failures to inject, how often; deterministic for a seed.

    Kinds: "429" (429 Too many concurrent aggregations.), "429-rate" (429 Too Many Requests: …rate or
    concurrency limit…), "500" (500 internal error), "503" (503 The service is currently unavailable.),
    "400-timeout" (400 Computation timed out.), "drop" (connection closed unanswered), "slow" (0.2 s
    late), "timeout" (stalls ``timeout`` seconds), "truncate" (half the body, full Content-Length), and
    for computePixels only: "shape" (a row short), "dtype" (every band float64), "byteorder" (the same
    values in a big-endian structured dtype, ``'>u2'``, ``'>f4'``: legal NPY), "400-memory" (400 User
    memory limit exceeded., only to requests of more than one band: one band at a time recovers). A
    drawn kind that does not apply to the request injects nothing.

    The server draws with a key naming the request (its body or URL) and how often it was seen, so the
    same requests get the same faults whatever order concurrent threads send them in.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "500", "drop", "slow")
    seed: int = 0
    timeout: float = 1.5  # how long a "timeout" fault stalls (longer than the client's deadline in tests)
    rng: random.Random = field(init=False)
    counts: Counter = field(default_factory=Counter)
    _seen: Counter = field(default_factory=Counter, init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        unknown = set(self.kinds) - {*ERRORS, "drop", "slow", "timeout", "truncate", "shape", "dtype", "byteorder"}
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")

    def draw(self, key: str | bytes | None = None) -> str | None:
        """A fault kind or None: from the seeded stream, or (with ``key``) from the seed, key and attempt."""
        if not self.kinds or self.rate <= 0:
            return None
        if key is None:
            return self.rng.choice(self.kinds) if self.rng.random() < self.rate else None
        digest = hashlib.sha256(key if isinstance(key, bytes) else key.encode()).hexdigest()
        self._seen[digest] += 1
        h = hashlib.sha256(f"{self.seed}/{digest}/{self._seen[digest]}".encode()).digest()
        if int.from_bytes(h[:4], "little") / 2**32 >= self.rate:
            return None
        return self.kinds[int.from_bytes(h[4:8], "little") % len(self.kinds)]


def field_mask(text: str) -> dict[str, Any]:
    """The tree of a partial-response ``fields`` selection (Google's system parameter), e.g.
    ``assets(id,bands/grid/crsCode),nextPageToken`` → {assets: {id: {}, bands: {grid: {crsCode: {}}}}, …}."""
    tree: dict[str, Any] = {}
    stack, path, name = [tree], [tree], ""

    def close_name() -> None:
        nonlocal name
        if name.strip():
            node = path[-1]
            for part in name.strip().split("/"):
                node = node.setdefault(part, {})
            path[-1] = node
        name = ""

    for char in text + ",":
        if char == "(":
            close_name()
            stack.append(path[-1])
            path.append(path[-1])
        elif char == ")":
            close_name()
            if len(stack) == 1:
                raise EvalError(f"Invalid field selection {text}")
            stack.pop()
            path.pop()
            path[-1] = stack[-1]
        elif char == ",":
            close_name()
            path[-1] = stack[-1]
        else:
            name += char
    if len(stack) != 1:
        raise EvalError(f"Invalid field selection {text}")
    return tree


def check_selection(mask: dict[str, Any], known: dict[str, Any] | None = None) -> dict[str, Any]:
    """``mask`` if every name it selects is a field of the message; else the 400 of Google's front end."""
    known = LISTING_FIELDS if known is None else known
    for name, below in mask.items():
        if name not in known:
            raise EvalError(f"Invalid field selection {name}")
        if known[name] is not None:
            check_selection(below, known[name])
    return mask


def partial_response(value: Any, mask: dict[str, Any], known: dict[str, Any]) -> Any:
    """``value`` keeping only the fields of a checked ``mask`` (lists: each element); map and JSON fields
    (``properties``, ``geometry``) are kept whole."""
    if not mask:
        return value
    if isinstance(value, list):
        return [partial_response(v, mask, known) for v in value]
    return {name: value[name] if known[name] is None else partial_response(value[name], below, known[name])
            for name, below in mask.items() if name in value}


_BAND_FIELDS = {"id": {}, "dataType": {"precision": {}, "range": {"min": {}, "max": {}}},
                "grid": {"crsCode": {}, "dimensions": {}, "affineTransform": {}}, "pyramidingPolicy": {},
                "tilesets": {}, "missingData": {}}
_ASSET_FIELDS = {"type": {}, "name": {}, "id": {}, "updateTime": {}, "title": {}, "description": {},
                 "properties": None, "startTime": {}, "endTime": {}, "geometry": None, "bands": _BAND_FIELDS,
                 "sizeBytes": {}}
#: The fields of a ListAssetsResponse a selection may name (None: a map or JSON value, kept whole).
LISTING_FIELDS = {"assets": _ASSET_FIELDS, "nextPageToken": {}}


# -- the server ----------------------------------------------------------------------------------------

class FakeEarthEngine(LoopbackServer):
    """The server: ``with FakeEarthEngine(catalogue) as fake: ... fake.url ...``.

    ``max_bytes``: the computePixels size limit (pixels × Σ(bytes per pixel + 1 mask byte) per band);
    ``latency``: seconds before each API answer; ``page_size``: the most assets a listing page holds
    (FULL view; ten times more for BASIC); ``max_concurrent`` / ``max_per_second``: quotas of API
    requests in flight / started in a second, beyond which requests are answered 429 (None: no quota).

    Records ``requests`` (listImages pages and computePixels evaluated), ``log``, ``max_in_flight`` (the
    most listAssets + computePixels requests in flight at once) and ``per_second`` (requests started in
    each whole second, keyed by ``int(time.time())``).

    Requests wait (``latency``, faults) side by side, but compute their answers one at a time: numpy
    gives the GIL away and takes it back around every operation on a grid, and forty threads doing that
    at once cost the server several times the CPU (25 instead of 8 ms per request in
    ``benchmark/perf/ee_build.py`` at concurrency 40), which would cap the benchmark well below the client.
    """

    def __init__(self, catalogue: Catalogue, faults: Faults | None = None, max_bytes: int = MAX_BYTES,
                 latency: float = 0.0, *, page_size: int = PAGE_SIZE, max_concurrent: int | None = None,
                 max_per_second: int | None = None) -> None:
        self.catalogue, self.faults, self.max_bytes, self.latency = catalogue, faults or Faults(), max_bytes, latency
        self.page_size, self.max_concurrent, self.max_per_second = page_size, max_concurrent, max_per_second
        self.requests: Counter = Counter()
        self.log: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.compute_lock = threading.Lock()  # one answer computed at a time (see above)
        self._selected: dict[tuple[str, str], str] = {}  # listing entries by image and field selection
        self.tokens: set[str] = set()
        self.in_flight = self.max_in_flight = 0
        self.per_second: Counter = Counter()
        self._discovery = discovery_document()
        self._algorithms = (EE_TESTS / "algorithms.json").read_text()
        super().__init__(self._handler())

    def service_account_key(self, directory: Path) -> Path:
        """A real service-account key file (fresh RSA key) whose ``token_uri`` is this server."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        path = Path(directory) / "key.json"
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "noldo-test", "private_key_id": "k1", "private_key": pem,
            "client_email": "builder@noldo-test.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": f"{self.url}/token"}))
        return path

    @contextmanager
    def _api_call(self) -> Iterator[bool]:
        """Record an API request in flight; yields whether it is over a quota."""
        second = int(time.time())
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.per_second[second] += 1
            over = ((self.max_concurrent is not None and self.in_flight > self.max_concurrent)
                    or (self.max_per_second is not None and self.per_second[second] > self.max_per_second))
        try:
            yield over
        finally:
            with self.lock:
                self.in_flight -= 1

    def _page_token(self, offset: int, parent: str, query: str, view: str) -> str:
        check = hashlib.sha256(f"{parent}\n{query}\n{view}".encode()).hexdigest()[:12]
        return base64.urlsafe_b64encode(f"{offset}:{check}".encode()).decode().rstrip("=")

    def _page_offset(self, token: str, parent: str, query: str, view: str) -> int:
        """The offset a page token continues from; EvalError if it was not made for this listing."""
        try:
            offset = int(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(":")[0])
        except (ValueError, UnicodeDecodeError):
            raise EvalError("Invalid page token.") from None
        if self._page_token(offset, parent, query, view) != token:
            raise EvalError("Invalid page token.")
        return offset

    def list_page(self, parent: str, params: dict[str, list[str]]) -> str:
        """One listAssets page: at most ``pageSize`` (and the server's page size) assets from ``pageToken``."""
        query, view = params.get("filter", [""])[0], params.get("view", ["FULL"])[0].upper()
        if parent not in self.catalogue.images:
            raise KeyError(parent)
        cap = self.page_size * (10 if view == "BASIC" else 1)
        asked = int(params.get("pageSize", ["0"])[0] or 0)
        size = min(asked, cap) if asked > 0 else cap
        token = params.get("pageToken", [""])[0]
        offset = self._page_offset(token, parent, query, view) if token else 0
        images = self.catalogue.query(parent, query)
        page = images[offset: offset + size]
        fields = params.get("fields", [""])[0]
        mask = check_selection(field_mask(fields)) if fields else {}
        assets = ([json.dumps({"type": "IMAGE", "name": f"projects/earthengine-public/assets/{i.id}", "id": i.id})
                   for i in page] if view == "BASIC" else [self._asset_json(i, mask.get("assets", {}), fields)
                                                          for i in page])
        answer = '{"assets": [' + ", ".join(assets) + "]" if "assets" in mask or not mask else "{"
        if offset + size < len(images) and ("nextPageToken" in mask or not mask):
            token = f'"nextPageToken": "{self._page_token(offset + size, parent, query, view)}"'
            answer += f", {token}" if answer != "{" else token
        return answer + "}"

    def _asset_json(self, image: Any, mask: dict[str, Any], fields: str) -> str:
        """An image's listing entry with a partial-response selection, serialised once per selection."""
        if not mask:
            return image.asset_json()
        key = (image.id, fields)
        if key not in self._selected:
            self._selected[key] = json.dumps(partial_response(image.asset(), mask, LISTING_FIELDS["assets"]))
        return self._selected[key]

    def compute(self, body: dict[str, Any]) -> list[Band]:
        """The bands a computePixels body asks for (``bandIds`` of the evaluated expression), checked
        against the request limits."""
        if body.get("fileFormat") != "NPY":
            raise EvalError(f"the fake server answers fileFormat NPY only, not {body.get('fileFormat')!r}")
        if not isinstance(body.get("grid"), dict):
            raise EvalError("the fake server needs a grid (native-projection answers are not faked)")
        expression = body["expression"]
        bands = evaluate({"valueReference": expression["result"]}, expression["values"], self.catalogue)
        if not isinstance(bands, list) or not all(isinstance(b, Band) for b in bands):
            raise EvalError("computePixels: the expression is not an image")
        if body.get("bandIds"):
            by_name = {b.name: b for b in bands}
            missing = [n for n in body["bandIds"] if n not in by_name]
            if missing:
                raise EvalError(f"Image.select: Pattern '{missing[0]}' did not match any bands.")
            bands = [by_name[n] for n in body["bandIds"]]
        if not bands:
            raise EvalError("Image has no bands.")
        if len({b.name for b in bands}) < len(bands):
            raise EvalError("computePixels: duplicate band names.")
        dims = body["grid"]["dimensions"]
        width, height = int(dims["width"]), int(dims["height"])
        # the size counts one mask byte per pixel and band (google/Xee#209/#210)
        size = width * height * sum(b.dtype.itemsize + 1 for b in bands)
        if size > self.max_bytes:
            raise EvalError(f"Total request size ({size} bytes) must be less than or equal to {self.max_bytes} "
                            "bytes.")
        if max(width, height) > MAX_SIDE:
            raise EvalError(f"Grid dimensions ({width}x{height}) must be less than or equal to {MAX_SIDE} pixels "
                            "on each side.")
        if len(bands) > MAX_BANDS:
            raise EvalError(f"Number of bands ({len(bands)}) must be less than or equal to {MAX_BANDS}.")
        return bands

    def _handler(self):
        fake = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"  # Google's front ends keep connections alive; clients reuse them

            def _error(self, code: int, status: str, message: str) -> None:
                self.send_body(code, json.dumps({"error": {"code": code, "message": message, "status": status}}))

            def _authorised(self) -> bool:
                header = self.headers.get("Authorization", "")
                if header.removeprefix("Bearer ") not in fake.tokens:
                    self._error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
                    return False
                return True

            def _draw(self, kind: str, key: str | bytes) -> str | None:
                """The fault drawn for this request (None for a kind that does not apply to it)."""
                if fake.latency:
                    time.sleep(fake.latency)
                with fake.lock:
                    fault = fake.faults.draw(key)
                return None if fault in PIXEL_ONLY and kind != "computePixels" else fault

            def _inject(self, fault: str | None) -> bool:
                """Inject a fault before answering; True if the request was answered (or dropped)."""
                if fault is None:
                    return False
                with fake.lock:
                    fake.faults.counts[fault] += 1
                if fault in ERRORS:
                    self._error(*ERRORS[fault])
                elif fault == "drop":
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(2)
                elif fault == "slow":
                    time.sleep(0.2)
                elif fault == "timeout":
                    time.sleep(fake.faults.timeout)
                return fault in ERRORS or fault == "drop"

            def _send_answer(self, body: bytes, ctype: str, fault: str | None) -> None:
                """Send an API answer, or its truncated version (headers promise the whole body)."""
                if fault != "truncate":
                    return self.send_body(200, body, ctype)
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return None

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == "/$discovery/rest":
                    return self.send_body(200, fake._discovery)
                if path.endswith("/algorithms"):
                    return self.send_body(200, fake._algorithms)
                if path.endswith(":listAssets"):
                    if not self._authorised():
                        return None
                    with fake._api_call() as over:
                        return self._list_assets(path, query, over)
                return self._error(404, "NOT_FOUND", f"not faked: GET {path}")

            def _list_assets(self, path: str, query: str, over: bool) -> None:
                if over:
                    return self._error(429, "RESOURCE_EXHAUSTED", RATE_LIMITED)
                fault = self._draw("listImages", self.path)
                if self._inject(fault):
                    return None
                params = urllib.parse.parse_qs(query)
                parent = urllib.parse.unquote(path.split("/assets/", 1)[1].removesuffix(":listAssets"))
                with fake.lock:
                    fake.requests["listImages"] += 1
                    fake.log.append(("listImages", parent, params.get("filter", [""])[0]))
                try:
                    with fake.compute_lock:
                        answer = fake.list_page(parent, params)
                except KeyError:
                    return self._error(404, "NOT_FOUND", f"Asset '{parent}' not found.")
                except ValueError as exc:
                    return self._error(400, "INVALID_ARGUMENT", str(exc))
                return self._send_answer(answer.encode(), "application/json", fault)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.partition("?")[0]
                if path == "/token":
                    return self._token(raw)
                if path.endswith("image:computePixels"):
                    if not self._authorised():
                        return None
                    with fake._api_call() as over:
                        return self._compute_pixels(raw, over)
                return self._error(404, "NOT_FOUND", f"not faked: POST {path}")

            def _token(self, raw: bytes) -> None:
                form = urllib.parse.parse_qs(raw.decode())
                payload = form["assertion"][0].split(".")[1]
                claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
                fake.log.append(("token", "/token", claims))
                if not claims.get("iss") or "earthengine" not in claims.get("scope", ""):
                    return self._error(400, "invalid_grant", "bad assertion")
                token = f"token-{os.urandom(4).hex()}"
                fake.tokens.add(token)
                return self.send_body(200, json.dumps({"access_token": token, "expires_in": 3600,
                                                       "token_type": "Bearer"}))

            def _compute_pixels(self, raw: bytes, over: bool) -> None:
                if over:
                    return self._error(429, "RESOURCE_EXHAUSTED", RATE_LIMITED)
                fault = self._draw("computePixels", raw)
                if fault not in PIXEL_ONLY and self._inject(fault):
                    return None
                with fake.compute_lock:
                    answer = self._pixels(raw, fault)
                if answer is not None:
                    self._send_answer(*answer)
                return None

            def _pixels(self, raw: bytes, fault: str | None) -> tuple[bytes, str, str | None] | None:
                """The NPY answer to a computePixels body (None when an error was answered instead)."""
                body = json.loads(raw)
                try:
                    bands, error = fake.compute(body), None
                except (EvalError, KeyError, TypeError) as exc:
                    bands, error = [], str(exc).strip("'\"")
                if fault == "400-memory" and len(bands) > 1:  # only a request of several bands runs out of memory
                    self._inject(fault)
                    return None
                if fault in PIXEL_ONLY and (fault == "400-memory" or error or (
                        fault == "byteorder" and all(b.dtype.itemsize == 1 for b in bands))):
                    fault = None  # does not apply: single bytes have no byte order
                with fake.lock:
                    fake.requests["computePixels"] += 1
                    fake.log.append(("computePixels", body.get("grid"), body))
                    if fault in PIXEL_ONLY:
                        fake.faults.counts[fault] += 1
                if error is not None:
                    return self._error(400, "INVALID_ARGUMENT", error)
                try:
                    answer = render(bands, body["grid"])
                except EvalError as exc:
                    return self._error(400, "INVALID_ARGUMENT", str(exc))
                if fault == "shape":
                    answer = answer[:-1]
                elif fault == "dtype":
                    answer = answer.astype([(b.name, "<f8") for b in bands])
                elif fault == "byteorder":
                    answer = answer.astype([(b.name, b.dtype.newbyteorder(">")) for b in bands])
                buffer = io.BytesIO()
                np.save(buffer, answer)
                return buffer.getvalue(), "application/octet-stream", fault

        return Handler
