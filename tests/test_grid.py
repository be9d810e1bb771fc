"""Per-sample UTM grids."""

import math

import pytest

from noldo.errors import NoldoError
from noldo.grid import grid_from_affine, sample_grid, utm_epsg


@pytest.mark.parametrize(("lon", "lat", "epsg"), [
    (11.576, 48.137, 32632),     # Munich
    (-74.0, 40.7, 32618),        # New York
    (151.2, -33.9, 32756),       # Sydney, southern hemisphere
    (0.0, 0.0, 32631),           # zone border at the equator
    (-0.0001, 51.5, 32630),      # just west of the Greenwich zone border
    (5.3, 60.4, 32632),          # Bergen: south-west Norway exception (would be 31)
    (2.9, 60.4, 32631),          # west of the exception
    (15.6, 78.2, 32633),         # Longyearbyen, Svalbard
    (8.9, 79.0, 32631),          # Svalbard west
    (25.0, 79.0, 32635),
    (40.0, 80.0, 32637),
    (180.0, 10.0, 32660),        # antimeridian belongs to zone 60
    (-180.0, -10.0, 32701),
])
def test_utm_zone(lon, lat, epsg):
    assert utm_epsg(lon, lat) == epsg


def test_grid_is_snapped_and_sized():
    g = sample_grid(11.576, 48.137)
    assert g.shape == (264, 264)
    assert g.transform.a == 10 and g.transform.e == -10 and g.transform.b == g.transform.d == 0
    assert g.transform.c % 10 == 0 and g.transform.f % 10 == 0
    left, bottom, right, top = g.bounds
    assert (right - left, top - bottom) == (2640, 2640)
    lon, lat = g.center_lonlat()
    assert abs(lon - 11.576) < 1e-3 and abs(lat - 48.137) < 1e-3


def test_upper_left_is_centre_minus_half_size_rounded():
    from pyproj import Transformer

    lon, lat = 7.123456, 50.654321
    g = sample_grid(lon, lat, size=100)
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True).transform(lon, lat)
    assert g.transform.c == round((x - 500) / 10) * 10
    assert g.transform.f == round((y + 500) / 10) * 10


def test_nearby_centres_share_the_pixel_lattice():
    a, b = sample_grid(11.0, 48.0), sample_grid(11.0123, 48.0071)
    assert (a.transform.c - b.transform.c) % 10 == 0 and (a.transform.f - b.transform.f) % 10 == 0


def test_antimeridian_grid():
    g = sample_grid(179.999, 0.5)
    west, south, east, north = g.lonlat_bounds()
    assert g.epsg == 32660
    assert west > east, "a grid crossing the antimeridian has west > east"
    assert 179.9 < west <= 180 and -180 <= east < -179.9 and south < 0.5 < north


def test_epsg_override_and_rebuild():
    g = sample_grid(12.01, 48.0, epsg=32632)  # zone 33 by longitude, forced to the neighbour zone
    assert g.epsg == 32632
    assert grid_from_affine(g.epsg, g.affine, *g.shape) == g


@pytest.mark.parametrize(("lon", "lat", "message"), [
    (0, 84.5, "UTM range"),
    (0, -85, "UTM range"),
    (181, 0, "longitude"),
    (-180.5, 0, "longitude"),
    (0, 91, "latitude"),
    (math.nan, 0, "finite"),
    (0, math.inf, "finite"),
    ("east", 0, "numbers"),
])
def test_invalid_coordinates(lon, lat, message):
    with pytest.raises(NoldoError, match=message):
        sample_grid(lon, lat)


def test_invalid_size():
    with pytest.raises(NoldoError, match="tile size"):
        sample_grid(0, 0, size=0)
