"""The Earth Engine seam: every call to Earth Engine goes through here.

Initialisation (credentials, project, endpoint), one quota for the whole build (requests in flight
and per second, across a dask cluster: :mod:`noldo.sources.ee_quota`), the retry table by status and
message (:mod:`noldo.sources.ee_errors`), paginated listings (each page one request, retried on its
own, shared between the samples of one place), and pixel requests cut to Earth Engine's size limits,
split further when the server runs out of memory, decoded without copying and checked before use.
The client library initialises (credentials, the algorithm list) and serialises expressions; the
requests themselves go out on a plain HTTP pool (:mod:`noldo.sources.ee_http`). Tests replace the
service (:mod:`noldo.testing.earthengine`), not this module.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import math
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from typing import Any, TypeVar

import numpy as np

from noldo.errors import NoldoError
from noldo.grid import Grid
from noldo.sources import ee_errors
from noldo.sources.base import Rejected, Unfinished, count
from noldo.sources.ee_http import Refusal, RestClient
from noldo.sources.ee_quota import Quota

log = logging.getLogger(__name__)
T = TypeVar("T")

HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
MAX_CONCURRENCY = 40  # the default per-project quota of concurrent interactive requests
DEFAULT_CONCURRENCY = 16
DEFAULT_RATE = 100.0  # the default per-project quota of requests per second
#: Environment variables of the settings (flags win over them).
ENV_PROJECT, ENV_URL, ENV_CONCURRENCY, ENV_RATE = ("NOLDO_EE_PROJECT", "NOLDO_EE_URL", "NOLDO_EE_CONCURRENCY",
                                                   "NOLDO_EE_RATE")
#: computePixels limits (README, "Earth Engine"): the size counts one mask byte per pixel and band.
MAX_REQUEST_BYTES = 48 * 2**20
MAX_REQUEST_SIDE = 32768
MAX_REQUEST_BANDS = 1024
LIST_PAGE_SIZE = 1000  # images per listImages page (the most a FULL listing page holds)
#: What a listing returns of each image (partial response). The rest, its bands (one entry per band,
#: two thirds of an S2 page), is never used: a granule's CRS is its MGRS tile's (``scenes.granule_epsg``).
LISTING_FIELDS = "assets(id,startTime,geometry,properties),nextPageToken"  # what parse_scenes reads
SHARED_LISTINGS = 256  # listings kept per process for the samples of the same place
AUTH_HELP = ("run `earthengine authenticate` (stored user credentials), or set NOLDO_EE_SERVICE_ACCOUNT_KEY "
             "to a service-account key file, or run `gcloud auth application-default login`")


@dataclass(frozen=True)
class EESettings:
    """How to reach Earth Engine. Flags win over the environment (see :func:`settings_from`).

    ``processes`` is the number of dask worker processes that share the quota (0: this process
    alone); ``tag`` labels pixel requests (``workloadTag``) so a build's cost shows in the Cloud console.
    """

    project: str | None = None
    url: str = HIGH_VOLUME_URL
    key_file: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    rate: float = DEFAULT_RATE
    max_attempts: int = 6
    retry_base: float = 2.0  # seconds; the n-th retry waits uniform(0, min(cap, base · 2ⁿ))
    retry_cap: float = 60.0
    deadline: float = 300.0  # interactive requests must finish within 5 minutes
    processes: int = 0
    tag: str | None = None


def settings_from(project: str | None = None, url: str | None = None, concurrency: int | None = None,
                  environ: Mapping[str, str] | None = None, rate: float | None = None, processes: int = 0,
                  tag: str | None = None) -> EESettings:
    """Resolve settings: command-line values first, then NOLDO_EE_* environment variables, then defaults."""
    env = os.environ if environ is None else environ
    concurrency = concurrency or int(env.get(ENV_CONCURRENCY, DEFAULT_CONCURRENCY))
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise NoldoError(f"--ee-concurrency must be 1–{MAX_CONCURRENCY} (the per-project quota), got {concurrency}")
    rate = rate or float(env.get(ENV_RATE, DEFAULT_RATE))
    if rate <= 0:
        raise NoldoError(f"--ee-rate must be a positive number of requests per second, got {rate:g}")
    return EESettings(
        project=project or env.get(ENV_PROJECT) or None,
        url=(url or env.get(ENV_URL) or HIGH_VOLUME_URL).rstrip("/"),
        key_file=env.get("NOLDO_EE_SERVICE_ACCOUNT_KEY") or None,
        concurrency=concurrency, rate=rate,
        retry_base=float(env.get("NOLDO_EE_RETRY_BASE_SECONDS", 2.0)),
        deadline=float(env.get("NOLDO_EE_DEADLINE_SECONDS", 300.0)),
        processes=processes, tag=tag,
    )


@dataclass
class _Client:
    """What one initialisation gives a process: the settings, the quota, the REST client."""

    settings: EESettings
    quota: Quota
    rest: RestClient


_init_lock = threading.Lock()
_client: _Client | None = None


def _credentials(settings: EESettings):
    import ee

    if settings.key_file:
        if not os.path.isfile(settings.key_file):
            raise NoldoError(f"NOLDO_EE_SERVICE_ACCOUNT_KEY points at {settings.key_file}, which does not exist")
        try:
            return ee.ServiceAccountCredentials(None, key_file=settings.key_file)
        except (ValueError, KeyError, OSError) as exc:
            raise NoldoError(f"cannot use the service-account key {settings.key_file}: {exc}") from None
    try:
        return ee.data.get_persistent_credentials()
    except ee.EEException:
        raise NoldoError(f"no Earth Engine credentials found: {AUTH_HELP}") from None


def _project(settings: EESettings, credentials: Any) -> str:
    """The flag or environment first, then the credentials: a service account's project, or the quota project
    that ``earthengine set_project`` (or application-default login) stores with user credentials."""
    project = (settings.project or getattr(credentials, "project_id", None)
               or getattr(credentials, "quota_project_id", None))
    if not project:
        raise NoldoError("no Earth Engine project: pass --ee-project, set NOLDO_EE_PROJECT, or run "
                         "`earthengine set_project PROJECT` once (the Cloud project registered for Earth Engine)")
    return project


def initialize(settings: EESettings) -> None:
    """Initialise the Earth Engine client once per process (thread-safe); later calls are free."""
    global _client
    with _init_lock:
        if _client is not None and _client.settings == settings:
            return
        import ee

        credentials = _credentials(settings)
        project = _project(settings, credentials)
        try:
            ee.Initialize(credentials, url=settings.url, project=project)
        except ee.EEException as exc:
            raise NoldoError(f"Earth Engine refused to initialise at {settings.url}: {_first_line(exc)}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise NoldoError(f"cannot reach Earth Engine at {settings.url} ({_first_line(exc)}); check --ee-url "
                             "and the network") from None
        except Exception as exc:  # google-auth refresh errors and the like: say what failed, no traceback
            raise NoldoError(f"Earth Engine authentication failed ({type(exc).__name__}: {_first_line(exc)}); "
                             f"{AUTH_HELP}") from None
        ee.data.setDeadline(int(settings.deadline * 1000))  # the library's own calls: its algorithm list
        quota = Quota(settings.concurrency, settings.rate, settings.processes, f"noldo-ee-{project}")
        rest = RestClient(settings.url, ee.data._get_projects_path(), ee._state.get_state().credentials,
                          settings.concurrency, settings.deadline)
        _client = _Client(settings, quota, rest)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _status(exc: BaseException) -> int | None:
    """The HTTP status of a refusal (the client library chains the googleapiclient HttpError to its EEException)."""
    if isinstance(exc, Refusal):
        return exc.status
    for cause in (exc.__cause__, exc.__context__):
        status = getattr(getattr(cause, "resp", None), "status", None)
        if status is not None:
            return int(status)
    return None


class BadAnswer(Exception):
    """A pixel answer that is not what was asked for (bands, shape, dtype kind or size)."""


class _TooHeavy(Exception):
    """The server ran out of memory for this request: ask for less at a time."""


def _describe(exc: BaseException) -> str:
    status = _status(exc)
    return f"HTTP {status}: {_first_line(exc)}" if status else f"{type(exc).__name__}: {_first_line(exc)}"


class EERequestError(NoldoError):
    """Earth Engine refused a request for a reason another attempt will not fix (401, 403, an unknown refusal)."""

    def __init__(self, kind: str, exc: BaseException) -> None:
        status = _status(exc)
        self.status = status
        super().__init__(f"Earth Engine {kind} failed{f' (HTTP {status})' if status else ''}: {_first_line(exc)}")


def _rule(exc: Exception) -> ee_errors.Rule | None:
    """What the retry table says about a failure (None: not a failure of the service)."""
    import ee

    if isinstance(exc, ee.EEException | Refusal):
        return ee_errors.action(_status(exc), str(exc))
    if isinstance(exc, (BadAnswer, *ee_errors.TRANSIENT_ERRORS)) or (
            isinstance(exc, ValueError) and not isinstance(exc, NoldoError)):  # a torn NPY body
        return ee_errors.TRANSPORT
    return None


def call(kind: str, fn: Callable[[], T], settings: EESettings, splittable: bool = False) -> T:
    """Run one Earth Engine request under the quota and the retry table; counts it as ``kind``.

    Raises :class:`Rejected` (this sample's request is at fault), :class:`Unfinished` (still failing
    with a passing kind after every attempt: the sample waits for the next run), :class:`EERequestError`
    (the build must stop) or, for a ``splittable`` request, ``_TooHeavy`` (ask for less at a time).
    """
    initialize(settings)
    quota = _client.quota
    count(kind)
    for attempt in range(settings.max_attempts):
        if attempt:
            count("retries")
        try:
            with quota.request():
                started = time.thread_time_ns()
                try:
                    return fn()
                finally:  # the request path's own CPU: building, sending, decoding (waiting costs none)
                    count(f"{kind}_cpu_us", (time.thread_time_ns() - started) // 1000)
        except Exception as exc:
            rule = _rule(exc)
            if rule is None:
                raise
            if rule.action == ee_errors.SPLIT and splittable:
                raise _TooHeavy(_first_line(exc)) from None
            if rule.action in (ee_errors.REJECT, ee_errors.SPLIT):
                raise Rejected(f"ee: {kind} {_describe(exc)}") from None
            if rule.action == ee_errors.STOP:
                raise EERequestError(kind, exc) from None
            count(f"retries_{_retry_kind(exc)}")
            if attempt + 1 == settings.max_attempts:
                raise Unfinished(f"ee: {kind} still failing after {attempt + 1} attempts ({_describe(exc)})") from None
            delay = random.uniform(0, min(settings.retry_cap, settings.retry_base * 2**attempt))
            log.info("%s failed (%s); retry %d in %.1f s", kind, _describe(exc), attempt + 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _retry_kind(exc: BaseException) -> str:
    """A short name of a retried failure for the summary's counts: the status, or the exception type."""
    status = _status(exc)
    if status == 400:
        return "400_timeout"
    return str(status) if status else type(exc).__name__


# --- listings ---------------------------------------------------------------------------------------
_listings: OrderedDict[tuple, Any] = OrderedDict()
_listing_locks: dict[tuple, threading.Lock] = {}
_listings_lock = threading.Lock()


def list_images(settings: EESettings, collection: str, start: str, end: str, region: dict[str, Any],
                properties: Sequence[str] = (), share: Any = None,
                parse: Callable[[list[dict[str, Any]]], T] = list) -> T:
    """All images of ``collection`` in [start, end) intersecting ``region`` (GeoJSON, lon/lat), filtered
    on the server by ``properties`` (e.g. ``"CLOUDY_PIXEL_PERCENTAGE < 20"``), turned into ``parse(assets)``.

    One ``listImages`` request per page of ``LIST_PAGE_SIZE`` images, each retried on its own (the
    client library would otherwise fetch every page inside one call and restart them all on a failure).
    With ``share`` (a key naming the place, e.g. a cell of a lattice that ``region`` covers), the
    listing is made and parsed once per process and returned to every caller asking for the same key,
    filters and ``parse`` (a module-level function: the result is shared, do not change it).
    """
    if share is None:
        return parse(_list_pages(settings, collection, start, end, region, properties))
    key = (settings.url, settings.project, collection, start, end, tuple(properties), share, parse)
    with _listings_lock:
        if key in _listings:
            _listings.move_to_end(key)
            return _listings[key]
        lock = _listing_locks.setdefault(key, threading.Lock())
    with lock:  # one listing per key, even when many samples of the place ask at once
        with _listings_lock:
            if key in _listings:
                return _listings[key]
        parsed = parse(_list_pages(settings, collection, start, end, region, properties))
        with _listings_lock:
            _listings[key] = parsed
            while len(_listings) > SHARED_LISTINGS:
                _listing_locks.pop(_listings.popitem(last=False)[0], None)
        return parsed


def _list_pages(settings: EESettings, collection: str, start: str, end: str, region: dict[str, Any],
                properties: Sequence[str]) -> list[dict[str, Any]]:
    """Every page of a listing, as ``listAssets`` with the filter the client library builds for ``listImages``."""
    geojson = json.dumps(region, separators=(",", ":")).replace('"', "'")  # the filter quotes it in "…"
    terms = [f'startTime >= "{start}"', f'endTime < "{end}"', f'intersects("{geojson}")',
             *(f"properties.{p.strip().removeprefix('properties.')}" for p in properties)]
    params = {"filter": " AND ".join(terms), "pageSize": LIST_PAGE_SIZE, "fields": LISTING_FIELDS}
    images: list[dict[str, Any]] = []
    token = None
    while True:
        page = {**params, **({"pageToken": token} if token else {})}
        answer = call("listImages", lambda page=page: _client.rest.list_assets(collection, page), settings)
        images += answer.get("assets") or []
        token = answer.get("nextPageToken")
        if not token:
            return images


# --- pixels -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """One pixel request: a range of output bands on a window of the grid."""

    bands: slice
    rows: slice
    cols: slice


def split_request(height: int, width: int, band_bytes: int | Sequence[int], bands: int | None = None) -> list[Block]:
    """Cut a (bands, height, width) request into blocks that each respect the computePixels limits.

    ``band_bytes`` is the bytes per pixel of every band (one number for all ``bands``, or one per
    band); the server adds one mask byte per pixel and band. Consecutive bands are grouped first
    (whole tiles are cheapest); only a band too large for one request is cut into windows of at most
    ``MAX_REQUEST_SIDE`` pixels per side and ``MAX_REQUEST_BYTES``.
    """
    sizes = [band_bytes] * bands if isinstance(band_bytes, int) else list(band_bytes)
    limit, side = MAX_REQUEST_BYTES, MAX_REQUEST_SIDE
    pixels = height * width
    blocks, start, used = [], 0, 0
    for b, size in enumerate(sizes):
        per_band = pixels * (size + 1)
        if per_band > limit or max(height, width) > side:
            if b > start:
                blocks.append(Block(slice(start, b), slice(0, height), slice(0, width)))
            blocks += _windows(b, height, width, size + 1)
            start, used = b + 1, 0
            continue
        if used + per_band > limit or b - start == MAX_REQUEST_BANDS:
            blocks.append(Block(slice(start, b), slice(0, height), slice(0, width)))
            start, used = b, 0
        used += per_band
    if start < len(sizes):
        blocks.append(Block(slice(start, len(sizes)), slice(0, height), slice(0, width)))
    return blocks


def _windows(band: int, height: int, width: int, pixel_bytes: int) -> list[Block]:
    limit, side = MAX_REQUEST_BYTES, MAX_REQUEST_SIDE
    cols = min(width, side, max(1, limit // pixel_bytes))
    rows = max(1, min(height, side, limit // (cols * pixel_bytes)))
    return [Block(slice(band, band + 1), slice(r, min(r + rows, height)), slice(c, min(c + cols, width)))
            for r in range(0, height, rows) for c in range(0, width, cols)]


def _grid_request(grid: Grid, block: Block) -> dict[str, Any]:
    t = grid.transform
    x0, y0 = t @ (block.cols.start, block.rows.start)
    return {"dimensions": {"width": block.cols.stop - block.cols.start, "height": block.rows.stop - block.rows.start},
            "affineTransform": {"scaleX": t.a, "shearX": t.b, "translateX": x0,
                                "shearY": t.d, "scaleY": t.e, "translateY": y0},
            "crsCode": grid.crs}


def compute_pixels(settings: EESettings, expression: str, bands: Sequence[tuple[str, str]],
                   grid: Grid) -> dict[str, np.ndarray]:
    """Compute a serialised ``expression`` (JSON text) on ``grid``: every band of ``bands`` (name, dtype) as a
    (height, width) array of its dtype (read-only views of the answer when one request held the whole grid),
    in as few requests as the limits allow.

    Each band keeps its own dtype (one request may mix uint16, float32 and uint8 bands). A request the
    server runs out of memory for is split in two, down to single bands; every answer is checked
    (band names, shape, dtype kind and size, byte order) before use.
    """
    initialize(settings)
    dtypes = {name: np.dtype(dtype) for name, dtype in bands}
    names = [name for name, _ in bands]
    out: dict[str, np.ndarray] = {}
    whole = (slice(0, grid.height), slice(0, grid.width))
    work = split_request(grid.height, grid.width, [dtypes[n].itemsize for n in names])
    while work:
        block = work.pop()
        wanted = names[block.bands]
        try:
            answer = call("computePixels", partial(_fetch, expression, wanted, grid, block, settings, dtypes),
                          settings, splittable=True)
        except _TooHeavy as exc:
            work += _halves(block, wanted, grid, dtypes, exc)
            continue
        for name in wanted:
            if (block.rows, block.cols) == whole:
                out[name] = answer[name]  # a view of the answer's field: no copy
                continue
            if name not in out:
                out[name] = np.empty(grid.shape, dtypes[name])
            out[name][block.rows, block.cols] = answer[name]
        count("bytes", sum(answer[name].nbytes for name in wanted))
    return {name: out[name] for name in names}


def _halves(block: Block, wanted: list[str], grid: Grid, dtypes: Mapping[str, np.dtype],
            exc: _TooHeavy) -> list[Block]:
    """Two smaller requests for a block the server had no memory for; a single band is rejected instead."""
    count("splits")
    if len(wanted) == 1:
        size = (block.rows.stop - block.rows.start) * (block.cols.stop - block.cols.start) * (
            dtypes[wanted[0]].itemsize + 1)
        raise Rejected(f"ee: computePixels {exc} even for one band ({wanted[0]}, {size} bytes)")
    middle = block.bands.start + len(wanted) // 2
    return [replace(block, bands=slice(block.bands.start, middle)),
            replace(block, bands=slice(middle, block.bands.stop))]


def _fetch(expression: str, names: list[str], grid: Grid, block: Block, settings: EESettings,
           dtypes: Mapping[str, np.dtype]) -> np.ndarray:
    """One computePixels request with a pre-serialised expression; the NPY answer decoded in place and checked."""
    rest = {"fileFormat": "NPY", "bandIds": names, "grid": _grid_request(grid, block)}
    if settings.tag:
        rest["workloadTag"] = settings.tag
    body = f'{{"expression":{expression},{json.dumps(rest, separators=(",", ":"))[1:]}'
    answer = decode_npy(_client.rest.compute_pixels(body.encode()))
    _check_answer(answer, names, (block.rows.stop - block.rows.start, block.cols.stop - block.cols.start), dtypes)
    return answer


def decode_npy(data: bytes) -> np.ndarray:
    """A NumPy .npy answer as an array viewing ``data`` (no copy); truncated or foreign bodies raise ValueError."""
    if not isinstance(data, bytes | bytearray):
        raise BadAnswer(f"computePixels returned {type(data).__name__}, not NPY bytes")
    if data[:6] != b"\x93NUMPY" or len(data) < 12:
        raise ValueError("computePixels answer is not an NPY file")
    if data[6] not in (1, 2):
        raise BadAnswer(f"computePixels returned NPY version {data[6]}.{data[7]}, not 1.0 or 2.0")
    size = 2 if data[6] == 1 else 4  # the header length's bytes: two in NPY 1.0, four in 2.0
    offset = 8 + size + int.from_bytes(data[8:8 + size], "little")
    shape, fortran, dtype = _npy_header(bytes(data[:offset]))
    if fortran or dtype.hasobject:
        raise BadAnswer("computePixels returned a Fortran-ordered or object array")
    answer = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset)
    return answer.reshape(shape)


_header_lock = threading.Lock()


@lru_cache(maxsize=64)
def _npy_header(header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) of an NPY header. The answers of one request shape share a header, so this
    parses each once; under a lock, as NumPy parses headers with ``ast``, which is not thread-safe in
    CPython 3.11 ("AST constructor recursion depth mismatch" when threads parse at once)."""
    with _header_lock:
        stream = io.BytesIO(header)
        version = np.lib.format.read_magic(stream)
        return (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)(stream)


def _check_answer(answer: np.ndarray, names: list[str], shape: tuple[int, int],
                  dtypes: Mapping[str, np.dtype]) -> None:
    if answer.dtype.names is None:
        raise BadAnswer(f"computePixels returned {answer.dtype}, not a structured array")
    if list(answer.dtype.names) != names:
        raise BadAnswer(f"computePixels returned bands {list(answer.dtype.names)}, asked for {names}")
    if answer.shape != shape:
        raise BadAnswer(f"computePixels returned shape {answer.shape}, asked for {shape}")
    for name in names:
        got, want = answer.dtype[name], dtypes[name]
        if (got.kind, got.itemsize) != (want.kind, want.itemsize):  # byte order may differ: assignment converts
            raise BadAnswer(f"computePixels returned {got} for {name}, expected {want}")


def serialize(image: Any) -> dict[str, Any]:
    """An ``ee.Image`` as the expression graph computePixels takes."""
    import ee

    return ee.serializer.encode(image, for_cloud_api=True)
