"""Regions (``--region``) and the sample locations drawn inside them.

A region is a built-in place name, a bbox ``W,S,E,N`` in degrees, a GeoJSON file (Polygon,
MultiPolygon, Feature or FeatureCollection) or a CSV table of ``lon,lat[,id]`` locations.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from pyproj import Geod
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from noldo.catalog import PIXEL_SIZE, SEASON_MAX_OFFSET_DAYS, TILE_SIZE
from noldo.errors import NoldoError
from noldo.grid import MAX_LATITUDE, Grid, check_lonlat, sample_grid

#: Minimum distance between sample centres (1.5 × the 1,320 m patch radius, the SSL4EO-S12 rule).
MIN_SPACING_KM = 1.98
EARTH_RADIUS_KM = 6371.0
#: Consecutive too-close draws after which a region counts as full.
_MAX_MISSES = 5000
_BATCH = 1024
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_BBOX = re.compile(rf"^\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*$")


@dataclass(frozen=True)
class Place:
    """An entry of the built-in gazetteer."""

    name: str
    bbox: tuple[float, float, float, float]
    description: str


@dataclass(frozen=True)
class Tile:
    """A downstream tile with its own grid (a row of the DW tile table) and label date."""

    key: str
    epsg: int
    bounds: tuple[float, float, float, float]  # left, bottom, right, top in the tile's EPSG
    height: int
    width: int
    date: str | None


@dataclass(frozen=True)
class Region:
    """Where samples come from: an area to draw centres in, a table of locations, or a table of tiles."""

    spec: str  # canonical text, recorded with the build
    geometry: BaseGeometry | None = None  # lon/lat (Multi)Polygon
    locations: tuple[tuple[float, float, str | None], ...] | None = None
    tiles: tuple[Tile, ...] | None = None

    @property
    def tile_shape(self) -> tuple[int, int] | None:
        """The (height, width) every tile of a tile table shares; None for other regions."""
        return (self.tiles[0].height, self.tiles[0].width) if self.tiles else None

    def area_km2(self) -> float:
        """Geodesic area of the region (0 for a location table)."""
        if self.geometry is None:
            return 0.0
        return abs(Geod(ellps="WGS84").geometry_area_perimeter(self.geometry)[0]) / 1e6


@dataclass(frozen=True)
class Candidate:
    """A candidate sample: its place in the candidate stream, centre, grid and season day offset.

    ``given`` holds arrays of the sample that a split already has, when a build adds arrays to it
    (only those the source ``reads``).
    """

    index: int
    key: str  # the id part of the sample id: a zero-padded index or the table's id
    lon: float
    lat: float
    grid: Grid
    day_offset: int
    date: str | None = None  # the label date of a downstream tile
    given: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def sample_id(self, split: str) -> str:
        return f"{split}-{self.key}"


@lru_cache(maxsize=1)
def places() -> dict[str, Place]:
    """The built-in gazetteer, by lower-case name."""
    text = resources.files("noldo").joinpath("data/places.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(text.splitlines())
    return {r["name"]: Place(r["name"], tuple(float(r[k]) for k in ("west", "south", "east", "north")),
                             r["description"]) for r in rows}


def _bbox_region(west: float, south: float, east: float, north: float, spec: str) -> Region:
    for lon, lat in ((west, south), (east, north)):
        check_lonlat(lon, lat)
    if west >= east:
        raise NoldoError(f"bbox {spec!r}: west {west:g} is not less than east {east:g} (a bbox is W,S,E,N; "
                         "regions crossing the antimeridian must be split in two)")
    if south >= north:
        raise NoldoError(f"bbox {spec!r}: south {south:g} is not less than north {north:g} (a bbox is W,S,E,N)")
    return Region(spec, geometry=box(west, south, east, north))


def _check_polygon(geometry: BaseGeometry, where: str) -> BaseGeometry:
    if geometry.is_empty:
        raise NoldoError(f"{where}: the polygon is empty")
    if not geometry.is_valid:
        raise NoldoError(f"{where}: invalid polygon ({explain_validity(geometry)})")
    if geometry.area == 0:
        raise NoldoError(f"{where}: the polygon has no area")
    west, south, east, north = geometry.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise NoldoError(f"{where}: coordinates outside lon [-180, 180] / lat [-90, 90] (is it in EPSG:4326?)")
    if max(abs(south), abs(north)) > MAX_LATITUDE:
        raise NoldoError(f"{where}: reaches beyond ±{MAX_LATITUDE:g}° latitude, outside the UTM range")
    if east - west > 180:
        raise NoldoError(f"{where}: spans more than 180° of longitude; split regions crossing the antimeridian")
    return geometry


def _geojson_region(path: Path) -> Region:
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NoldoError(f"cannot read GeoJSON {path}: {exc}") from None
    features = obj.get("features") if isinstance(obj, dict) and obj.get("type") == "FeatureCollection" else [obj]
    polygons = []
    try:
        for feature in features or []:
            geom = feature.get("geometry") if feature.get("type") == "Feature" else feature
            if geom is None:
                continue
            geometry = shape(geom)
            if geometry.geom_type not in ("Polygon", "MultiPolygon"):
                raise NoldoError(f"{path}: {geometry.geom_type} is not an area; use Polygon or MultiPolygon")
            polygons.append(_check_polygon(geometry, str(path)))
    except (AttributeError, KeyError, TypeError, ValueError, shapely.errors.GEOSException) as exc:
        raise NoldoError(f"{path} is not valid GeoJSON ({exc})") from None
    if not polygons:
        raise NoldoError(f"{path} contains no Polygon or MultiPolygon")
    return Region(f"geojson:{path.resolve()}", geometry=shapely.union_all(polygons))


def _table_region(path: Path) -> Region:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NoldoError(f"cannot read location table {path}: {exc}") from None
    if not rows:
        raise NoldoError(f"location table {path} has no rows")
    columns = {name.strip().lower(): name for name in rows[0] if name}
    if "bound1" in columns or "left" in columns:
        return _tile_region(path, rows, columns)
    lon_col = columns.get("lon") or columns.get("longitude")
    lat_col = columns.get("lat") or columns.get("latitude")
    if not (lon_col and lat_col):
        raise NoldoError(f"location table {path} needs columns lon,lat[,id]; it has {', '.join(columns)}")
    locations = []
    for line, row in enumerate(rows, start=2):
        try:
            lon, lat = float(row[lon_col]), float(row[lat_col])
            check_lonlat(lon, lat)
        except (TypeError, ValueError, NoldoError) as exc:
            raise NoldoError(f"{path}, line {line}: {exc}") from None
        ident = (row.get(columns["id"]) or "").strip() if "id" in columns else ""
        locations.append((lon, lat, ident or None))
    ids = [i for _, _, i in locations if i]
    if len(ids) != len(set(ids)):
        raise NoldoError(f"location table {path} has duplicate ids")
    return Region(f"table:{path.resolve()}", locations=tuple(locations))


def _tile_region(path: Path, rows: list[dict[str, str]], columns: dict[str, str]) -> Region:
    """A DW tile table (center_voids_*.csv: dw_id, crs, bound1..bound4, height, width[, date])."""
    names = {"id": ("dw_id", "id"), "epsg": ("crs", "epsg"), "left": ("bound1", "left"),
             "bottom": ("bound2", "bottom"), "right": ("bound3", "right"), "top": ("bound4", "top"),
             "height": ("height",), "width": ("width",)}
    found = {k: next((columns[c] for c in options if c in columns), None) for k, options in names.items()}
    if missing := [k for k, v in found.items() if v is None]:
        raise NoldoError(f"tile table {path} lacks {', '.join(missing)} (columns dw_id,crs,bound1..bound4,"
                         "height,width[,date])")
    tiles = []
    for line, row in enumerate(rows, start=2):
        try:
            ident = row[found["id"]].strip()
            epsg = int(float(row[found["epsg"]].strip().removeprefix("EPSG:")))
            bounds = tuple(float(row[found[k]]) for k in ("left", "bottom", "right", "top"))
            height, width = int(row[found["height"]]), int(row[found["width"]])
            date = (row.get(columns.get("date", "")) or "").strip() or ident.rsplit("-", 1)[-1]
            digits = date.replace("-", "")
            date = f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}" if re.fullmatch(r"\d{8}", digits) else None
        except (TypeError, ValueError) as exc:
            raise NoldoError(f"{path}, line {line}: {exc}") from None
        if date is None:
            raise NoldoError(f"{path}, line {line}: tile {ident} has no label date (a date column or a "
                             "-YYYYMMDD suffix on dw_id)")
        resolution = ((bounds[2] - bounds[0]) / width, (bounds[3] - bounds[1]) / height)
        if max(abs(r - PIXEL_SIZE) for r in resolution) > 1e-6:
            raise NoldoError(f"{path}, line {line}: tile {ident} has {resolution[0]:g} × {resolution[1]:g} m pixels; "
                             f"noldo grids are {PIXEL_SIZE} m")
        tiles.append(Tile(ident.removeprefix("dw_"), epsg, bounds, height, width, date))
    if not tiles:
        raise NoldoError(f"tile table {path} has no rows")
    if len({(t.height, t.width) for t in tiles}) > 1:
        raise NoldoError(f"tile table {path} mixes tile sizes; build one split per size")
    return Region(f"tiles:{path.resolve()}", tiles=tuple(tiles))


def parse_region(text: str) -> Region:
    """Turn a ``--region`` value into a :class:`Region`, or raise a one-line error naming the problem.

    Example:
        >>> parse_region("11.3,47.9,11.7,48.2").area_km2() > 1000
        True
    """
    text = (text or "").strip()
    if not text:
        raise NoldoError("empty --region: give a place name, a bbox W,S,E,N, a GeoJSON file or a CSV table")
    if match := _BBOX.match(text):
        return _bbox_region(*(float(v) for v in match.groups()), spec=text)
    place = places().get(text.lower())
    if place is not None:
        return _bbox_region(*place.bbox, spec=place.name)
    path = Path(text).expanduser()
    if path.suffix.lower() in (".geojson", ".json", ".csv"):
        if not path.is_file():
            raise NoldoError(f"region file {path} does not exist")
        return _table_region(path) if path.suffix.lower() == ".csv" else _geojson_region(path)
    if "," in text:
        raise NoldoError(f"cannot read {text!r} as a bbox: give four numbers W,S,E,N in degrees")
    raise NoldoError(f"unknown region {text!r}: use a built-in place ({', '.join(list(places())[:5])}, ...; "
                     "see `noldo regions`), a bbox W,S,E,N, a .geojson file or a .csv table of lon,lat[,id]")


def capacity(region: Region, spacing_km: float = MIN_SPACING_KM) -> int:
    """About how many centres ``spacing_km`` apart a region holds (random sequential packing)."""
    if region.locations is not None or region.tiles is not None:
        return len(region.locations or region.tiles)
    perimeter = abs(Geod(ellps="WGS84").geometry_area_perimeter(region.geometry)[1]) / 1e3
    effective = region.area_km2() + perimeter * spacing_km / 2 + math.pi * spacing_km**2 / 4
    return int(0.547 * effective / (math.pi * spacing_km**2 / 4))


def _unit_vectors(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lon), np.radians(lat)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


class _SpacingIndex:
    """Accepted centres on the unit sphere, hashed into cells one spacing wide, for the distance check."""

    def __init__(self, spacing_km: float) -> None:
        self.chord = 2 * math.sin(spacing_km / EARTH_RADIUS_KM / 2)
        self.cells: dict[tuple[int, int, int], list[np.ndarray]] = {}

    def _cell(self, v: np.ndarray) -> tuple[int, int, int]:
        return tuple(int(c) for c in np.floor(v / self.chord))

    def add_if_free(self, v: np.ndarray) -> bool:
        cx, cy, cz = self._cell(v)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dz in (-1, 0, 1):
                    for other in self.cells.get((cx + dx, cy + dy, cz + dz), ()):
                        if np.sum((v - other) ** 2) < self.chord**2:
                            return False
        self.cells.setdefault((cx, cy, cz), []).append(v)
        return True


def candidates(region: Region, seed: int = 0, tile_size: int = TILE_SIZE,
               spacing_km: float = MIN_SPACING_KM) -> Iterator[Candidate]:
    """The deterministic stream of candidate samples of a region for a seed.

    Area regions yield uniformly distributed centres at least ``spacing_km`` apart until the region
    is full; location tables yield their rows in order.
    """
    def offset(index: int) -> int:
        return int(np.random.default_rng([seed, index]).integers(0, SEASON_MAX_OFFSET_DAYS))

    if region.tiles is not None:
        for i, tile in enumerate(region.tiles):
            left, top = tile.bounds[0], tile.bounds[3]
            grid = Grid(tile.epsg, Affine(PIXEL_SIZE, 0.0, left, 0.0, -PIXEL_SIZE, top), tile.height, tile.width)
            lon, lat = grid.center_lonlat()
            yield Candidate(i, tile.key, lon, lat, grid, 0, tile.date)
        return
    if region.locations is not None:
        for i, (lon, lat, ident) in enumerate(region.locations):
            key = f"{int(ident):07d}" if ident and ident.isdigit() else (ident or f"{i:07d}")
            yield Candidate(i, key, lon, lat, sample_grid(lon, lat, tile_size), offset(i))
        return
    rng = np.random.default_rng(seed)
    west, south, east, north = region.geometry.bounds
    z_range = (math.sin(math.radians(south)), math.sin(math.radians(north)))
    index, misses, accepted = _SpacingIndex(spacing_km), 0, 0
    while misses < _MAX_MISSES:
        lon = rng.uniform(west, east, _BATCH)
        lat = np.degrees(np.arcsin(rng.uniform(*z_range, _BATCH)))  # uniform in area
        inside = shapely.contains_xy(region.geometry, lon, lat)
        for x, y, v in zip(lon[inside], lat[inside], _unit_vectors(lon[inside], lat[inside]), strict=True):
            if not index.add_if_free(v):
                misses += 1
                continue
            misses = 0
            yield Candidate(accepted, f"{accepted:07d}", float(x), float(y), sample_grid(x, y, tile_size),
                            offset(accepted))
            accepted += 1
        if not inside.any():
            misses += _BATCH
