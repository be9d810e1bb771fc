"""Scene metadata from ``listImages`` answers, season time windows and the footprint of a sample."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any

import shapely
from shapely.geometry import shape

from noldo.catalog import SEASON_HALF_WINDOW_DAYS, SEASONS
from noldo.grid import Grid, lonlat_transformer


@dataclass(frozen=True)
class Scene:
    """One Earth Engine image as listed by ``listImages``."""

    id: str  # asset id, e.g. COPERNICUS/S2_HARMONIZED/20210403T101021_20210403T101022_T33TUM
    time: datetime  # acquisition start, UTC
    epsg: int | None  # CRS of the first band's native grid
    covers_sample: bool | None = None  # known coverage, or None to derive it from the footprints below
    properties: dict[str, Any] = field(default_factory=dict, compare=False)
    footprint: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    sample: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @cached_property
    def covers(self) -> bool:
        """The footprint contains the whole sample (computed only for scenes that are candidates)."""
        if self.covers_sample is not None:
            return self.covers_sample
        return bool(self.footprint) and shapely.covers(shape(self.footprint), shape(self.sample))

    @property
    def index(self) -> str:
        """The ``system:index`` (last part of the id); S2 and Dynamic World share it."""
        return self.id.rsplit("/", 1)[-1]


def footprint(grid: Grid) -> dict[str, Any]:
    """The sample's outline in lon/lat as a GeoJSON Polygon (corners and edge midpoints)."""
    left, bottom, right, top = grid.bounds
    xs = [left, (left + right) / 2, right, right, right, (left + right) / 2, left, left, left]
    ys = [top, top, top, (top + bottom) / 2, bottom, bottom, bottom, (top + bottom) / 2, top]
    lons, lats = lonlat_transformer(grid.epsg).transform(xs, ys)
    return {"type": "Polygon", "coordinates": [[[round(x, 7), round(y, 7)] for x, y in zip(lons, lats, strict=True)]]}


def parse_scenes(assets: Iterable[dict[str, Any]], sample: dict[str, Any]) -> list[Scene]:
    """Scenes from ``listImages`` assets; ``covers`` tells whether each footprint holds the whole sample."""
    scenes = []
    for asset in assets:
        bands = asset.get("bands") or [{}]
        crs = (bands[0].get("grid") or {}).get("crsCode", "")
        scenes.append(Scene(asset["id"], parse_time(asset["startTime"]),
                            int(crs.split(":")[1]) if crs.startswith("EPSG:") else None, None,
                            asset.get("properties") or {}, asset.get("geometry"), sample))
    return sorted(scenes, key=lambda s: (s.time, s.id))


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
