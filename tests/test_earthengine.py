"""The Earth Engine source against a loopback server that speaks Earth Engine's REST API.

Credentials are provided the way users provide them (a service-account key file whose token_uri
is the loopback server); the real earthengine-api client runs end to end.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from click.testing import CliRunner

from noldo.cli import cli
from noldo.grid import grid_from_affine
from noldo.sources import earthengine
from noldo.sources.scenes import listing_cell
from noldo.testing.earthengine import Catalogue, FakeEarthEngine, Faults, pixels
from noldo.verify import verify

BBOX = "11.30,48.00,11.50,48.15"
GOLDEN = Path(__file__).parent / "data" / "golden"


@pytest.fixture
def catalogue():
    return Catalogue((11.3, 48.0, 11.5, 48.15), "2019-11-01", "2021-11-01", 32632)


@pytest.fixture
def fake(catalogue, tmp_path, monkeypatch):
    with FakeEarthEngine(catalogue) as server:
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(server.service_account_key(tmp_path)))
        monkeypatch.setenv("NOLDO_EE_RETRY_BASE_SECONDS", "0.01")
        yield server


def run_build(fake, root, *extra, samples=4):
    args = ["build", "--region", BBOX, "--source", "earthengine", "--ee-url", fake.url, "--ee-project", "P",
            "--out", str(root), "--samples", str(samples), "--tile-size", "48", *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def expected(catalogue, array, label, grid):
    """What the server must have served for one season of one modality, after noldo's nodata rules: the
    scene's pixels where it images the grid and its data is valid, nodata everywhere else (a mosaic of the
    slices of an S1 pass, whose values depend only on the datatake)."""
    cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    x, y = grid.transform @ (cols, rows)
    bands = {"s2": ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"],
             "s1": ["VV", "VH"], "dw": ["label"]}[array]
    collection = {"s2": "COPERNICUS/S2_HARMONIZED", "s1": "COPERNICUS/S1_GRD", "dw": "GOOGLE/DYNAMICWORLD/V1"}
    ids = [f"{collection[array]}/{index}" for index in label.split("+")]
    imaged = np.logical_or.reduce([catalogue.imaged(i, x, y, grid.epsg) for i in ids])
    layers = []
    for band in bands:
        values, valid = pixels(ids[0], band, x, y)
        fill = {"s2": 0, "s1": np.nan, "dw": 255}[array]
        layers.append(np.where(valid & imaged, values, fill).astype({"s2": "uint16", "s1": "float32",
                                                                   "dw": "uint8"}[array]))
    return np.stack(layers) if array != "dw" else layers[0]


def assert_served_pixels(catalogue, root):
    group = zarr.open_group(root / "nol.zarr", mode="r")
    index = pd.read_parquet(root / "nol.parquet")
    for i, row in index.iterrows():
        grid = grid_from_affine(group["crs_epsg"][i], group["transform"][i], 48, 48)
        for array in ("s2", "s1", "dw"):
            for t in range(4):
                np.testing.assert_array_equal(group[array][i, t], expected(catalogue, array, row[f"{array}_id_t{t}"],
                                                                           grid), err_msg=f"{array} sample {i} "
                                                                                          f"season {t}")


def same_arrays(a, b, names=("s2", "s1", "dw", "transform", "crs_epsg")):
    ga, gb = zarr.open_group(a / "nol.zarr", mode="r"), zarr.open_group(b / "nol.zarr", mode="r")
    for name in names:
        np.testing.assert_array_equal(ga[name][:], gb[name][:], err_msg=name)


def test_cli_build_with_a_service_account_key(fake, catalogue, tmp_path):
    """The acceptance command, as a user types it: key file in the environment, a real subprocess."""
    env = {**os.environ, "HOME": str(tmp_path)}  # no stored user credentials to fall back on
    proc = subprocess.run([sys.executable, "-m", "noldo", "build", "--region", BBOX, "--source", "earthengine",
                           "--ee-url", fake.url, "--ee-project", "P", "--out", str(tmp_path / "root"),
                           "--samples", "8", "--tile-size", "48"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["samples"] == 8
    assert any(entry[0] == "token" for entry in fake.log), "the key file's token_uri was used"
    assert verify(tmp_path / "root")[0] == []
    assert_served_pixels(catalogue, tmp_path / "root")
    # one listing per collection for every place (all samples here share one lattice cell), one pixel
    # request per sample for every modality and season
    index = pd.read_parquet(tmp_path / "root" / "nol.parquet")
    cells = {listing_cell(lon, lat)[0] for lon, lat in zip(index["lon"], index["lat"], strict=True)}
    assert fake.requests["listImages"] == 4 * len(cells) == 4
    assert fake.requests["computePixels"] == summary["samples"]
    assert summary["requests"] == {"computePixels": 8, "listImages": 4} and summary["requests_per_sample"] == 1.5


def test_an_expired_token_is_refreshed_and_the_request_sent_again(fake, tmp_path):
    """The pixel client authorises with the library's credentials; when the server stops accepting the token
    (it expired early, or was revoked), the client refreshes it once and sends the request again."""
    run_build(fake, tmp_path / "a", samples=2)
    tokens = sum(entry[0] == "token" for entry in fake.log)
    fake.tokens.clear()  # every token issued so far is refused from now on
    summary = run_build(fake, tmp_path / "b", samples=2)
    assert summary["samples"] == 2 and summary["rejected"]["total"] == 0
    assert sum(entry[0] == "token" for entry in fake.log) == tokens + 1, "one refresh, shared by every request"


def test_a_refused_token_stops_the_build(fake, tmp_path, monkeypatch):
    """A 401 that a fresh token does not cure stops the build with the server's message (no rejections)."""
    import google.oauth2.service_account

    run_build(fake, tmp_path / "a", samples=1)
    fake.tokens.clear()
    monkeypatch.setattr(google.oauth2.service_account.Credentials, "refresh",
                        lambda self, request: setattr(self, "token", "revoked"))
    result = CliRunner().invoke(cli, ["build", "--region", BBOX, "--source", "earthengine", "--ee-url", fake.url,
                                      "--ee-project", "P", "--out", str(tmp_path / "b"), "--samples", "2",
                                      "--tile-size", "48"])
    assert result.exit_code == 1
    assert "HTTP 401" in result.output and "invalid authentication credentials" in result.output


def own_zone_choices(catalogue, row, t, grid):
    """The S2 scenes the rule must prefer in season ``t``: own UTM zone, under 20 % cloud, with a Dynamic World
    twin, inside the season window, imaging the whole sample."""
    from noldo.sources.scenes import season_windows

    start, end = season_windows(int(row["day_offset"]))[t]
    cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    x, y = grid.transform @ (cols, rows)
    twins = {i.id.rsplit("/", 1)[1] for i in catalogue.images["GOOGLE/DYNAMICWORLD/V1"]}
    return [i for i in catalogue.images["COPERNICUS/S2_HARMONIZED"] if i.epsg == 32632 and start <= i.time < end
            and i.properties["CLOUDY_PIXEL_PERCENTAGE"] < 20 and i.id.rsplit("/", 1)[1] in twins
            and catalogue.imaged(i.id, x, y, grid.epsg).all()]


def test_scene_choice_and_provenance(fake, tmp_path):
    run_build(fake, tmp_path / "r")
    index = pd.read_parquet(tmp_path / "r" / "nol.parquet")
    group = zarr.open_group(tmp_path / "r" / "nol.zarr", mode="r")
    for i, row in index.iterrows():
        grid = grid_from_affine(group["crs_epsg"][i], group["transform"][i], 48, 48)
        for t in range(4):
            assert row[f"s2_id_t{t}"] == row[f"dw_id_t{t}"], "labels come from the same S2 scene"
            assert row[f"s2_cloud_pct_t{t}"] < 20
            if own_zone_choices(fake.catalogue, row, t, grid):
                assert row[f"s2_epsg_t{t}"] == 32632, "whole scenes in the sample's own UTM zone are preferred"
            assert row[f"s1_id_t{t}"].startswith("S1A_IW_GRDH")
            assert 0 < row[f"dw_valid_t{t}"] < 1 and row[f"s2_valid_t{t}"] == 1
            assert row[f"s2_imaged_t{t}"] == row[f"s1_imaged_t{t}"] == row[f"dw_imaged_t{t}"] == 1
            assert row[f"s2_cloud_id_t{t}"] == row[f"s2_id_t{t}"], "the cloud score of the chosen S2 scene"
        times = [row[f"s2_time_t{t}"] for t in range(4)]
        assert times == sorted(times), "seasons are chronological"
    # the S1 filter on the server and VV+VH on the metadata: every listImages carried the filters
    s1_filters = [f for kind, parent, f in fake.log if kind == "listImages" and parent == "COPERNICUS/S1_GRD"]
    assert s1_filters and all('properties.instrumentMode = "IW"' in f for f in s1_filters)
    s2_filters = [f for kind, parent, f in fake.log if kind == "listImages" and parent == "COPERNICUS/S2_HARMONIZED"]
    assert all("properties.CLOUDY_PIXEL_PERCENTAGE < 20" in f and "intersects(" in f for f in s2_filters)


def test_masked_dynamic_world_pixels_become_255(fake, tmp_path):
    run_build(fake, tmp_path / "r", samples=2)
    dw = zarr.open_group(tmp_path / "r" / "nol.zarr", mode="r")["dw"][:]
    assert (dw == 255).mean() > 0.05, "the server masks about 9% of DW pixels"
    assert set(np.unique(dw)) <= set(range(9)) | {255}


def test_faults_are_retried_and_change_nothing(catalogue, tmp_path, monkeypatch):
    monkeypatch.setenv("NOLDO_EE_RETRY_BASE_SECONDS", "0.01")
    summaries = {}
    for name, rate in (("clean", 0.0), ("faulty", 0.2)):
        with FakeEarthEngine(catalogue, Faults(rate=rate, seed=11)) as server:
            monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(server.service_account_key(tmp_path)))
            summaries[name] = run_build(server, tmp_path / name, samples=24)
            injected = sum(server.faults.counts.values())
    assert injected >= 5
    assert summaries["faulty"]["requests"]["retries"] >= injected - server.faults.counts["slow"]
    assert summaries["faulty"]["samples"] == 24
    same_arrays(tmp_path / "clean", tmp_path / "faulty")
    assert verify(tmp_path / "faulty")[0] == []


def test_size_guard_splits_requests(catalogue, tmp_path, monkeypatch):
    monkeypatch.setenv("NOLDO_EE_RETRY_BASE_SECONDS", "0.01")
    with FakeEarthEngine(catalogue) as server:
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(server.service_account_key(tmp_path)))
        run_build(server, tmp_path / "whole", samples=2)
    limit = 48 * 48 * 3 * 10  # ten uint16 bands of a 48×48 tile, with the server's mask byte
    monkeypatch.setattr(earthengine, "MAX_REQUEST_BYTES", limit)
    with FakeEarthEngine(catalogue, max_bytes=limit) as server:
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(server.service_account_key(tmp_path)))
        summary = run_build(server, tmp_path / "split", samples=2)
        per_pixel = {"s2": 3, "s1": 5, "dw": 2, "s2_cloud": 2}  # bytes per pixel of a band, mask byte included
        sizes = [body["grid"]["dimensions"]["width"] * body["grid"]["dimensions"]["height"]
                 * sum(per_pixel[name.rsplit("_t", 1)[0]] for name in body["bandIds"])
                 for kind, _, body in server.log if kind == "computePixels"]
    assert summary["requests"]["computePixels"] == len(sizes) > 2 * 6, "52 S2 bands alone need six requests"
    assert max(sizes) <= limit
    same_arrays(tmp_path / "whole", tmp_path / "split")


def test_a_band_too_large_for_one_request_is_fetched_in_windows(catalogue, tmp_path, monkeypatch):
    monkeypatch.setenv("NOLDO_EE_RETRY_BASE_SECONDS", "0.01")
    with FakeEarthEngine(catalogue) as server:
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(server.service_account_key(tmp_path)))
        run_build(server, tmp_path / "whole", samples=2)
    limit = 48 * 20 * 2  # less than one uint8 band of a 48×48 tile: every band is cut into windows
    monkeypatch.setattr(earthengine, "MAX_REQUEST_BYTES", limit)
    with FakeEarthEngine(catalogue, max_bytes=limit) as server:
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(server.service_account_key(tmp_path)))
        run_build(server, tmp_path / "windows", samples=2)
        windows = {(body["grid"]["dimensions"]["width"], body["grid"]["dimensions"]["height"])
                   for kind, _, body in server.log if kind == "computePixels"}
    assert (48, 48) not in windows and len(windows) > 1
    same_arrays(tmp_path / "whole", tmp_path / "windows")


def test_missing_modality_rejects_or_is_kept_as_nodata(catalogue, tmp_path, monkeypatch):
    catalogue.images["COPERNICUS/S1_GRD"] = []
    catalogue.by_id = {i.id: i for images in catalogue.images.values() for i in images}
    monkeypatch.setenv("NOLDO_EE_RETRY_BASE_SECONDS", "0.01")
    with FakeEarthEngine(catalogue) as server:
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(server.service_account_key(tmp_path)))
        args = ["build", "--region", BBOX, "--source", "earthengine", "--ee-url", server.url, "--ee-project", "P",
                "--out", str(tmp_path / "strict"), "--samples", "2", "--tile-size", "32"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and "no candidate" in result.stderr and "'s1'" in result.stderr
        log = (tmp_path / "strict/.noldo/nol/rejected.jsonl").read_text().splitlines()
        assert log and all("s1: no IW scene with VV and VH" in line for line in log)
        assert server.requests["computePixels"] == 0, "rejected samples cost no pixel requests"
        summary = run_build(server, tmp_path / "lenient", "--allow-missing", samples=2)
    assert summary["samples"] == 2
    s1 = zarr.open_group(tmp_path / "lenient" / "nol.zarr", mode="r")["s1"][:]
    assert np.isnan(s1).all()
    index = pd.read_parquet(tmp_path / "lenient" / "nol.parquet")
    assert index["s1_id_t0"].isna().all() and (index["s1_valid_t0"] == 0).all()


def test_dry_run_fetches_no_pixels(fake, tmp_path):
    result = CliRunner().invoke(cli, ["build", "--region", BBOX, "--source", "earthengine", "--ee-url", fake.url,
                                      "--ee-project", "P", "--out", str(tmp_path / "none"), "--samples", "3",
                                      "--tile-size", "64", "--dry-run"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["samples"] == 3 and plan["pixel_requests"] == 3, "one request per sample for every modality"
    assert plan["pixel_bytes"] == 3 * 64 * 64 * 4 * (13 * 2 + 2 * 4 + 1 + 1)
    assert len(plan["sample_list"]) == 3 and plan["sample_list"][0]["s2_id_t0"]
    assert fake.requests["computePixels"] == 0 and fake.requests["listImages"] > 0
    assert not (tmp_path / "none").exists()


def test_rebuild_from_a_scene_table(fake, tmp_path):
    run_build(fake, tmp_path / "first", samples=3)
    index = pd.read_parquet(tmp_path / "first" / "nol.parquet")
    locations = tmp_path / "locations.csv"
    locations.write_text("lon,lat,id\n" + "".join(f"{r.lon},{r.lat},{r.candidate}\n" for r in index.itertuples()))
    scenes = tmp_path / "dw_complete_ids.csv"
    scenes.write_text("ids,sub1,sub2,sub3,sub4\n" + "".join(
        f"{r.candidate},{r.s2_id_t0},{r.s2_id_t1},{r.s2_id_t2},{r.s2_id_t3}\n" for r in index.itertuples()))
    args = ["build", "--region", str(locations), "--scenes", str(scenes), "--source", "earthengine",
            "--ee-url", fake.url, "--ee-project", "P", "--out", str(tmp_path / "again"), "--samples", "3",
            "--tile-size", "48"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    same_arrays(tmp_path / "first", tmp_path / "again", names=("s2", "dw", "transform"))
    again = pd.read_parquet(tmp_path / "again" / "nol.parquet")
    assert list(again["s2_id_t2"]) == list(index["s2_id_t2"])


@pytest.mark.parametrize(("setup", "message"), [
    ("no-credentials", "no Earth Engine credentials found: run `earthengine authenticate`"),
    ("missing-key", "does not exist"),
    ("bad-key", "cannot use the service-account key"),
    # the client retries a closed port for ~20 s before it gives up: slow
    pytest.param("closed-port", "cannot reach Earth Engine at http://127.0.0.1:9", marks=pytest.mark.slow),
])
def test_credential_and_endpoint_errors(tmp_path, monkeypatch, setup, message):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata-server probe for application-default credentials
    key = tmp_path / "key.json"
    if setup == "missing-key":
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(key))
    elif setup == "bad-key":
        key.write_text('{"type": "service_account"}')
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(key))
    elif setup == "closed-port":
        with FakeEarthEngine(Catalogue((0, 0, 1, 1), "2020-01-01", "2020-01-02", 32631)) as server:
            monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(server.service_account_key(tmp_path)))
    else:
        monkeypatch.delenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", raising=False)
    monkeypatch.setattr(earthengine, "_client", None)
    result = CliRunner().invoke(cli, ["build", "--region", BBOX, "--source", "earthengine", "--ee-project", "P",
                                      "--ee-url", "http://127.0.0.1:9", "--out", str(tmp_path / "out"),
                                      "--samples", "2"])
    assert result.exit_code == 1
    assert not (tmp_path / "out").exists(), "nothing is written before Earth Engine answers"
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


def test_settings_flags_win_over_environment():
    env = {"NOLDO_EE_PROJECT": "env-project", "NOLDO_EE_URL": "http://env", "NOLDO_EE_CONCURRENCY": "8"}
    assert earthengine.settings_from(environ=env) == earthengine.EESettings(
        project="env-project", url="http://env", concurrency=8)
    flags = earthengine.settings_from("flag-project", "http://flag/", 4, environ=env)
    assert (flags.project, flags.url, flags.concurrency) == ("flag-project", "http://flag", 4)
    assert earthengine.settings_from(environ={}).url == earthengine.HIGH_VOLUME_URL
    with pytest.raises(Exception, match="per-project quota"):
        earthengine.settings_from(concurrency=41, environ={})


def test_expressions_match_golden_files(fake):
    """The serialised expression graphs are what Earth Engine will evaluate: pin them."""
    from noldo.sources import ee_expressions

    earthengine.initialize(earthengine.settings_from("P", fake.url))
    s2 = "COPERNICUS/S2_HARMONIZED/20210403T101021_20210403T101022_T32UPU"
    slices = tuple(f"COPERNICUS/S1_GRD/S1A_IW_GRDH_1SDV_20210402T1700{s}_20210402T1700{s + 25}_037000_045A2C_0000"
                   for s in (0, 25))
    dw = "GOOGLE/DYNAMICWORLD/V1/20210403T101021_20210403T101022_T32UPU"
    graphs = {"s2": [("s2", 0, (s2,))], "s1": [("s1", 0, slices)], "dw": [("dw", 0, (dw,))]}
    for name, layers in graphs.items():
        expression, _ = ee_expressions.request(layers)
        encoded = json.dumps(json.loads(expression), indent=1, sort_keys=True) + "\n"
        golden = GOLDEN / f"{name}_expression.json"
        if os.environ.get("NOLDO_UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(encoded)
        assert encoded == golden.read_text(), f"{name} expression changed; NOLDO_UPDATE_GOLDEN=1 rewrites it"
    unmask = find_call(json.loads((GOLDEN / "dw_expression.json").read_text()), "Image.unmask")
    assert unmask["value"]["functionInvocationValue"]["arguments"]["value"] == {"constantValue": 255}
    assert unmask["input"]["functionInvocationValue"]["functionName"] == "Image.select", "unmask wraps the label"
    for name in graphs:  # nodata outside the footprint too, and the cast after every other step
        graph = json.loads((GOLDEN / f"{name}_expression.json").read_text())
        assert find_call(graph, "Image.unmask")["sameFootprint"] == {"constantValue": False}
        cast = find_call(graph, {"s2": "Image.toUint16", "s1": "Image.toFloat", "dw": "Image.toUint8"}[name])
        assert cast["value"]["functionInvocationValue"]["functionName"] == "Image.unmask"
    assert find_call(json.loads((GOLDEN / "s1_expression.json").read_text()), "ImageCollection.mosaic")


def find_call(node, name):
    """The arguments of the first invocation of ``name`` in a serialised expression."""
    if isinstance(node, dict):
        call = node.get("functionInvocationValue")
        if call and call["functionName"] == name:
            return call["arguments"]
        for value in node.values():
            if (found := find_call(value, name)) is not None:
                return found
    return None


@pytest.mark.live
@pytest.mark.skipif(not os.environ.get("NOLDO_EE_PROJECT"), reason="needs real Earth Engine (NOLDO_EE_PROJECT)")
def test_live_earth_engine(tmp_path):
    result = CliRunner().invoke(cli, ["build", "--region", "munich", "--source", "earthengine",
                                      "--out", str(tmp_path / "live"), "--samples", "1"])
    assert result.exit_code == 0, result.output
    assert verify(tmp_path / "live")[0] == []


def test_downstream_tiles_with_expert_labels(fake, tmp_path):
    import rasterio
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True).transform(11.4, 48.07)
    x, y = round(x, -1), round(y, -1)
    labels_dir = tmp_path / "Experts" / "EH" / "4"
    labels_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, expert = [], {}
    for i, day in enumerate(("20200615", "20200920", "20210302")):
        name = f"dw_{11.4 + i / 100:.10f}_{48.07:.10f}-{day}"
        left, top = x + i * 400, y
        rows.append(f"{name},EH,4,32632,11.4,48.07,{left},{top - 400},{left + 400},{top},40,40")
        if i == 2:
            continue  # no label file: the tile is rejected
        expert[name] = rng.integers(0, 11, (40, 40), dtype="uint8")
        with rasterio.open(labels_dir / f"{name}.tif", "w", driver="GTiff", height=40, width=40, count=1,
                           dtype="uint8", crs="EPSG:32632",
                           transform=rasterio.transform.from_origin(left, top, 10, 10)) as dst:
            dst.write(expert[name], 1)
    table = tmp_path / "center_voids_expert.csv"
    table.write_text("dw_id,hemisphere,biome,crs,center_lon,center_lat,bound1,bound2,bound3,bound4,height,width\n"
                     + "\n".join(rows) + "\n")
    result = CliRunner().invoke(cli, ["build", "--tiles", str(table), "--labels", str(tmp_path / "Experts"),
                                      "--split", "dw_train", "--source", "earthengine", "--ee-url", fake.url,
                                      "--ee-project", "P", "--out", str(tmp_path / "root"), "--allow-partial",
                                      "--max-cloud", "40"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["requested"], summary["samples"], summary["rejected"]["reasons"]) == (3, 2, {"labels": 1})
    group = zarr.open_group(tmp_path / "root" / "dw_train.zarr", mode="r")
    assert group["s2"].shape == (2, 1, 13, 40, 40) and group["dw"].shape == (2, 1, 40, 40)
    index = pd.read_parquet(tmp_path / "root" / "dw_train.parquet")
    for i, row in index.iterrows():
        name = "dw_" + row["sample"].removeprefix("dw_train-")
        raw = expert[name]
        mapped = np.where((raw >= 1) & (raw <= 9), raw.astype(int) - 1, 255)
        np.testing.assert_array_equal(group["dw"][i, 0], mapped)
        label_day = pd.Timestamp(name[-8:], tz="UTC")
        s2_time = pd.Timestamp(row["s2_time_t0"])
        assert abs((s2_time - label_day).days) <= 15 and row["s2_epsg_t0"] == 32632
        grid = grid_from_affine(32632, group["transform"][i], 40, 40)
        np.testing.assert_array_equal(group["s2"][i, 0], expected(fake.catalogue, "s2", row["s2_id_t0"], grid))
    assert verify(tmp_path / "root")[0] == []


def test_season_windows_follow_the_ssl4eo_recipe(monkeypatch):
    from datetime import UTC, datetime

    from noldo.regions import Candidate
    from noldo.sources.ee_source import EarthEngineSource
    from noldo.sources.scenes import season_windows

    windows = season_windows(10)
    assert windows[0] == (datetime(2020, 11, 26, tzinfo=UTC), datetime(2020, 12, 26, tzinfo=UTC))
    assert [w[0].month for w in windows] == [11, 2, 5, 8]
    monkeypatch.delenv("NOLDO_EE_PROJECT", raising=False)
    candidate = Candidate(0, "0000000", 11.4, 48.1, None, day_offset=100)
    dated = EarthEngineSource(season_dates="2023-01-15,2023-04-15,2023-07-15,2023-10-15", jitter=False)
    assert dated._windows(candidate)[2] == (datetime(2023, 6, 30, tzinfo=UTC), datetime(2023, 7, 30, tzinfo=UTC))
    assert EarthEngineSource()._windows(candidate)[0][0] == datetime(2020, 8, 28, tzinfo=UTC)
    with pytest.raises(Exception, match="needs 4 dates"):
        EarthEngineSource(season_dates="2023-01-15")
