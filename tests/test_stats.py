"""`noldo stats`: statistics equal to numpy over the whole arrays, kept in the split's attributes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from noldo import catalog
from noldo.cli import cli
from noldo.stats import PERCENTILES, S1_BIN_WIDTH, compute
from noldo.store import Split
from noldo.verify import verify
from tests.helpers import write_store_with_nodata


@pytest.fixture(scope="module")
def computed(synthetic_store):
    root = synthetic_store(samples=70, tile_size=24, copy=True)  # two shards, the second partial
    result = CliRunner().invoke(cli, ["stats", str(root), "--split", "nol", "--json", "--workers", "2"])
    assert result.exit_code == 0, result.output
    return root, json.loads(result.output)


def _expected(values: np.ndarray) -> dict[str, float]:
    return {"count": values.size, "mean": values.astype("float64").mean(), "std": values.astype("float64").std(),
            "min": values.min(), "max": values.max(),
            **{f"p{p}": np.percentile(values, p, method="inverted_cdf") for p in PERCENTILES}}


def test_s2_statistics_are_exact_over_valid_pixels(computed):
    root, result = computed
    stored = Split.open(root, "nol").group()["s2"][:]
    for band in catalog.S2_BANDS:
        values = stored[:, :, band.index].ravel()
        values = values[values != 0]
        expected, got = _expected(values), result["s2"][band.name]
        assert got["count"] == expected["count"]
        for key in ("min", "max", *(f"p{p}" for p in PERCENTILES)):
            assert got[key] == expected[key], (band.name, key)
        assert got["mean"] == pytest.approx(expected["mean"], abs=1e-6)
        assert got["std"] == pytest.approx(expected["std"], abs=1e-6)


def test_s1_percentiles_are_within_the_bin_width_and_the_rest_exact(computed):
    root, result = computed
    s1 = Split.open(root, "nol").group()["s1"][:]
    for band in catalog.S1_BANDS:
        values = s1[:, :, band.index].ravel()
        values = values[~np.isnan(values)]
        expected, got = _expected(values), result["s1"][band.name]
        assert got["count"] == expected["count"]
        for key in ("mean", "std", "min", "max"):
            assert got[key] == pytest.approx(float(expected[key]), abs=1e-5), key
        for p in PERCENTILES:
            assert abs(got[f"p{p}"] - float(expected[f"p{p}"])) <= S1_BIN_WIDTH, p
    assert result["s1_bin_width_db"] == S1_BIN_WIDTH


def test_label_frequencies_are_exact(computed):
    root, result = computed
    for name in ("dw", "truth"):
        labels = Split.open(root, "nol").group()[name][:].ravel()
        counts = np.bincount(labels[labels != 255], minlength=9)
        got = result[name]["classes"]
        assert [got[c.name]["count"] for c in catalog.DW_CLASSES] == counts[:9].tolist(), name
        assert result[name]["count"] == int((labels != 255).sum())
        assert sum(c["share"] for c in got.values()) == pytest.approx(1.0)


def test_statistics_are_kept_in_the_split_and_the_store_still_verifies(computed):
    root, result = computed
    attrs = Split.open(root, "nol").attrs
    assert attrs["statistics"] == result
    assert verify(root)[1]["ok"], "the manifest follows the changed group metadata"
    for _ in range(2):  # a second run rewrites zarr.json at the same size: its hash must still be renewed
        assert CliRunner().invoke(cli, ["stats", str(root), "--workers", "1"]).exit_code == 0
        problems, _ = verify(root)
        assert not problems, problems


def test_nodata_is_not_counted(tmp_path):
    data = write_store_with_nodata(tmp_path)
    result = compute(tmp_path, "nol", workers=1)
    assert result["s2"]["B1"]["count"] == int((data["s2"][:, :, 0] != 0).sum()) < data["s2"][:, :, 0].size
    assert result["s1"]["VH"]["count"] == int((~np.isnan(data["s1"][:, :, 1])).sum())
    assert result["dw"]["count"] == int((data["dw"] != 255).sum())


def test_no_store_only_prints(synthetic_store):
    root = synthetic_store(samples=20, tile_size=24)
    before = (root / "nol.zarr" / "zarr.json").read_bytes()
    result = CliRunner().invoke(cli, ["stats", str(root), "--no-store"])
    assert result.exit_code == 0, result.output
    assert "| B4 |" in result.output and "trees" in result.output
    assert (root / "nol.zarr" / "zarr.json").read_bytes() == before
    assert compute(root, "nol", workers=1)["s2"]["B4"]["count"] > 0


def test_a_missing_split_is_a_one_line_error(synthetic_store):
    root = synthetic_store(samples=20, tile_size=24)
    result = CliRunner().invoke(cli, ["stats", str(root), "--split", "osm_train"])
    assert result.exit_code != 0 and "no split 'osm_train'" in result.output


def test_stats_and_upgrade_on_object_storage(s3):
    """The same store locations as every command: a store in an S3 bucket (moto's server) gets its statistics
    and still verifies; upgrading it is a no-op that keeps it valid."""
    from noldo.build import BuildSpec, build
    from noldo.upgrade import upgrade

    _, url = s3
    build(BuildSpec("demo", "synthetic", samples=3, tile_size=16), url)
    result = CliRunner().invoke(cli, ["stats", url, "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert Split.open(url, "nol").attrs["statistics"]["s2"]["B4"]["count"] == json.loads(result.output)["s2"]["B4"][
        "count"] > 0
    assert upgrade(url) == {"upgraded": [], "current": ["nol"]}
    problems, _ = verify(url)
    assert problems == [], problems
