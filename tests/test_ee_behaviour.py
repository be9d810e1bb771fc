"""Earth Engine as it really behaves: partial scenes, S1 slice boundaries, cross-zone granules, one quota per
project across a dask cluster, and few requests per sample — against the loopback server."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely
import zarr
from click.testing import CliRunner

from noldo.cli import cli
from noldo.grid import grid_from_affine
from noldo.testing.earthengine import Catalogue, FakeEarthEngine
from noldo.verify import verify
from tests.test_earthengine import expected

BBOX = "11.30,48.00,11.50,48.15"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One loopback Earth Engine for the module (a server takes half a second to stop)."""
    folder = tmp_path_factory.mktemp("ee")
    with FakeEarthEngine(Catalogue((11.3, 48.0, 11.5, 48.15), "2019-11-01", "2021-11-01", 32632)) as fake:
        fake.key = fake.service_account_key(folder)
        yield fake


@pytest.fixture
def ee_env(server, monkeypatch):
    monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(server.key))
    monkeypatch.setenv("NOLDO_EE_RETRY_BASE_SECONDS", "0.01")
    return server


def build(server, root, *extra, samples=20, tile=48, region=BBOX):
    result = CliRunner().invoke(cli, ["build", "--region", region, "--source", "earthengine", "--ee-url", server.url,
                                      "--ee-project", "P", "--out", str(root), "--samples", str(samples),
                                      "--tile-size", str(tile), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def rows_and_grids(root, tile=48):
    group = zarr.open_group(root / "nol.zarr", mode="r")
    index = pd.read_parquet(root / "nol.parquet")
    return group, index, [grid_from_affine(group["crs_epsg"][i], group["transform"][i], tile, tile)
                          for i in range(len(index))]


@pytest.fixture
def partial_server(tmp_path, monkeypatch):
    """A catalogue in which every S2 granule (and its twins) of June and July 2021 (season t2 without jitter)
    images only the west of the area: samples on the swath edge have no whole scene in that season."""
    catalogue = Catalogue((11.3, 48.0, 11.5, 48.15), "2019-11-01", "2021-11-01", 32632)
    for collection in ("COPERNICUS/S2_HARMONIZED", "GOOGLE/DYNAMICWORLD/V1",
                       "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED"):
        for image in catalogue.images[collection]:
            if image.time.strftime("%Y-%m") in ("2021-06", "2021-07"):
                image.footprint = catalogue.swath_edge
    with FakeEarthEngine(catalogue) as fake:
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(fake.service_account_key(tmp_path)))
        monkeypatch.setenv("NOLDO_EE_RETRY_BASE_SECONDS", "0.01")
        yield fake


def points_on_the_swath_edge(folder, catalogue):
    """A location table: six samples on the swath edge (partly imaged in June), three well west of it (whole)."""
    edge = catalogue.swath_edge.boundary.intersection(shapely.geometry.box(11.3, 48.02, 11.5, 48.13))
    on = [edge.interpolate(f, normalized=True) for f in np.linspace(0.1, 0.9, 6)]
    rows = [(p.x, p.y) for p in on] + [(11.31, 48.03 + 0.03 * k) for k in range(3)]
    table = folder / "edge.csv"
    table.write_text("lon,lat\n" + "".join(f"{lon:.6f},{lat:.6f}\n" for lon, lat in rows))
    return str(table)


def test_partly_imaged_samples_get_nodata_exactly_where_unimaged(partial_server, tmp_path):
    ee_env = partial_server
    region = points_on_the_swath_edge(tmp_path, ee_env.catalogue)
    build(ee_env, tmp_path / "partial", "--allow-partial", "--no-jitter", samples=9, region=region)
    group, index, grids = rows_and_grids(tmp_path / "partial")
    partial = [(i, t) for i in range(len(index)) for t in range(4) if index.loc[i, f"s2_imaged_t{t}"] < 1]
    assert partial, "the swath-edge granules leave some samples partly unimaged"
    for i, t in partial:
        row, grid = index.loc[i], grids[i]
        for array in ("s2", "s1", "dw"):
            np.testing.assert_array_equal(group[array][i, t], expected(ee_env.catalogue, array,
                                                                       row[f"{array}_id_t{t}"], grid))
        cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
        imaged = ee_env.catalogue.imaged(f"GOOGLE/DYNAMICWORLD/V1/{row[f'dw_id_t{t}']}",
                                         *(grid.transform @ (cols, rows)), grid.epsg)
        assert (group["dw"][i, t][~imaged] == 255).all(), "never class 0 (water) where the scene has no pixel"
        assert (group["s2_cloud"][i, t][~imaged] == 255).all()
        assert row[f"dw_imaged_t{t}"] == pytest.approx(imaged.mean(), abs=1e-4)
        assert row[f"dw_valid_t{t}"] <= row[f"dw_imaged_t{t}"]
    assert verify(tmp_path / "partial")[0] == []
    strict = build(ee_env, tmp_path / "strict", "--no-jitter", samples=9, region=region)
    log = (tmp_path / "strict/.noldo/nol/rejected.jsonl").read_text()
    assert strict["rejected"]["total"] > 0 and "no scene covers the sample in season t" in log
    _, strict_index, _ = rows_and_grids(tmp_path / "strict")
    imaged = strict_index[[f"{a}_imaged_t{t}" for a in ("s2", "s1", "dw") for t in range(4)]].to_numpy()
    assert (imaged == 1).all(), "without --allow-partial every stored sample is whole"
    assert verify(tmp_path / "strict")[0] == []


def test_a_sample_on_a_slice_boundary_is_whole(ee_env, tmp_path):
    build(ee_env, tmp_path / "passes", samples=30)
    group, index, grids = rows_and_grids(tmp_path / "passes")
    straddling = []
    for i, grid in enumerate(grids):
        cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
        x, y = grid.transform @ (cols, rows)
        for t in range(4):
            slices = [f"COPERNICUS/S1_GRD/{s}" for s in index.loc[i, f"s1_id_t{t}"].split("+")]
            alone = [ee_env.catalogue.imaged(s, x, y, grid.epsg) for s in slices]
            if len(slices) > 1 and not any(a.all() for a in alone):
                straddling.append((i, t))
                np.testing.assert_array_equal(group["s1"][i, t], expected(ee_env.catalogue, "s1",
                                                                          index.loc[i, f"s1_id_t{t}"], grid))
                assert index.loc[i, f"s1_imaged_t{t}"] == 1 and np.isfinite(group["s1"][i, t]).mean() > 0.9
    assert straddling, "some samples lie across a boundary between two slices of a pass"


def test_a_published_scene_from_another_zone_keeps_its_grid(ee_env, tmp_path):
    other = next(i for i in ee_env.catalogue.images["COPERNICUS/S2_HARMONIZED"]
                 if i.epsg == 32633 and i.properties["CLOUDY_PIXEL_PERCENTAGE"] < 20
                 and i.time.strftime("%Y-%m") == "2020-06")
    index = other.id.rsplit("/", 1)[1]
    locations = tmp_path / "locations.csv"
    locations.write_text("lon,lat,id\n11.40,48.07,7\n")
    scenes = tmp_path / "ids.csv"
    scenes.write_text(f"ids,sub1,sub2,sub3,sub4\n7,{index},{index},{index},{index}\n")
    result = CliRunner().invoke(cli, ["build", "--region", str(locations), "--scenes", str(scenes), "--source",
                                      "earthengine", "--ee-url", ee_env.url, "--ee-project", "P", "--out",
                                      str(tmp_path / "rebuilt"), "--tile-size", "48", "--allow-missing",
                                      "--allow-partial"])
    assert result.exit_code == 0, result.output
    group = zarr.open_group(tmp_path / "rebuilt" / "nol.zarr", mode="r")
    assert group["crs_epsg"][0] == 32633, "the grid of the published granule's zone (T33…), not the location's"
    row = pd.read_parquet(tmp_path / "rebuilt" / "nol.parquet").iloc[0]
    assert row["s2_id_t0"] == index and row["s2_epsg_t0"] == 32633


def test_a_regional_build_takes_at_most_2_5_requests_per_sample_and_the_arrays_of_one_per_modality(tmp_path,
                                                                                                      monkeypatch):
    """200 samples of a region: listings shared by the samples of each place and one pixel request per sample
    for every modality and season; the arrays equal those of one pixel request per modality."""
    catalogue = Catalogue((11.0, 47.8, 11.6, 48.3), "2019-11-01", "2021-11-01", 32632)
    with FakeEarthEngine(catalogue) as fake:
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(fake.service_account_key(tmp_path)))
        monkeypatch.setenv("NOLDO_EE_RETRY_BASE_SECONDS", "0.01")
        region = "11.0,47.8,11.6,48.3"
        combined = build(fake, tmp_path / "combined", samples=200, tile=16, region=region)
        apart = build(fake, tmp_path / "apart", "--no-ee-combine", samples=200, tile=16, region=region)
    assert combined["samples"] == 200 and combined["requests_per_sample"] <= 2.5, combined["requests"]
    assert apart["requests"]["computePixels"] == 4 * apart["samples"], "one request per modality"
    a, b = (zarr.open_group(tmp_path / n / "nol.zarr", mode="r") for n in ("combined", "apart"))
    for name in ("s2", "s1", "dw", "s2_cloud", "transform"):
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)


def test_one_quota_across_the_workers_of_a_cluster(tmp_path, monkeypatch):
    """Three worker processes, --ee-concurrency 4 and --ee-rate 20: the server never sees more than 4 requests
    in flight, nor more than 20 started in any second."""
    from distributed import LocalCluster

    catalogue = Catalogue((11.3, 48.0, 11.5, 48.15), "2019-11-01", "2021-11-01", 32632)
    with FakeEarthEngine(catalogue, latency=0.05) as fake:
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(fake.service_account_key(tmp_path)))
        monkeypatch.setenv("NOLDO_EE_RETRY_BASE_SECONDS", "0.01")
        with LocalCluster(n_workers=3, threads_per_worker=4, processes=True, dashboard_address=None) as cluster:
            summary = build(fake, tmp_path / "cluster", "--scheduler", cluster.scheduler_address,
                            "--ee-concurrency", "4", "--ee-rate", "20", samples=24, tile=32)
        assert summary["samples"] == 24
        assert 1 < fake.max_in_flight <= 4, fake.max_in_flight
        assert max(fake.per_second.values()) <= 20, dict(fake.per_second)
    assert verify(tmp_path / "cluster")[0] == []
