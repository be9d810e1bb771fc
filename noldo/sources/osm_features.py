"""The OpenStreetMap seam: every OSM read goes through here, from Overpass (osmnx) or a local extract.

Local extracts (``.osm``, ``.osm.bz2``, ``.osm.pbf``) are first made reference-complete (ways with
missing nodes and relations with missing member ways are dropped: clipped extracts are normal, and
osmnx crashes on them), then read once per process with ``osmnx.features_from_xml``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

import geopandas as gpd

from noldo.catalog import osm_tags
from noldo.errors import NoldoError
from noldo.sources.base import count

log = logging.getLogger(__name__)
PUBLIC_OVERPASS = "https://overpass-api.de/api"
ENV_OVERPASS = "NOLDO_OVERPASS_URL"
EXTENSIONS = (".osm", ".osm.bz2", ".osm.pbf")
_lock = threading.Lock()


def cache_dir() -> Path:
    """Where noldo keeps converted extracts and osmnx's Overpass cache."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "noldo"


def check_extract(path: str | Path) -> Path:
    """A readable OSM extract path, or a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise NoldoError(f"OSM file {path} does not exist")
    if not path.name.lower().endswith(EXTENSIONS):
        raise NoldoError(f"OSM file {path} must end in {', '.join(EXTENSIONS)}")
    return path


def complete_extract(source: Path, target: Path) -> tuple[int, int]:
    """Write ``source`` as OSM XML without ways that miss nodes and relations that miss member ways.

    Returns how many ways and relations were dropped.
    """
    import osmium

    nodes = {n.id for n in osmium.FileProcessor(str(source), osmium.osm.NODE)}
    ways, dropped_ways = set(), 0
    for way in osmium.FileProcessor(str(source), osmium.osm.WAY):
        if all(n.ref in nodes for n in way.nodes):
            ways.add(way.id)
        else:
            dropped_ways += 1
    dropped_relations = 0
    partial = target.with_name(f"{target.stem}.partial.osm")  # osmium picks the format from the suffix
    partial.unlink(missing_ok=True)
    with osmium.SimpleWriter(str(partial)) as writer:
        for obj in osmium.FileProcessor(str(source)):
            if obj.is_way() and obj.id not in ways:
                continue
            if obj.is_relation() and any(m.type == "w" and m.ref not in ways for m in obj.members):
                dropped_relations += 1
                continue
            writer.add(obj)
    partial.rename(target)
    return dropped_ways, dropped_relations


@lru_cache(maxsize=4)
def _extract_features(path: str, mtime: float) -> gpd.GeoDataFrame:
    import osmnx

    source = Path(path)
    digest = hashlib.sha256(f"{source.resolve()}:{mtime}".encode()).hexdigest()[:16]
    complete = cache_dir() / "extracts" / f"{source.name.split('.')[0]}-{digest}.osm"
    complete.parent.mkdir(parents=True, exist_ok=True)
    if not complete.exists():
        try:
            dropped = complete_extract(source, complete)
        except (RuntimeError, OSError, ValueError) as exc:
            raise NoldoError(f"cannot read OSM file {source}: {str(exc).strip().splitlines()[0]}") from None
        log.info("%s: dropped %d ways and %d relations with missing members", source.name, *dropped)
    try:
        features = osmnx.features_from_xml(complete, tags=osm_tags())
    except osmnx._errors.InsufficientResponseError:
        features = gpd.GeoDataFrame(geometry=[], crs="EPSG:4326")
    except Exception as exc:  # osmnx/shapely choke on odd data: say which file, no traceback
        raise NoldoError(f"cannot build features from OSM file {source}: {type(exc).__name__}: {exc}") from None
    features.sindex  # noqa: B018 - build the spatial index once, before threads share the frame
    return features


def from_extract(path: str | Path, bounds: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
    """The tagged features of a local extract that intersect ``bounds`` (west, south, east, north)."""
    path = check_extract(path)
    with _lock:  # one conversion per extract, even with many build threads
        features = _extract_features(str(path), path.stat().st_mtime)
    return features.iloc[features.sindex.query(_box(bounds))] if len(features) else features


def from_overpass(url: str, bounds: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
    """The tagged features in ``bounds`` from an Overpass API (osmnx: its cache and rate limiting)."""
    import osmnx
    import requests

    with _lock:  # osmnx settings are module globals
        osmnx.settings.overpass_url = url.rstrip("/")
        osmnx.settings.cache_folder = str(cache_dir() / "osmnx")
        osmnx.settings.log_console = False
        osmnx.settings.requests_kwargs = {"hooks": {"response": [_count_response]}}
        try:
            return osmnx.features_from_bbox(bounds, tags=osm_tags())
        except osmnx._errors.InsufficientResponseError:
            return gpd.GeoDataFrame(geometry=[], crs="EPSG:4326")
        except (requests.RequestException, osmnx._errors.ResponseStatusCodeError) as exc:
            raise NoldoError(f"Overpass at {url} failed: {type(exc).__name__}: {exc}") from None


def _count_response(response, *args, **kwargs) -> None:
    """requests' response hook: every HTTP answer of the Overpass API (status checks included) is a request."""
    count("overpass")


def _box(bounds: tuple[float, float, float, float]):
    from shapely.geometry import box

    return box(*bounds)
