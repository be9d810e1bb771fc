"""The Zarr v3 store: layout, round trip, atomic shards, resume and refusal of mismatched layouts."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import noldo
from noldo.catalog import SCHEMA_VERSION
from noldo.errors import NoldoError
from noldo.manifest import write_manifest
from noldo.store import Layout, Split, SplitWriter, remove_split
from tests.helpers import example_arrays, write_example_store

REPO = Path(__file__).resolve().parents[1]


def test_round_trip(example_store):
    root, data = example_store
    ds = noldo.open(root, "nol")
    for name, expected in data.items():
        np.testing.assert_array_equal(ds[name].values, expected, err_msg=name)
    assert ds.sample.values[0] == "nol-0000000" and ds.sizes["sample"] == 70
    assert list(ds.band.values[:4]) == ["B1", "B2", "B3", "B4"]
    assert list(ds.season.values) == ["t0", "t1", "t2", "t3"]
    index = pd.read_parquet(root / "nol.parquet")
    assert list(index["shard"].unique()) == [0, 1] and index["row_in_shard"].iloc[64] == 0


def test_xarray_open_zarr_has_named_dims(example_store):
    root, _ = example_store
    ds = xr.open_zarr(root / "nol.zarr")
    assert ds.s2.dims == ("sample", "season", "band", "y", "x")
    assert ds.s1.dims == ("sample", "season", "polarization", "y", "x")
    assert ds.dw.dims == ("sample", "season", "y", "x")
    assert ds.transform.dims == ("sample", "affine")
    assert ds.attrs["schema_version"] == SCHEMA_VERSION and ds.attrs["provenance"]["source"] == "example"
    assert ds.attrs["legends"]["dw"][0] == {"value": 0, "name": "water", "colour": "#419BDF", "dw_value": None}


def test_zarr_layout_sharded_and_compressed(example_store):
    root, _ = example_store
    s2 = zarr.open_array(root / "nol.zarr" / "s2", mode="r")
    assert s2.metadata.zarr_format == 3
    assert s2.shards == (64, 4, 13, 32, 32) and s2.chunks == (1, 1, 13, 32, 32)
    assert "blosc" in str(s2.metadata.to_dict()["codecs"])
    files = sorted(p.relative_to(root / "nol.zarr" / "s2").as_posix()
                   for p in (root / "nol.zarr" / "s2").rglob("*") if p.is_file())
    assert files == ["c/0/0/0/0/0", "c/1/0/0/0/0", "zarr.json"]


def test_downstream_split_has_one_season(tmp_path):
    data = write_example_store(tmp_path, samples=5, seasons=1, size=24, split="dw_train")
    ds = noldo.open(tmp_path, "dw_train")
    assert ds.s2.shape == (5, 1, 13, 24, 24) and ds.sizes["season"] == 1
    np.testing.assert_array_equal(ds.dw.values, data["dw"])


def test_wrong_shapes_and_dtypes_are_refused(tmp_path):
    layout = Layout(3, 4, 16, 16, ("s2",))
    writer = SplitWriter(tmp_path, "nol", layout, {"source": "test"})
    arrays = example_arrays(layout)
    index = pd.DataFrame({"sample": ["a", "b", "c"]})
    with pytest.raises(NoldoError, match="s2 is int32"):
        writer.write_shard(0, {**arrays, "s2": arrays["s2"].astype("int32")}, index)
    with pytest.raises(NoldoError, match="expected"):
        writer.write_shard(0, {**arrays, "s2": arrays["s2"][:, :2]}, index)
    with pytest.raises(NoldoError, match="3 rows"):
        writer.write_shard(0, arrays, index.iloc[:2])
    with pytest.raises(NoldoError, match="not written yet"):
        writer.finalize()


def test_a_split_shrunk_after_its_first_shard_writes_its_short_last_shard(tmp_path):
    """A build whose region runs out resizes the split after writing shards: the last, short shard must be
    written at the new shape, not the one the writer opened its arrays at."""
    data = example_arrays(Layout(100, 4, 16, 16, ("s2", "s1", "dw")))
    writer = SplitWriter(tmp_path, "nol", Layout(128, 4, 16, 16, ("s2", "s1", "dw")), {"source": "test"})
    names = [f"nol-{i:07d}" for i in range(100)]
    writer.write_shard(0, {k: v[:64] for k, v in data.items()}, pd.DataFrame({"sample": names[:64]}))
    writer.resize(100)
    writer.write_shard(1, {k: v[64:] for k, v in data.items()}, pd.DataFrame({"sample": names[64:]}))
    write_manifest(tmp_path, known_hashes=writer.finalize())
    ds = noldo.open(tmp_path, "nol")
    assert ds.sizes["sample"] == 100
    for name in ("s2", "s1", "dw"):
        np.testing.assert_array_equal(ds[name].values, data[name], err_msg=name)
    assert noldo.verify(tmp_path)[0] == []


def test_different_layout_needs_overwrite(example_store):
    root, _ = example_store
    other = Layout(10, 4, 32, 32, ("s2", "s1", "dw"))
    with pytest.raises(NoldoError, match="--overwrite"):
        SplitWriter(root, "nol", other, {"source": "test"})
    assert Split.open(root, "nol").layout.samples == 70, "the refused writer must not touch the store"
    remove_split(root, "nol")  # what --overwrite does before the writer starts
    SplitWriter(root, "nol", other, {"source": "test"})
    assert Split.open(root, "nol").layout == other
    assert not (root / "nol.parquet").exists()


def test_output_path_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("keep me")
    with pytest.raises(NoldoError, match="not a directory"):
        SplitWriter(target, "nol", Layout(1, 1, 8, 8, ("dw",)), {})
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("name", ["", "Nol", "nol-1", "1nol", "../x"])
def test_invalid_split_names(tmp_path, name):
    with pytest.raises(NoldoError, match="invalid split name"):
        SplitWriter(tmp_path, name, Layout(1, 1, 8, 8, ("dw",)), {})


def test_unknown_split_on_open(example_store):
    root, _ = example_store
    with pytest.raises(NoldoError, match="no split 'dw_test'.*splits: nol"):
        noldo.open(root, "dw_test")


def test_newer_schema_is_refused(example_store):
    root, _ = example_store
    group = zarr.open_group(root / "nol.zarr", mode="r+")
    group.attrs["schema_version"] = 99
    with pytest.raises(NoldoError, match="schema 99.*upgrade noldo"):
        noldo.open(root, "nol")


KILLED_WRITER = textwrap.dedent("""
    import pathlib, sys, time
    sys.path.insert(0, {repo!r})
    _replace = pathlib.Path.replace
    def slow_replace(self, target):  # hold the finished temporary file before its rename
        if str(self).endswith(".partial") and "/c/1/" in str(self):
            time.sleep(60)
        return _replace(self, target)
    pathlib.Path.replace = slow_replace
    from tests.helpers import write_example_store
    write_example_store(pathlib.Path({root!r}))
""")


def test_killed_writer_leaves_no_partial_shard_and_resumes(tmp_path):
    root = tmp_path / "store"
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(repo=str(REPO), root=str(root))])
    try:
        deadline = time.monotonic() + 60
        while not list(root.glob("nol.zarr/*/c/1/**/*.partial")):
            assert child.poll() is None and time.monotonic() < deadline, "writer never reached shard 1"
            time.sleep(0.01)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    # Killed in the middle of shard 1 of s2: the temporary file exists, the final name does not.
    shard = root / "nol.zarr/s2/c/1/0/0/0/0"
    assert list(shard.parent.glob("0.*.partial")) and not shard.exists()
    # Every visible shard decodes, and shard 0 is intact.
    expected = example_arrays(Layout(70, 4, 32, 32, ("s2", "s1", "dw")))
    group = zarr.open_group(root / "nol.zarr", mode="r")
    np.testing.assert_array_equal(group["s2"][:64], expected["s2"][:64])
    # Re-running finishes the job; the result equals an uninterrupted write.
    data = write_example_store(root)
    assert not list(root.rglob("*.partial"))
    ds = noldo.open(root, "nol")
    for name, values in data.items():
        np.testing.assert_array_equal(ds[name].values, values)
    problems, _ = noldo.verify(root)
    assert problems == []
