"""Fault injection against the loopback Earth Engine: retried, or rejected with a reason; never bad pixels."""

import json

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from noldo.cli import cli
from noldo.testing.earthengine import Catalogue, FakeEarthEngine, Faults
from noldo.verify import verify

BBOX = "11.30,48.00,11.50,48.15"


@pytest.fixture
def catalogue():
    return Catalogue((11.3, 48.0, 11.5, 48.15), "2019-11-01", "2021-11-01", 32632)


def build(catalogue, faults, root, tmp_path, monkeypatch, samples=3):
    monkeypatch.setenv("NOLDO_EE_RETRY_BASE_SECONDS", "0.01")
    monkeypatch.setenv("NOLDO_EE_DEADLINE_SECONDS", "1")
    with FakeEarthEngine(catalogue, faults) as server:
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(server.service_account_key(tmp_path)))
        result = CliRunner().invoke(cli, ["build", "--region", BBOX, "--source", "earthengine", "--ee-url", server.url,
                                          "--ee-project", "P", "--out", str(root), "--samples", str(samples),
                                          "--tile-size", "32"])
        return result, server.faults.counts


@pytest.fixture
def clean(catalogue, tmp_path, monkeypatch):
    result, _ = build(catalogue, Faults(), tmp_path / "clean", tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    return tmp_path / "clean"


def same_pixels(a, b):
    ga, gb = zarr.open_group(a / "nol.zarr", mode="r"), zarr.open_group(b / "nol.zarr", mode="r")
    for name in ("s2", "s1", "dw"):
        np.testing.assert_array_equal(ga[name][:], gb[name][:], err_msg=name)


@pytest.mark.parametrize("kinds", [("truncate",), ("shape", "dtype"), ("timeout",), ("429", "500", "drop", "slow")])
def test_transient_faults_are_retried(catalogue, clean, tmp_path, monkeypatch, kinds):
    result, counts = build(catalogue, Faults(rate=0.25, kinds=kinds, seed=4), tmp_path / "faulty", tmp_path,
                           monkeypatch)
    assert result.exit_code == 0, result.output
    assert sum(counts.values()) > 0, "no fault was injected"
    summary = json.loads(result.stdout)
    assert summary["requests"]["retries"] >= counts["truncate"] + counts["shape"] + counts["dtype"]
    same_pixels(clean, tmp_path / "faulty")
    assert verify(tmp_path / "faulty")[0] == []


def test_persistent_bad_answers_reject_with_a_reason_and_write_nothing(catalogue, tmp_path, monkeypatch):
    result, _ = build(catalogue, Faults(rate=1.0, kinds=("shape",)), tmp_path / "bad", tmp_path, monkeypatch)
    assert result.exit_code == 1 and "no candidate" in result.stderr and "'ee'" in result.stderr
    reasons = (tmp_path / "bad/.noldo/nol/rejected.jsonl").read_text()
    assert "computePixels returned shape" in reasons
    assert not list((tmp_path / "bad").glob("nol.zarr/s2/c/**/*")), "no pixel was written"
