"""The label-trust audit: dw_trust written through the build engine, resumable, verified, measured against the truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import zarr

from benchmark.audit import roc_auc
from noldo.errors import NoldoError
from noldo.sources import source_class
from noldo.verify import verify


@pytest.fixture(scope="module")
def pretrained(synthetic_store, tmp_path_factory):
    """A store with a truth and a tiny two-branch checkpoint pretrained on it."""
    store = synthetic_store(samples=8, tile_size=40, copy=True)
    run = tmp_path_factory.mktemp("pretrain")
    args = [sys.executable, "-m", "benchmark.cromss", "--data", str(store), "--out", str(run), "--encoder",
            "resnet18", "--crop", "32", "--batch-size", "4", "--workers", "0", "--epochs", "2", "--T", "1",
            "--checkpoint-every", "1", "--seed", "0"]
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return store, run / "checkpoints" / "last.ckpt"


def run_audit(*args):
    return subprocess.run([sys.executable, "-m", "benchmark.audit", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_the_audit_writes_trust_that_verifies_and_is_measured_against_the_truth(pretrained):
    store, weights = pretrained
    proc = run_audit("--weights", weights, "--data", store, "--split", "nol")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    trust = zarr.open_group(store / "nol.zarr", mode="r")["dw_trust"][:]
    labels = zarr.open_group(store / "nol.zarr", mode="r")["dw"][:]
    assert trust.dtype == np.uint8 and trust.shape == labels.shape
    assert ((trust == 255) == (labels == 255)).all(), "nodata exactly where there is no label"
    assert trust[labels != 255].max() <= 254
    assert verify(store)[0] == []
    index = pd.read_parquet(store / "nol.parquet")
    for t in range(4):
        assert index[f"dw_trust_mean_t{t}"].between(0, 1).all() and index[f"dw_noise_est_t{t}"].between(0, 1).all()
    assert 0 <= result["roc_auc"] <= 1 and 0 < result["noise_rate"] < 1 and result["pixels"] > 0
    recorded = zarr.open_group(store / "nol.zarr", mode="r").attrs["provenance"]["trust_command"]
    assert recorded == (f"python -m benchmark.audit --weights {weights.resolve()} --data {store} --split nol "
                        "--normalization cromss")  # the command that resumes it, not a noldo build it cannot run
    again = run_audit("--weights", weights, "--data", store)  # done: nothing is computed again
    assert again.returncode == 0 and json.loads(again.stdout)["build"]["fetched"] == 0


def test_the_audit_refuses_what_it_cannot_use(pretrained, tmp_path):
    store, _ = pretrained
    proc = run_audit("--weights", tmp_path / "missing.ckpt", "--data", store)
    assert proc.returncode == 1 and proc.stderr.startswith("error:") and len(proc.stderr.splitlines()) == 1
    torch = pytest.importorskip("torch")
    torch.save({"state_dict": {}, "hyper_parameters": {"single_modality": "s2"}}, tmp_path / "single.ckpt")
    proc = run_audit("--weights", tmp_path / "single.ckpt", "--data", store)
    assert proc.returncode == 1 and "not a two-branch CromSS pretraining checkpoint" in proc.stderr


def test_roc_auc_ranks_low_trust_as_wrong():
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([1, 1, 0, 0])) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([1, 1, 0, 0])) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([1, 0, 1, 0])) == 0.5
    assert roc_auc(np.array([0.1, 0.6, 0.4, 0.9]), np.array([1, 1, 0, 0])) == 0.75
    with pytest.raises(NoldoError):
        roc_auc(np.array([0.1, 0.2]), np.array([0, 0]))


def test_sources_outside_the_registry_are_named_by_module_and_class():
    from benchmark.audit import TrustSource

    assert source_class("benchmark.audit:TrustSource") is TrustSource
    for name, message in (("benchmark.audit:Nothing", "cannot load the source"),
                          ("no_such_module:Source", "cannot load the source"),
                          ("benchmark.audit:roc_auc", "is not a noldo source")):
        with pytest.raises(NoldoError, match=message):
            source_class(name)


@pytest.mark.slow
def test_a_killed_audit_continues_where_it_was(pretrained, synthetic_store):
    import shutil

    from tests.helpers import assert_same_arrays, kill_noldo

    _, weights = pretrained
    base = synthetic_store(samples=12, tile_size=128)
    reference, killed = base.parent.parent / "audit-reference", base.parent.parent / "audit-killed"
    for copy in (reference, killed):
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(base, copy)
    assert run_audit("--weights", weights, "--data", reference).returncode == 0
    units = killed / ".noldo" / "nol" / "add-benchmark.audit:TrustSource" / "units"
    assert kill_noldo(["--weights", str(weights), "--data", str(killed)],
                      lambda: len(list(units.glob("*.unit"))) >= 3, module="benchmark.audit")
    resumed = run_audit("--weights", weights, "--data", killed)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout)["build"]["fetched"] <= 12 - 3, "finished samples are not computed again"
    assert_same_arrays(reference, killed)
    assert verify(killed)[0] == []
