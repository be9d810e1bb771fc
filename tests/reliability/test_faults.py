"""Fault injection against the loopback Earth Engine: retried, or rejected with a reason; never bad pixels."""

import json

import numpy as np
import pandas as pd
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


ALL_KINDS = ("429", "429-rate", "500", "503", "400-timeout", "400-memory", "drop", "slow", "timeout", "truncate",
             "shape", "dtype", "byteorder")


@pytest.mark.parametrize("kinds", [("truncate",), ("shape", "dtype"), ("timeout",), ("429", "500", "drop", "slow"),
                                   ("400-timeout", "429-rate", "503"), ("400-memory",), ("byteorder",)])
def test_transient_faults_are_retried(catalogue, clean, tmp_path, monkeypatch, kinds):
    result, counts = build(catalogue, Faults(rate=0.4, kinds=kinds, seed=4), tmp_path / "faulty", tmp_path,
                           monkeypatch)
    assert result.exit_code == 0, result.output
    assert sum(counts.values()) > 0, "no fault was injected"
    summary = json.loads(result.stdout)
    assert summary["requests"].get("retries", 0) >= counts["truncate"] + counts["shape"] + counts["dtype"]
    assert summary["requests"].get("splits", 0) >= counts["400-memory"]
    same_pixels(clean, tmp_path / "faulty")
    assert verify(tmp_path / "faulty")[0] == []


def test_faults_of_every_kind_change_nothing(catalogue, tmp_path, monkeypatch):
    """20 % of the requests fail, with every kind of fault the server knows: the store is the fault-free one,
    sample for sample; memory-limit answers are met by splitting; the summary counts retries per kind."""
    clean, _ = build(catalogue, Faults(), tmp_path / "clean", tmp_path, monkeypatch, samples=45)
    result, counts = build(catalogue, Faults(rate=0.2, kinds=ALL_KINDS, seed=7), tmp_path / "faulty", tmp_path,
                           monkeypatch, samples=45)
    assert clean.exit_code == 0 and result.exit_code == 0, result.output
    assert len(counts) >= 6 and {"400-timeout", "429-rate", "503"} & set(counts), f"kinds drawn: {dict(counts)}"
    summary = json.loads(result.stdout)
    retried = {k.removeprefix("retries_"): v for k, v in summary["requests"].items() if k.startswith("retries_")}
    assert retried and sum(retried.values()) == summary["requests"]["retries"], retried
    if counts["400-memory"]:
        assert summary["requests"]["splits"] >= counts["400-memory"], "memory-limit answers are split"
    same_pixels(tmp_path / "clean", tmp_path / "faulty")
    for name in ("clean", "faulty"):
        assert verify(tmp_path / name)[0] == []
    ids = [list(pd.read_parquet(tmp_path / name / "nol.parquet")["sample"]) for name in ("clean", "faulty")]
    assert ids[0] == ids[1], "faults change no sample id"


def test_persistent_bad_answers_leave_samples_unfinished_and_a_rerun_finishes(catalogue, clean, tmp_path,
                                                                              monkeypatch):
    """Answers that stay malformed are a passing fault: the samples keep their places, nothing is written, the
    build says so and exits 1; once the server answers properly, the same command completes the store."""
    result, _ = build(catalogue, Faults(rate=1.0, kinds=("shape",)), tmp_path / "bad", tmp_path, monkeypatch)
    assert result.exit_code == 1 and "could not be finished" in result.stderr and "re-run" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["complete"] is False and summary["unfinished"]["total"] == 3 and summary["rejected"]["total"] == 0
    assert not list((tmp_path / "bad").glob("nol.zarr/s2/c/**/*")), "no pixel was written"
    again, _ = build(catalogue, Faults(), tmp_path / "bad", tmp_path, monkeypatch)
    assert again.exit_code == 0, again.output
    same_pixels(clean, tmp_path / "bad")
    assert verify(tmp_path / "bad")[0] == []
