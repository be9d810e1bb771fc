"""Scenes from ``listImages`` answers, their footprints against a sample, season time windows.

A listing may serve many samples (the samples of one place share it), so a :class:`Scene` holds
nothing of any one sample: how much of a sample a scene images is asked with :func:`coverage` and
:func:`imaged_fraction`. Sentinel-1 slices of one pass are merged into one scene whose ``parts`` are
mosaicked (:func:`merge_passes`).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from noldo.catalog import SEASON_HALF_WINDOW_DAYS, SEASON_MAX_OFFSET_DAYS, SEASONS
from noldo.grid import Grid, lonlat_transformer

#: Sample centres share listings within cells of this lattice (degrees): one listing per cell.
LISTING_CELL_DEG = 0.25
_MGRS_TILE = re.compile(r"_T(\d{2})([C-HJ-NP-X])[A-Z]{2}$")
_CELL_MARGIN_KM = 3.0  # a cell's listing region reaches this far beyond the cell (more than half a tile)


@dataclass(frozen=True)
class Scene:
    """One Earth Engine image as listed by ``listImages`` (or the slices of one S1 pass, in ``parts``)."""

    id: str  # asset id, e.g. COPERNICUS/S2_HARMONIZED/20210403T101021_20210403T101022_T33TUM
    time: datetime  # acquisition start, UTC
    epsg: int | None  # CRS of the first band's native grid
    properties: dict[str, Any] = field(default_factory=dict, compare=False)
    footprint: BaseGeometry | None = field(default=None, compare=False, repr=False)  # lon/lat
    parts: tuple[str, ...] = ()  # asset ids to mosaic (empty: the scene alone)

    @property
    def index(self) -> str:
        """The ``system:index`` (last part of the id); S2, Dynamic World and Cloud Score+ share it."""
        return self.id.rsplit("/", 1)[-1]

    @property
    def assets(self) -> tuple[str, ...]:
        """The asset ids that make the scene's pixels."""
        return self.parts or (self.id,)

    @property
    def label(self) -> str:
        """The ``system:index`` of every asset, for the index: one id, or the slices of a pass joined by ``+``."""
        return "+".join(a.rsplit("/", 1)[-1] for a in self.assets)


def footprint(grid: Grid) -> dict[str, Any]:
    """The sample's outline in lon/lat as a GeoJSON Polygon (corners and edge midpoints)."""
    left, bottom, right, top = grid.bounds
    xs = [left, (left + right) / 2, right, right, right, (left + right) / 2, left, left, left]
    ys = [top, top, top, (top + bottom) / 2, bottom, bottom, bottom, (top + bottom) / 2, top]
    lons, lats = lonlat_transformer(grid.epsg).transform(xs, ys)
    return {"type": "Polygon", "coordinates": [[[round(x, 7), round(y, 7)] for x, y in zip(lons, lats, strict=True)]]}


def listing_cell(lon: float, lat: float) -> tuple[tuple[int, int], dict[str, Any]]:
    """The lattice cell of a sample centre and the GeoJSON region its shared listings cover (the cell plus a
    margin, so every scene that touches any sample centred in the cell is listed; one dict per cell, shared)."""
    cell = int(np.floor(lon / LISTING_CELL_DEG)), int(np.floor(lat / LISTING_CELL_DEG))
    return cell, listing_cell_region(cell)


@lru_cache(maxsize=4096)
def listing_cell_region(cell: tuple[int, int]) -> dict[str, Any]:
    """The region of a lattice cell's listings (see :func:`listing_cell`)."""
    i, j = cell
    dlat = _CELL_MARGIN_KM / 111.0
    middle = (j + 0.5) * LISTING_CELL_DEG
    dlon = dlat / max(np.cos(np.radians(min(abs(middle) + LISTING_CELL_DEG, 89.0))), 0.01)
    region = box(i * LISTING_CELL_DEG - dlon, max(j * LISTING_CELL_DEG - dlat, -90.0),
                 (i + 1) * LISTING_CELL_DEG + dlon, min((j + 1) * LISTING_CELL_DEG + dlat, 90.0))
    return shapely.geometry.mapping(region)


def campaign_span(reference_dates: Sequence[str], jitter: bool) -> tuple[datetime, datetime]:
    """Every day a season window of the recipe can reach, whatever a location's day offset."""
    dates = [datetime.fromisoformat(d).replace(tzinfo=UTC) for d in reference_dates]
    half = timedelta(days=SEASON_HALF_WINDOW_DAYS)
    reach = timedelta(days=SEASON_MAX_OFFSET_DAYS - 1) if jitter else timedelta(0)
    return min(dates) - reach - half, max(dates) + half


def granule_epsg(index: str) -> int | None:
    """The UTM zone of an S2 granule from its MGRS tile (``..._T31UFU`` → EPSG:32631; bands C–M are south):
    a granule is projected in its tile's zone. Dynamic World and Cloud Score+ share the index."""
    match = _MGRS_TILE.search(index)
    if not match:
        return None
    zone, band = int(match[1]), match[2]
    return (32600 if band >= "N" else 32700) + zone


def parse_scenes(assets: Iterable[dict[str, Any]]) -> list[Scene]:
    """Scenes from ``listImages`` assets, sorted by time and id; a granule's CRS comes from its MGRS tile
    (listings leave the bands, and so their grids, out)."""
    assets = list(assets)
    scenes = []
    for asset, geometry in zip(assets, _footprints([a.get("geometry") for a in assets]), strict=True):
        scenes.append(Scene(asset["id"], parse_time(asset["startTime"]), granule_epsg(asset["id"]),
                            asset.get("properties") or {}, geometry))
    return sorted(scenes, key=lambda s: (s.time, s.id))


def by_index(assets: Iterable[dict[str, Any]]) -> dict[str, Scene]:
    """Scenes from ``listImages`` assets by ``system:index`` (to find the twin of an S2 scene)."""
    return {s.index: s for s in parse_scenes(assets)}


def _footprints(geometries: Sequence[dict[str, Any] | None]) -> list[BaseGeometry | None]:
    """A listing's footprints as shapely geometries (not prepared: listings are shared by threads). The
    plain polygons, by far the most common, are made together in one call, the rest by the GeoJSON parser."""
    footprints: list[BaseGeometry | None] = [None] * len(geometries)
    rings, places = [], []
    for k, geojson in enumerate(geometries):
        if not geojson:
            continue
        coordinates = geojson.get("coordinates")
        if geojson.get("type") == "Polygon" and coordinates and len(coordinates) == 1:
            rings.append(coordinates[0])
            places.append(k)
        else:
            footprints[k] = shape(geojson)
    if rings:
        points = np.array([point[:2] for ring in rings for point in ring], dtype="float64")
        which = np.repeat(np.arange(len(rings)), [len(ring) for ring in rings])
        for k, polygon in zip(places, shapely.polygons(shapely.linearrings(points, indices=which)), strict=True):
            footprints[k] = polygon
    return footprints


def merge_passes(scenes: Sequence[Scene]) -> list[Scene]:
    """Sentinel-1 slices of one pass (same platform and datatake) as one scene: the first slice's id and time,
    the union of their footprints, every slice in ``parts`` (in slice order, to be mosaicked)."""
    passes: dict[tuple, list[Scene]] = {}
    for scene in scenes:
        p = scene.properties
        key = (p.get("platform_number"), p.get("missionDataTakeID")) if p.get("missionDataTakeID") else scene.id
        passes.setdefault(key, []).append(scene)
    merged = []
    for slices in passes.values():
        if len(slices) == 1:
            merged.append(slices[0])
            continue
        slices.sort(key=lambda s: (s.properties.get("sliceNumber", 0), s.time))
        shapes = [s.footprint for s in slices if s.footprint is not None]
        union = shapely.union_all(shapes) if len(shapes) == len(slices) else None
        first = min(slices, key=lambda s: s.time)
        merged.append(Scene(first.id, first.time, first.epsg, first.properties, union,
                            tuple(s.id for s in slices)))
    return sorted(merged, key=lambda s: (s.time, s.id))


def touching(scenes: Sequence[Scene], sample: BaseGeometry) -> list[Scene]:
    """The scenes whose footprint intersects the sample (a scene without a footprint is kept)."""
    shapes = [s.footprint for s in scenes]
    hits = shapely.intersects(sample, np.array(shapes, dtype=object)) if shapes else []  # a prepared sample
    return [s for s, shape_, hit in zip(scenes, shapes, hits, strict=True) if hit or shape_ is None]


def within(scenes: Sequence[Scene], windows: Iterable[Window], slack: timedelta = timedelta(0)) -> list[Scene]:
    """The scenes, sorted by time as listings are, whose time falls in any of the windows widened by ``slack``
    (``start - slack <= time < end + slack``), in their order."""
    keep: set[int] = set()
    for start, end in windows:
        keep.update(range(bisect_left(scenes, start - slack, key=_time), bisect_left(scenes, end + slack, key=_time)))
    return [scenes[k] for k in sorted(keep)]


def _time(scene: Scene) -> datetime:
    return scene.time


def coverage(scene: Scene, sample: BaseGeometry) -> float:
    """The share of the sample's area inside the scene's footprint (1 for a scene without a footprint)."""
    return coverages([scene], sample)[0]


def coverages(scenes: Sequence[Scene], sample: BaseGeometry) -> list[float]:
    """:func:`coverage` of each scene, computed together (faster against a prepared ``sample``)."""
    shapes = np.array([s.footprint for s in scenes], dtype=object)
    result = np.ones(len(scenes))
    partial = ~shapely.covered_by(sample, shapes) & (shapes != None)  # noqa: E711 (elementwise)
    if partial.any():
        result[partial] = shapely.area(shapely.intersection(shapes[partial], sample)) / sample.area
    return result.tolist()


def imaged_fraction(scene: Scene | None, grid: Grid, sample: BaseGeometry | None = None) -> float:
    """The share of the grid's pixels whose centre lies inside the scene's footprint (0 without a scene).

    A footprint that covers the ``sample`` outline images every pixel; only a partial scene is
    counted pixel by pixel (centres projected to lon/lat).
    """
    if scene is None:
        return 0.0
    if scene.footprint is None or (sample is not None and scene.footprint.covers(sample)):
        return 1.0
    cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    x, y = grid.transform @ (cols.ravel(), rows.ravel())
    lon, lat = lonlat_transformer(grid.epsg).transform(x, y)
    return round(float(shapely.contains_xy(scene.footprint, lon, lat).mean()), 4)


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp (``2021-04-03T10:10:21.024Z``) as an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def iso(moment: datetime | date) -> str:
    """``2021-04-03T00:00:00Z`` style UTC timestamp for listImages filters and the index."""
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Window = tuple[datetime, datetime]


def season_windows(day_offset: int, seasons: Sequence[int] = (0, 1, 2, 3),
                   reference_dates: Sequence[str] | None = None) -> list[Window]:
    """The SSL4EO-S12 search window of each season: [reference − offset − 15 d, reference − offset + 15 d)."""
    dates = reference_dates or [SEASONS[s].reference_date for s in seasons]
    half = timedelta(days=SEASON_HALF_WINDOW_DAYS)
    windows = []
    for text in dates:
        centre = datetime.fromisoformat(text).replace(tzinfo=UTC) - timedelta(days=day_offset)
        windows.append((centre - half, centre + half))
    return windows


def choose(scenes: Sequence[Scene], window: Window, rank: Callable[[Scene], Any]) -> Scene | None:
    """The best scene acquired inside ``window`` (the largest ``rank``), or None."""
    inside = [s for s in scenes if window[0] <= s.time < window[1]]
    return max(inside, key=rank, default=None)
