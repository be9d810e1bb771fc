"""A sample's pixel grid: UTM zone, 10 m pixels on the 10 m lattice, affine transform and bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from affine import Affine
from pyproj import Transformer

from noldo.catalog import PIXEL_SIZE, TILE_SIZE
from noldo.errors import NoldoError

#: UTM is defined up to 84° north; like the issue and SSL4EO-S12 we use the same bound south.
MAX_LATITUDE = 84.0


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid in a projected CRS.

    Example:
        >>> g = sample_grid(11.576, 48.137)  # Munich
        >>> g.epsg, g.shape, g.transform.a
        (32632, (264, 264), 10.0)
    """

    epsg: int
    transform: Affine
    height: int
    width: int

    @property
    def crs(self) -> str:
        """The CRS as an ``EPSG:<code>`` string."""
        return f"EPSG:{self.epsg}"

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        left, top = self.transform.c, self.transform.f
        right, bottom = self.transform @ (self.width, self.height)
        return (left, bottom, right, top)

    @property
    def affine(self) -> tuple[float, ...]:
        """The six transform coefficients in rasterio order (a, b, c, d, e, f)."""
        return tuple(self.transform)[:6]

    def center_lonlat(self) -> tuple[float, float]:
        """Longitude and latitude of the grid centre."""
        x, y = self.transform @ (self.width / 2, self.height / 2)
        return lonlat_transformer(self.epsg).transform(x, y)

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees; west > east when the grid crosses the antimeridian."""
        from rasterio.warp import transform_bounds

        return transform_bounds(self.crs, "EPSG:4326", *self.bounds, densify_pts=21)


@lru_cache(maxsize=256)
def lonlat_transformer(epsg: int) -> Transformer:
    return Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)


@lru_cache(maxsize=256)
def projection_transformer(epsg: int) -> Transformer:
    return Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)


def check_lonlat(lon: float, lat: float) -> None:
    """Raise a clear error unless (lon, lat) is a finite point that UTM covers."""
    try:
        lon, lat = float(lon), float(lat)
    except (TypeError, ValueError):
        raise NoldoError(f"coordinates must be numbers, got lon={lon!r}, lat={lat!r}") from None
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise NoldoError(f"coordinates must be finite, got lon={lon}, lat={lat}")
    if not -180.0 <= lon <= 180.0:
        raise NoldoError(f"longitude {lon} is outside [-180, 180]")
    if not -90.0 <= lat <= 90.0:
        raise NoldoError(f"latitude {lat} is outside [-90, 90]")
    if abs(lat) > MAX_LATITUDE:
        raise NoldoError(f"latitude {lat} is outside the UTM range ±{MAX_LATITUDE:g}°; polar areas are not supported")


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the UTM zone of a point (326zz north, 327zz south), with the Norway and Svalbard exceptions."""
    check_lonlat(lon, lat)
    zone = min(int((lon + 180.0) // 6) + 1, 60)
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        zone = 32  # south-west Norway
    elif 72.0 <= lat <= MAX_LATITUDE and 0.0 <= lon < 42.0:
        zone = 31 if lon < 9.0 else 33 if lon < 21.0 else 35 if lon < 33.0 else 37  # Svalbard
    return (32600 if lat >= 0 else 32700) + zone


def snap(value: float, step: float = PIXEL_SIZE) -> float:
    """Round a coordinate to the nearest multiple of ``step`` (halves round up)."""
    return math.floor(value / step + 0.5) * step


def sample_grid(lon: float, lat: float, size: int = TILE_SIZE, resolution: int = PIXEL_SIZE,
                epsg: int | None = None) -> Grid:
    """The grid of a sample centred on (lon, lat): UTM, ``resolution`` m pixels, ``size`` × ``size``.

    The upper-left corner is the centre minus ``size/2`` pixels, snapped to the ``resolution`` lattice,
    so every grid in a zone shares one pixel lattice. ``epsg`` overrides the zone (e.g. the S2 granule's).
    """
    if size < 1:
        raise NoldoError(f"tile size must be a positive number of pixels, got {size}")
    check_lonlat(lon, lat)
    epsg = utm_epsg(lon, lat) if epsg is None else int(epsg)
    x, y = projection_transformer(epsg).transform(float(lon), float(lat))
    half = size / 2 * resolution
    left, top = snap(x - half, resolution), snap(y + half, resolution)
    return Grid(epsg, Affine(resolution, 0.0, left, 0.0, -resolution, top), size, size)


def grid_from_affine(epsg: int, affine: tuple[float, ...], height: int, width: int) -> Grid:
    """Rebuild a grid from stored values (``crs_epsg`` and ``transform`` arrays)."""
    return Grid(int(epsg), Affine(*affine[:6]), int(height), int(width))
