"""--region parsing, the gazetteer and candidate sampling."""

import json
import math
from itertools import islice

import numpy as np
import pytest
from shapely import Point

from noldo.errors import NoldoError
from noldo.regions import MIN_SPACING_KM, candidates, capacity, parse_region, places


def haversine_km(a, b):
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


def test_gazetteer_has_demo_and_a_dozen_real_places():
    names = places()
    assert "demo" in names and len(names) - 1 >= 12
    for place in names.values():
        region = parse_region(place.name)
        assert region.area_km2() > 0


def test_bbox_and_names_are_case_insensitive():
    assert parse_region("MUNICH").spec == "munich"
    region = parse_region(" 11.3, 47.9 ,11.7,48.2 ")
    assert region.geometry.bounds == (11.3, 47.9, 11.7, 48.2)
    assert 950 < region.area_km2() < 1050  # 0.4° × 0.3° at 48° N


def test_geojson_feature_collection_and_multipolygon(tmp_path):
    square = [[[10, 50], [10.2, 50], [10.2, 50.2], [10, 50.2], [10, 50]]]
    other = [[[11, 50], [11.1, 50], [11.1, 50.1], [11, 50.1], [11, 50]]]
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": square}},
        {"type": "Feature", "properties": {}, "geometry": {"type": "MultiPolygon", "coordinates": [other]}}]}
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps(fc))
    region = parse_region(str(path))
    assert region.geometry.geom_type == "MultiPolygon"
    for c in islice(candidates(region), 20):
        assert region.geometry.contains(Point(c.lon, c.lat))


def test_csv_location_table(tmp_path):
    path = tmp_path / "locations.csv"
    path.write_text("lon,lat,id\n11.5,48.1,173\n-74.0,40.7,42\n151.2,-33.9,7\n")
    region = parse_region(str(path))
    found = list(candidates(region, tile_size=32))
    assert [c.key for c in found] == ["0000173", "0000042", "0000007"]
    assert [c.grid.epsg for c in found] == [32632, 32618, 32756]
    assert capacity(region) == 3


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD = [
    ("12,48,11,49", "west 12 is not less than east 11"),
    ("11,49,12,48", "south 49 is not less than north 48"),
    ("11,48,200,49", "longitude 200"),
    ("11,-95,12,48", "latitude -95"),
    ("0,84.5,1,85", "UTM range"),
    ("11,48,12", "four numbers"),
    ("atlantis", "unknown region 'atlantis'"),
    ("", "empty --region"),
    ("missing.geojson", "does not exist"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_region_values(text, message):
    with pytest.raises(NoldoError, match=message):
        parse_region(text)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("broken.geojson", "{not json", "cannot read GeoJSON"),
    ("empty.geojson", '{"type": "FeatureCollection", "features": []}', "no Polygon"),
    ("line.geojson", '{"type": "LineString", "coordinates": [[0, 0], [1, 1]]}', "not an area"),
    ("bowtie.geojson", '{"type": "Polygon", "coordinates": [[[0,0],[1,1],[1,0],[0,1],[0,0]]]}', "invalid polygon"),
    ("flat.geojson", '{"type": "Polygon", "coordinates": [[[0,0],[1,0],[2,0],[0,0]]]}', "invalid polygon|no area"),
    ("hole.geojson", '{"type": "Polygon", "coordinates": []}', "empty"),
    ("projected.geojson", '{"type": "Polygon", "coordinates": [[[500000,0],[500100,0],[500100,100],[500000,0]]]}',
     "outside lon"),
    ("world.geojson", '{"type": "Polygon", "coordinates": [[[-170,0],[170,0],[170,10],[-170,0]]]}', "180°"),
    ("nocols.csv", "x,y\n1,2\n", "needs columns lon,lat"),
    ("nan.csv", "lon,lat\nabc,2\n", "line 2"),
    ("far.csv", "lon,lat\n10,89\n", "UTM range"),
    ("dupes.csv", "lon,lat,id\n1,2,a\n3,4,a\n", "duplicate ids"),
    ("empty.csv", "lon,lat\n", "no rows"),
])
def test_bad_region_files(tmp_path, name, content, message):
    with pytest.raises(NoldoError, match=message):
        parse_region(_write(tmp_path, name, content))


def test_sampling_is_deterministic_spaced_and_inside():
    region = parse_region("demo")
    first = [(c.lon, c.lat, c.day_offset) for c in islice(candidates(region, seed=3), 100)]
    again = [(c.lon, c.lat, c.day_offset) for c in islice(candidates(region, seed=3), 100)]
    other = [(c.lon, c.lat, c.day_offset) for c in islice(candidates(region, seed=4), 100)]
    assert first == again and first != other
    points = np.array([p[:2] for p in first])
    west, south, east, north = region.geometry.bounds
    assert (points[:, 0] >= west).all() and (points[:, 0] <= east).all()
    assert (points[:, 1] >= south).all() and (points[:, 1] <= north).all()
    nearest = min(haversine_km(a, b) for i, a in enumerate(points) for b in points[i + 1:])
    assert nearest >= MIN_SPACING_KM
    assert all(0 <= p[2] < 365 for p in first)


def test_region_fills_up():
    region = parse_region("kotka")  # about 2.2 × 2.2 km
    found = list(candidates(region))
    assert 1 <= len(found) <= capacity(region) + 2
