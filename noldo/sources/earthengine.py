"""The Earth Engine seam: every call to Earth Engine goes through here.

Initialisation (credentials, project, endpoint), a concurrency limit, a request-size guard that
splits pixel requests instead of sending one that must fail, and our own retry policy
(exponential backoff with full jitter on 429/5xx and connection errors; the client library's own
retries are switched off so they do not multiply). Tests replace the service, not this module.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from noldo.errors import NoldoError
from noldo.grid import Grid
from noldo.sources.base import Rejected, count

log = logging.getLogger(__name__)
T = TypeVar("T")

HIGH_VOLUME_URL = "https://earthengine-highvolume.googleapis.com"
MAX_CONCURRENCY = 40  # the default per-project quota of concurrent interactive requests
DEFAULT_CONCURRENCY = 16
#: Environment variables of the settings (flags win over them).
ENV_PROJECT, ENV_URL, ENV_CONCURRENCY = "NOLDO_EE_PROJECT", "NOLDO_EE_URL", "NOLDO_EE_CONCURRENCY"
MAX_REQUEST_BYTES = 48 * 2**20  # computePixels limits (README, "Earth Engine", quotas)
MAX_REQUEST_SIDE = 32768
MAX_REQUEST_BANDS = 1024
LIST_PAGE_SIZE = 1000  # images per listImages page
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
RETRY_MESSAGES = ("Computation timed out", "Too many concurrent aggregations", "Service unavailable")
AUTH_HELP = ("run `earthengine authenticate` (stored user credentials), or set NOLDO_EE_SERVICE_ACCOUNT_KEY "
             "to a service-account key file, or run `gcloud auth application-default login`")


@dataclass(frozen=True)
class EESettings:
    """How to reach Earth Engine. Flags win over the environment (see :func:`settings_from`)."""

    project: str | None = None
    url: str = HIGH_VOLUME_URL
    key_file: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = 6
    retry_base: float = 2.0  # seconds; the n-th retry waits uniform(0, min(cap, base · 2ⁿ))
    retry_cap: float = 60.0
    deadline: float = 300.0  # interactive requests must finish within 5 minutes


def settings_from(project: str | None = None, url: str | None = None, concurrency: int | None = None,
                  environ: dict[str, str] | None = None) -> EESettings:
    """Resolve settings: command-line values first, then NOLDO_EE_* environment variables, then defaults."""
    env = os.environ if environ is None else environ
    concurrency = concurrency or int(env.get(ENV_CONCURRENCY, DEFAULT_CONCURRENCY))
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise NoldoError(f"--ee-concurrency must be 1–{MAX_CONCURRENCY} (the per-project quota), got {concurrency}")
    return EESettings(
        project=project or env.get(ENV_PROJECT) or None,
        url=(url or env.get(ENV_URL) or HIGH_VOLUME_URL).rstrip("/"),
        key_file=env.get("NOLDO_EE_SERVICE_ACCOUNT_KEY") or None,
        concurrency=concurrency,
        retry_base=float(env.get("NOLDO_EE_RETRY_BASE_SECONDS", 2.0)),
        deadline=float(env.get("NOLDO_EE_DEADLINE_SECONDS", 300.0)),
    )


_init_lock = threading.Lock()
_initialized: EESettings | None = None
_slots: threading.BoundedSemaphore | None = None


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


def initialize(settings: EESettings) -> None:
    """Initialise the Earth Engine client once per process (thread-safe); later calls are free."""
    global _initialized, _slots
    with _init_lock:
        if _initialized == settings:
            return
        import ee
        import requests

        credentials = _credentials(settings)
        project = settings.project or getattr(credentials, "project_id", None)
        if not project:
            raise NoldoError("no Earth Engine project: pass --ee-project or set NOLDO_EE_PROJECT to the Cloud "
                             "project registered for Earth Engine")
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
        ee.data.setMaxRetries(0)  # our retry policy below is the only one
        ee.data.setDeadline(int(settings.deadline * 1000))
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=settings.concurrency)
        session = ee._state.get_state().requests_session  # one connection per concurrent request
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        _slots = threading.BoundedSemaphore(settings.concurrency)
        _initialized = settings


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _status(exc: BaseException) -> int | None:
    """The HTTP status behind an EEException (the client chains the googleapiclient HttpError)."""
    for cause in (exc.__cause__, exc.__context__):
        status = getattr(getattr(cause, "resp", None), "status", None)
        if status is not None:
            return int(status)
    return None


class BadAnswer(Exception):
    """A pixel answer that is not what was asked for (shape, dtype or bands)."""


def retryable(exc: BaseException) -> bool:
    """True for failures worth another attempt: 429/5xx, timeouts, dropped connections, bad answers."""
    import ee

    if isinstance(exc, ee.EEException):
        status = _status(exc)
        return status in RETRY_STATUS if status is not None else any(m in str(exc) for m in RETRY_MESSAGES)
    if isinstance(exc, NoldoError):
        return False
    return isinstance(exc, (OSError, http.client.HTTPException, BadAnswer, ValueError))  # ValueError: torn NPY


def call(kind: str, fn: Callable[[], T], settings: EESettings) -> T:
    """Run one Earth Engine request with the concurrency limit and the retry policy; counts it as ``kind``."""
    import ee

    count(kind)
    for attempt in range(settings.max_attempts):
        if attempt:
            count("retries")
        try:
            with _slots:
                return fn()
        except Exception as exc:
            if not retryable(exc):
                if not isinstance(exc, ee.EEException):
                    raise
                if _status(exc) in (400, 404):  # this sample's request, not the whole build, is at fault
                    raise Rejected(f"ee: {kind} {_describe(exc)}: {_first_line(exc)}") from None
                raise EERequestError(kind, exc) from None
            if attempt + 1 == settings.max_attempts:
                if isinstance(exc, BadAnswer):
                    raise Rejected(f"ee: {exc}") from None
                raise NoldoError(f"Earth Engine {kind} kept failing ({_describe(exc)}) after {attempt + 1} "
                                 "attempts; re-run the same command later to resume") from None
            delay = random.uniform(0, min(settings.retry_cap, settings.retry_base * 2**attempt))
            log.info("%s failed (%s); retry %d in %.1f s", kind, _describe(exc), attempt + 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _describe(exc: BaseException) -> str:
    status = _status(exc)
    return f"HTTP {status}" if status else f"{type(exc).__name__}: {_first_line(exc)}"


class EERequestError(NoldoError):
    """Earth Engine rejected a request for a reason another attempt will not fix (e.g. 400, 403, 404)."""

    def __init__(self, kind: str, exc: BaseException) -> None:
        status = _status(exc)
        self.status = status
        super().__init__(f"Earth Engine {kind} failed{f' (HTTP {status})' if status else ''}: {_first_line(exc)}")


def list_images(settings: EESettings, collection: str, start: str, end: str, region: dict[str, Any],
                properties: Sequence[str] = ()) -> list[dict[str, Any]]:
    """All images of ``collection`` in [start, end) intersecting ``region`` (GeoJSON, lon/lat), filtered
    on the server by ``properties`` (e.g. ``"CLOUDY_PIXEL_PERCENTAGE < 20"``).

    One ``listImages`` request per page of ``LIST_PAGE_SIZE`` images, each retried on its own (the
    client library would otherwise fetch every page inside one call and restart them all on a failure).
    """
    import ee

    initialize(settings)
    params = {"parent": collection, "startTime": start, "endTime": end, "region": json.dumps(region),
              "pageSize": LIST_PAGE_SIZE}
    if properties:
        params["properties"] = list(properties)
    images: list[dict[str, Any]] = []
    token = None
    while True:
        page = {**params, **({"pageToken": token} if token else {})}
        answer = call("listImages", lambda page=page: ee.data.listImages(dict(page)), settings)
        images += answer.get("images") or []
        token = answer.get("nextPageToken")
        if not token:
            return images


@dataclass(frozen=True)
class Block:
    """One pixel request: a range of output bands on a window of the grid."""

    bands: slice
    rows: slice
    cols: slice


def split_request(height: int, width: int, band_bytes: int, bands: int) -> list[Block]:
    """Cut a (bands, height, width) request into blocks that each respect the computePixels limits.

    Bands are grouped first (whole tiles are cheapest); only a band too large for one request is cut
    into windows of at most ``MAX_REQUEST_SIDE`` pixels per side and ``MAX_REQUEST_BYTES``.
    """
    limit, side, max_bands = MAX_REQUEST_BYTES, MAX_REQUEST_SIDE, MAX_REQUEST_BANDS
    per_band = height * width * band_bytes
    if per_band <= limit and max(height, width) <= side:
        group = min(bands, max_bands, limit // per_band)
        return [Block(slice(b, min(b + group, bands)), slice(0, height), slice(0, width))
                for b in range(0, bands, group)]
    cols = min(width, side, max(1, limit // band_bytes))
    rows = max(1, min(height, side, limit // (cols * band_bytes)))
    return [Block(slice(b, b + 1), slice(r, min(r + rows, height)), slice(c, min(c + cols, width)))
            for b in range(bands) for r in range(0, height, rows) for c in range(0, width, cols)]


def _grid_request(grid: Grid, block: Block) -> dict[str, Any]:
    t = grid.transform
    x0, y0 = t @ (block.cols.start, block.rows.start)
    return {"dimensions": {"width": block.cols.stop - block.cols.start, "height": block.rows.stop - block.rows.start},
            "affineTransform": {"scaleX": t.a, "shearX": t.b, "translateX": x0,
                                "shearY": t.d, "scaleY": t.e, "translateY": y0},
            "crsCode": grid.crs}


def compute_pixels(settings: EESettings, expression: Any, band_ids: Sequence[str], grid: Grid,
                   dtype: str) -> np.ndarray:
    """Compute ``expression`` on ``grid``: a (bands, height, width) array of ``dtype``, split as needed.

    Every answer is checked (band names, shape, dtype) before it is used.
    """
    import ee

    initialize(settings)
    dtype = np.dtype(dtype)
    out = np.empty((len(band_ids), grid.height, grid.width), dtype)
    for block in split_request(grid.height, grid.width, dtype.itemsize, len(band_ids)):
        names = list(band_ids[block.bands])
        request = {"expression": expression, "fileFormat": "NUMPY_NDARRAY", "bandIds": names,
                   "grid": _grid_request(grid, block)}
        shape = (block.rows.stop - block.rows.start, block.cols.stop - block.cols.start)

        def fetch(request=request, names=names, shape=shape) -> np.ndarray:
            answer = ee.data.computePixels(request)
            return _check_answer(answer, names, shape, dtype)

        out[block.bands, block.rows, block.cols] = call("computePixels", fetch, settings)
        count("bytes", math.prod(shape) * len(names) * dtype.itemsize)
    return out


def _check_answer(answer: Any, names: list[str], shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    if not isinstance(answer, np.ndarray) or answer.dtype.names is None:
        raise BadAnswer(f"computePixels returned {type(answer).__name__}, not a structured array")
    if list(answer.dtype.names) != names:
        raise BadAnswer(f"computePixels returned bands {list(answer.dtype.names)}, asked for {names}")
    if answer.shape != shape:
        raise BadAnswer(f"computePixels returned shape {answer.shape}, asked for {shape}")
    wrong = [n for n in names if answer.dtype[n] != dtype]
    if wrong:
        raise BadAnswer(f"computePixels returned {answer.dtype[wrong[0]]} for {wrong[0]}, expected {dtype}")
    return np.stack([answer[n] for n in names])
