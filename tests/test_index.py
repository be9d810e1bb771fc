"""Schema 1.1: the GeoParquet index with footprints, CF attributes and times in xarray, and the upgrade of
schema-1.0 stores (tests/data/schema1-store was written by noldo before schema 1.1, see tests/data/README)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import xarray as xr
import zarr
from click.testing import CliRunner
from shapely.geometry import Point

import noldo
from noldo.catalog import SCHEMA_MINOR, SCHEMA_VERSION
from noldo.cli import cli
from noldo.grid import sample_grid
from noldo.index import acquisition_times, footprint, footprints
from noldo.store import Split, consolidate, write_derived
from noldo.upgrade import upgrade
from noldo.verify import verify
from tests.helpers import write_store_with_nodata

OLD_STORE = Path(__file__).parent / "data" / "schema1-store"


def test_a_footprint_is_the_grid_outline_in_lon_lat():
    grid = sample_grid(11.576, 48.137)
    shape = footprint(grid)
    assert shape.geom_type == "Polygon" and shape.is_valid
    assert shape.contains(Point(*grid.center_lonlat()))
    west, south, east, north = grid.lonlat_bounds()
    assert np.allclose(shape.bounds, (west, south, east, north), atol=1e-6)
    assert footprints([grid, sample_grid(-70.0, -33.4)])[0].equals(shape), "vectorised zones give the same outline"


def test_a_footprint_across_the_antimeridian_is_split_in_two():
    shape = footprint(sample_grid(179.995, 10.0))
    assert shape.geom_type == "MultiPolygon" and shape.is_valid
    west, east = sorted(shape.geoms, key=lambda p: p.bounds[0])
    assert west.bounds[0] == -180.0 and east.bounds[2] == 180.0
    assert max(p.bounds[2] - p.bounds[0] for p in shape.geoms) < 0.03, "no polygon spans the globe"


def test_acquisition_times_prefer_the_scene_time_and_give_nat_where_a_season_has_none():
    frame = pd.DataFrame({"s2_time_t0": ["2021-03-01T10:31:07Z", None, None],
                          "s2_id_t0": ["20210301T103021_20210301T103531_T31UFU", None, "20200420T103021_x_T31UFU"],
                          "date_t1": ["2021-06-01", "2021-06-03", None]})
    times = acquisition_times(frame, 2)
    assert times.dtype == np.dtype("datetime64[s]") and times.shape == (3, 2)
    assert times[0, 0] == np.datetime64("2021-03-01T10:31:07") and np.isnat(times[1, 0])
    assert times[2, 0] == np.datetime64("2020-04-20T10:30:21"), "the sensing start of the scene id"
    assert times[1, 1] == np.datetime64("2021-06-03T12:00:00"), "a day without a time is taken at noon UTC"


def test_the_index_is_geoparquet_1_1_with_footprints_and_bbox(synthetic_store):
    root = synthetic_store(samples=20, tile_size=40)
    frame = gpd.read_parquet(root / "nol.parquet")
    split = Split.open(root, "nol")
    assert len(frame) == 20 and frame.crs.to_epsg() == 4326
    assert list(frame["sample"]) == split.ids(), "row order unchanged"
    for shape, grid in zip(frame.geometry, split.grids(), strict=True):
        assert shape.contains(Point(*grid.center_lonlat()))
    geo = json.loads(pq.read_schema(root / "nol.parquet").metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    plain = pd.read_parquet(root / "nol.parquet")
    assert plain["bbox"].iloc[0]["xmin"] == pytest.approx(frame.geometry.iloc[0].bounds[0])
    assert set(split.index().columns) == set(plain.columns) - {"geometry", "bbox"}, "all the other columns kept"
    assert split.geo_index().geometry.equals(frame.geometry)


def test_xarray_masks_nodata_and_decodes_times(tmp_path):
    data = write_store_with_nodata(tmp_path)
    ds = xr.open_zarr(tmp_path / "nol.zarr")
    for name, nodata in (("s2", data["s2"] == 0), ("s1", np.isnan(data["s1"])), ("dw", data["dw"] == 255)):
        np.testing.assert_array_equal(np.isnan(ds[name].values), nodata, err_msg=name)
        np.testing.assert_array_equal(ds[name].values[~nodata], data[name][~nodata], err_msg=name)
    assert ds.time.values[0, 0] == np.datetime64("2021-01-05T10:00:00") and np.isnat(ds.time.values[1:]).all()
    assert noldo.open(tmp_path, mask=False).s2.dtype == np.uint16, "the stored integers on request"


def test_cf_attributes_and_a_time_coordinate_for_groupby(synthetic_store):
    root = synthetic_store(samples=20, tile_size=40)
    ds = xr.open_zarr(root / "nol.zarr")
    assert ds.time.dtype.kind == "M" and ds.time.dims == ("sample", "season") and "time" in ds.coords
    expected = acquisition_times(Split.open(root, "nol").index(), 4)
    np.testing.assert_array_equal(ds.time.values.astype("datetime64[s]"), expected)
    assert ds.s1.attrs["units"] == "dB" and ds.center_lon.attrs["standard_name"] == "longitude"
    assert ds.dw.attrs["flag_values"][:2] == [0, 1] and ds.dw.attrs["flag_meanings"].split()[:2] == ["water", "trees"]
    seasonal = noldo.open(root).s2.sel(band="B4").mean(["y", "x"]).groupby("time.season").mean()
    assert set(seasonal.season.values) <= {"DJF", "MAM", "JJA", "SON"} and len(seasonal.season) > 1


def test_a_schema_1_store_opens_verifies_and_upgrades(tmp_path):
    root = tmp_path / "old"
    shutil.copytree(OLD_STORE, root)
    assert Split.open(root, "nol").attrs["schema_version"] == 1 and "schema_minor" not in Split.open(root, "nol").attrs
    assert verify(root)[1]["ok"], "an old store still verifies"
    old = noldo.open(root)
    assert np.isnan(old.dw.values).any() and not np.isnat(old.time.values).all(), "masked, with times from the index"
    assert Split.open(root, "nol").geo_index().geometry.is_valid.all()

    result = CliRunner().invoke(cli, ["upgrade", str(root)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"upgraded": ["dw_train", "nol"], "current": []}
    problems, _ = verify(root)
    assert not problems, problems
    new = xr.open_zarr(root / "nol.zarr")
    assert (new.attrs["schema_version"], new.attrs["schema_minor"]) == (SCHEMA_VERSION, SCHEMA_MINOR)
    np.testing.assert_array_equal(np.isnan(new.dw.values), np.isnan(old.dw.values))
    np.testing.assert_array_equal(new.time.values, old.time.values)
    assert len(gpd.read_parquet(root / "nol.parquet")) == 3
    again = CliRunner().invoke(cli, ["upgrade", str(root)])
    assert json.loads(again.output) == {"upgraded": [], "current": ["dw_train", "nol"]}


def test_verify_names_upgrade_for_an_index_without_footprints(synthetic_store):
    root = synthetic_store(samples=20, tile_size=40, copy=True)
    pd.read_parquet(root / "nol.parquet").drop(columns=["geometry", "bbox"]).to_parquet(root / "nol.parquet")
    problems, _ = verify(root)
    assert any("no sample footprints" in str(p) and "noldo upgrade" in p.repair for p in problems), problems
    assert CliRunner().invoke(cli, ["upgrade", str(root)]).exit_code == 0
    assert [p for p in verify(root)[0] if "footprints" in str(p)] == []


def test_an_interrupted_upgrade_is_finished_by_running_it_again(tmp_path, monkeypatch):
    root = tmp_path / "old"
    shutil.copytree(OLD_STORE, root)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("noldo.upgrade.refresh_manifest", stopped)
    with pytest.raises(KeyboardInterrupt):
        upgrade(root)
    assert not verify(root)[1]["ok"], "stopped before its manifest: the new metadata is not listed yet"
    monkeypatch.undo()
    assert upgrade(root) == {"upgraded": [], "current": ["dw_train", "nol"]}
    problems, _ = verify(root)
    assert not problems, problems


def test_an_older_split_finalised_again_is_still_masked(tmp_path):
    """Adding an array to a schema-1.0 split finalises it again (the time array appears); arrays without a
    _FillValue are still masked by noldo.open."""
    root = tmp_path / "old"
    shutil.copytree(OLD_STORE, root)
    split = Split.open(root, "nol")
    group = zarr.open_group(root / "nol.zarr", mode="r+", use_consolidated=False)
    write_derived(split.location, "nol", group, split.layout, split.index())
    consolidate(split.location, "nol")
    ds = noldo.open(root)
    assert "time" in ds.coords and np.isnan(ds.dw.values).any()
    assert not (ds.dw.values == 255).any()
