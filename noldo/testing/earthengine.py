"""A loopback server that speaks the Earth Engine REST API the real ``earthengine-api`` client uses.

It serves the discovery document and algorithm list shipped inside the earthengine-api package, an
OAuth token endpoint for service-account keys, ``listAssets`` from a small scene catalogue (with the
AIP-160 filters listImages sends) and ``computePixels`` by evaluating the expression graph on a
deterministic pixel function. Faults (429, 500, dropped connections, slow answers, wrong shapes)
can be injected at a given rate.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ee
import numpy as np
from affine import Affine
from shapely.geometry import box, shape

from noldo.testing.loopback import LoopbackServer, QuietHandler

EE_TESTS = Path(ee.__file__).parent / "tests"
MAX_BYTES = 48 * 2**20


def discovery_document() -> str:
    """The bundled discovery document as v1, with the listAssets filter/view parameters of the real API."""
    doc = json.loads((EE_TESTS / "cloud_api_discovery_document.json").read_text().replace("v1alpha", "v1"))
    params = doc["resources"]["projects"]["resources"]["assets"]["methods"]["listAssets"]["parameters"]
    params["filter"] = {"type": "string", "location": "query"}
    params["view"] = {"type": "string", "location": "query"}
    return json.dumps(doc)


def _hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "little")


@dataclass
class Image:
    """A catalogue image: id, time, native CRS, footprint, properties and bands."""

    id: str
    time: datetime
    epsg: int
    footprint: Any
    properties: dict[str, Any]
    bands: tuple[str, ...]

    def asset_json(self) -> str:
        """The listAssets entry, serialised once."""
        if not hasattr(self, "_json"):
            self._json = json.dumps(self.asset())
        return self._json

    def asset(self) -> dict[str, Any]:
        return {"type": "IMAGE", "name": f"projects/earthengine-public/assets/{self.id}", "id": self.id,
                "startTime": self.time.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "endTime": self.time.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "geometry": json.loads(json.dumps(self.footprint.__geo_interface__)),
                "properties": self.properties,
                "bands": [{"id": b, "grid": {"crsCode": f"EPSG:{self.epsg}"}} for b in self.bands]}


def pixels(image_id: str, band: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (values, valid mask) of a band at map coordinates; depends only on where a pixel is."""
    col, row = np.floor(x / 10).astype("int64"), np.floor(y / 10).astype("int64")
    h = _hash(image_id, band)
    if image_id.startswith("GOOGLE/DYNAMICWORLD"):
        values = ((col // 7) + (row // 5) + h) % 9
        return values.astype("float64"), (col + 2 * row) % 11 != 0
    if image_id.startswith("COPERNICUS/S1"):
        values = -25 + (h % 10) + (col % 13) / 2 + (row % 7) / 4
        return values, ~((col % 17 == 0) & (row % 3 == 0))
    values = 1000 + h % 500 + col % 50 + 2 * (row % 40)
    return values.astype("float64"), np.ones(values.shape, bool)


class Catalogue:
    """Scenes over a bbox for a time span: two S2 granules in neighbouring UTM zones, DW, S1."""

    def __init__(self, bbox: tuple[float, float, float, float], start: str, end: str, epsg: int) -> None:
        west, south, east, north = bbox
        area = box(west - 0.5, south - 0.5, east + 0.5, north + 0.5)
        t0, t1 = datetime.fromisoformat(start).replace(tzinfo=UTC), datetime.fromisoformat(end).replace(tzinfo=UTC)
        self.images: dict[str, list[Image]] = {"COPERNICUS/S2_HARMONIZED": [], "GOOGLE/DYNAMICWORLD/V1": [],
                                               "COPERNICUS/S1_GRD": []}
        s2_bands = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
        for zone_epsg, first_day in ((epsg, 0), (epsg + 1, 2)):
            day, n = t0 + timedelta(days=first_day, hours=10), 0
            while day < t1:
                tile = f"T{zone_epsg % 100}UPU"
                stamp = day.strftime("%Y%m%dT%H%M%S")
                index = f"{stamp}_{stamp}_{tile}"
                cloud = _hash(index) % 50
                props = {"CLOUDY_PIXEL_PERCENTAGE": cloud, "MGRS_TILE": tile[1:], "PROCESSING_BASELINE": "02.09"}
                self.images["COPERNICUS/S2_HARMONIZED"].append(
                    Image(f"COPERNICUS/S2_HARMONIZED/{index}", day, zone_epsg, area, props, s2_bands))
                if cloud <= 35 and n % 7 != 3:  # Dynamic World exists for most scenes under 35 % cloud
                    self.images["GOOGLE/DYNAMICWORLD/V1"].append(
                        Image(f"GOOGLE/DYNAMICWORLD/V1/{index}", day, zone_epsg, area, {}, ("label",)))
                day, n = day + timedelta(days=5), n + 1
        day, n = t0 + timedelta(days=1, hours=17), 0
        while day < t1:
            pols = ["VV", "VH"] if n % 4 else ["VV"]
            index = f"S1A_IW_GRDH_1SDV_{day:%Y%m%dT%H%M%S}_{day:%Y%m%dT%H%M%S}_0{n:05d}"
            props = {"instrumentMode": "IW", "transmitterReceiverPolarisation": pols,
                     "orbitProperties_pass": "ASCENDING" if n % 2 else "DESCENDING"}
            self.images["COPERNICUS/S1_GRD"].append(
                Image(f"COPERNICUS/S1_GRD/{index}", day, epsg, area, props, tuple(pols)))
            day, n = day + timedelta(days=6), n + 1
        self.by_id = {i.id: i for images in self.images.values() for i in images}

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
    actual = image.time if name in ("startTime", "endTime") else image.properties.get(name.split(".", 1)[1])
    if actual is None:
        return False
    return {"=": actual == value, "!=": actual != value, "<": actual < value, "<=": actual <= value,
            ">": actual > value, ">=": actual >= value}[op]


@dataclass
class Band:
    """A band of an evaluated expression."""

    name: str
    image: str | None  # None for constant images
    source: str
    dtype: str = "float64"
    fill: float | None = None
    constant: float = 0.0


def evaluate(node: dict[str, Any], values: dict[str, Any], catalogue: Catalogue) -> Any:
    """Evaluate the subset of the expression language noldo sends (load, select, resample, unmask, casts,
    rename, addBands, constant)."""
    if "valueReference" in node:
        return evaluate(values[node["valueReference"]], values, catalogue)
    if "constantValue" in node:
        return node["constantValue"]
    call = node["functionInvocationValue"]
    args = {k: evaluate(v, values, catalogue) for k, v in call.get("arguments", {}).items()}
    name = call["functionName"]
    if name == "Image.load":
        image = catalogue.by_id.get(args["id"])
        if image is None:
            raise KeyError(f"Image.load: Image asset '{args['id']}' not found.")
        return [Band(b, image.id, b) for b in image.bands]
    if name == "Image.constant":
        return [Band("constant", None, "constant", constant=float(args["value"]))]
    if name == "Image.select":
        bands = {b.name: b for b in args["input"]}
        return [bands[s] for s in args["bandSelectors"]]
    if name == "Image.resample":
        return args["image"]
    if name == "Image.unmask":
        fill = args["value"][0].constant
        return [Band(b.name, b.image, b.source, b.dtype, fill) for b in args["input"]]
    if name in ("Image.toUint16", "Image.toUint8", "Image.toFloat"):
        dtype = {"Image.toUint16": "<u2", "Image.toUint8": "u1", "Image.toFloat": "<f4"}[name]
        return [Band(b.name, b.image, b.source, dtype, b.fill) for b in args["value"]]
    if name == "Image.rename":
        return [Band(n, b.image, b.source, b.dtype, b.fill) for b, n in zip(args["input"], args["names"], strict=True)]
    if name == "Image.addBands":
        return args["dstImg"] + args["srcImg"]
    raise ValueError(f"the fake server does not implement {name}")


def render(bands: list[Band], grid: dict[str, Any]) -> np.ndarray:
    """The NPY structured array computePixels returns for ``bands`` on ``grid``."""
    w, h = grid["dimensions"]["width"], grid["dimensions"]["height"]
    t = grid["affineTransform"]
    transform = Affine(t["scaleX"], t.get("shearX", 0), t["translateX"], t.get("shearY", 0), t["scaleY"],
                       t["translateY"])
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = transform @ (cols, rows)
    out = np.zeros((h, w), dtype=[(b.name, b.dtype) for b in bands])
    for b in bands:
        values, valid = pixels(b.image, b.source, x, y)
        out[b.name] = np.where(valid, values, b.fill if b.fill is not None else 0).astype(b.dtype)
    return out


@dataclass
class Faults:
    """Which failures to inject, how often (deterministic for a seed)."""

    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "500", "drop", "slow")  # also: truncate, shape, dtype, timeout
    seed: int = 0
    timeout: float = 1.5  # how long a "timeout" fault stalls (longer than the client's deadline in tests)
    rng: random.Random = field(init=False)
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def draw(self) -> str | None:
        return self.rng.choice(self.kinds) if self.rng.random() < self.rate else None


class FakeEarthEngine(LoopbackServer):
    """The server: ``with FakeEarthEngine(catalogue) as fake: ... fake.url ...``."""

    def __init__(self, catalogue: Catalogue, faults: Faults | None = None, max_bytes: int = MAX_BYTES,
                 latency: float = 0.0) -> None:
        self.catalogue, self.faults, self.max_bytes, self.latency = catalogue, faults or Faults(), max_bytes, latency
        self.requests: Counter = Counter()
        self.log: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
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

    def _handler(self):
        fake = self

        class Handler(QuietHandler):
            def _error(self, code: int, status: str, message: str) -> None:
                self.send_body(code, json.dumps({"error": {"code": code, "message": message, "status": status}}))

            def _authorised(self) -> bool:
                header = self.headers.get("Authorization", "")
                if header.removeprefix("Bearer ") not in fake.tokens:
                    self._error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
                    return False
                return True

            def _fault(self, kind: str) -> bool:
                """Inject a fault for an API call; True if the request was answered (or dropped)."""
                if fake.latency:
                    time.sleep(fake.latency)
                with fake.lock:
                    fault = fake.faults.draw()
                    if fault in ("shape", "dtype") and kind != "computePixels":
                        fault = None
                    if fault:
                        fake.faults.counts[fault] += 1
                self.answer_fault = fault if fault in ("shape", "dtype", "truncate") else None
                if fault == "429":
                    self._error(429, "RESOURCE_EXHAUSTED", "Too many concurrent aggregations.")
                elif fault == "500":
                    self._error(500, "INTERNAL", "An internal error has occurred.")
                elif fault == "drop":
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(2)
                elif fault == "slow":
                    time.sleep(0.2)
                elif fault == "timeout":
                    time.sleep(fake.faults.timeout)
                return fault in ("429", "500", "drop")

            def _send_answer(self, body: bytes, ctype: str) -> None:
                """Send an API answer, or its truncated version (headers promise the whole body)."""
                if getattr(self, "answer_fault", None) != "truncate":
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
                    if not self._authorised() or self._fault("listImages"):
                        return None
                    params = urllib.parse.parse_qs(query)
                    parent = urllib.parse.unquote(path.split("/assets/", 1)[1].removesuffix(":listAssets"))
                    with fake.lock:
                        fake.requests["listImages"] += 1
                        fake.log.append(("listImages", parent, params.get("filter", [""])[0]))
                    images = fake.catalogue.query(parent, params.get("filter", [""])[0])
                    return self._send_answer(('{"assets": [' + ", ".join(i.asset_json() for i in images) + "]}")
                                             .encode(), "application/json")
                return self._error(404, "NOT_FOUND", f"not faked: GET {path}")

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.partition("?")[0]
                if path == "/token":
                    form = urllib.parse.parse_qs(raw.decode())
                    payload = form["assertion"][0].split(".")[1]
                    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
                    fake.log.append(("token", path, claims))
                    if not claims.get("iss") or "earthengine" not in claims.get("scope", ""):
                        return self._error(400, "invalid_grant", "bad assertion")
                    token = f"token-{os.urandom(4).hex()}"
                    fake.tokens.add(token)
                    return self.send_body(200, json.dumps({"access_token": token, "expires_in": 3600,
                                                       "token_type": "Bearer"}))
                if path.endswith("image:computePixels"):
                    if not self._authorised() or self._fault("computePixels"):
                        return None
                    body = json.loads(raw)
                    with fake.lock:
                        fake.requests["computePixels"] += 1
                        fake.log.append(("computePixels", body["grid"], body))
                    try:
                        bands = evaluate({"valueReference": body["expression"]["result"]},
                                         body["expression"]["values"], fake.catalogue)
                    except (KeyError, ValueError) as exc:
                        return self._error(400, "INVALID_ARGUMENT", str(exc).strip("'\""))
                    if body.get("bandIds"):
                        by_name = {b.name: b for b in bands}
                        bands = [by_name[n] for n in body["bandIds"]]
                    dims = body["grid"]["dimensions"]
                    size = dims["width"] * dims["height"] * sum(np.dtype(b.dtype).itemsize for b in bands)
                    if size > fake.max_bytes or max(dims.values()) > 32768 or len(bands) > 1024:
                        return self._error(400, "INVALID_ARGUMENT", f"Total request size ({size} bytes) must be "
                                                                    f"less than or equal to {fake.max_bytes} bytes.")
                    answer = render(bands, body["grid"])
                    if self.answer_fault == "shape":
                        answer = answer[:-1]
                    elif self.answer_fault == "dtype":
                        answer = answer.astype([(b.name, "<f8") for b in bands])
                    buffer = io.BytesIO()
                    np.save(buffer, answer)
                    return self._send_answer(buffer.getvalue(), "application/octet-stream")
                return self._error(404, "NOT_FOUND", f"not faked: POST {path}")

        return Handler
