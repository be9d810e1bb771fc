"""Stores on object storage (noldo/location.py), against moto's real S3 server on 127.0.0.1.

The server runs in this process (conftest ``s3``); commands run as subprocesses that reach it the
standard way (``AWS_ENDPOINT_URL`` and dummy keys in the environment), like a user's shell.
"""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import noldo
from noldo.build import BuildSpec, build
from noldo.location import ObjectLocation, StoreLocation
from noldo.lock import LockHeld, writing
from noldo.manifest import read_manifest
from noldo.store import Split
from noldo.testing.s3 import DUMMY_SECRET
from noldo.verify import verify
from tests.helpers import assert_same_arrays, kill_noldo

SMALL = ["--region", "demo", "--source", "synthetic", "--samples", "70", "--tile-size", "40"]
LONGER = ["--region", "10,47,11,48", "--source", "synthetic", "--samples", "192", "--tile-size", "32"]


def noldo_cli(*args, timeout=300, **env):
    return subprocess.run([sys.executable, "-m", "noldo", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **env})


@pytest.fixture(scope="module")
def s3_store(s3_server, tmp_path_factory):
    """A finished 70-sample store built by the CLI on S3, and the same build on local disk. Shared by
    this module's tests: do not change it."""
    bucket = "noldo-shared-store"
    s3_server.create_bucket(bucket)
    url = f"s3://{bucket}/demo"
    built = noldo_cli("build", *SMALL, "--out", url)
    assert built.returncode == 0, built.stderr
    local = tmp_path_factory.mktemp("local") / "store"
    build(BuildSpec("demo", "synthetic", samples=70, tile_size=40), local)
    return s3_server, url, local, built


def objects(server, url):
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_a_store_built_on_s3_verifies_describes_and_equals_the_local_build(s3_store):
    server, url, local, built = s3_store
    assert json.loads(built.stdout)["root"] == url
    checked = noldo_cli("verify", url)
    assert checked.returncode == 0 and checked.stdout.startswith(f"ok: {url}"), checked.stderr
    info = noldo_cli("info", url)
    assert info.returncode == 0 and json.loads(info.stdout)["splits"]["nol"]["samples"] == 70, info.stderr
    assert_same_arrays(url, local)
    keys = objects(server, url)
    assert not any(k.split("/", 2)[1].startswith(".noldo") for k in keys), "build state stays local"
    assert f"{url.split('/', 3)[3]}/manifest.json" in keys
    # the published bytes are those of the local build (shards byte for byte)
    def shards(root):
        return {f["path"]: f["sha256"] for f in read_manifest(root)["files"] if "/c/" in f["path"]}

    assert shards(url) == shards(local)


def test_verify_names_a_corrupted_and_a_missing_object_and_quick_reads_no_intact_shard(s3):
    server, bucket = s3
    url = f"{bucket}/demo"
    build(BuildSpec("demo", "synthetic", samples=70, tile_size=40), url)
    problems, summary = verify(url, quick=True)
    assert problems == [] and summary["bytes_read"] < summary["bytes"] / 10, summary
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    client = server.client()
    shard, gone = f"{prefix}/nol.zarr/s2/c/0/0/0/0/0", f"{prefix}/nol.zarr/dw/c/1/0/0/0"
    body = bytearray(client.get_object(Bucket=bucket, Key=shard)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=bucket, Key=shard, Body=bytes(body))  # no SHA-256 kept: --quick must read it
    client.delete_object(Bucket=bucket, Key=gone)
    checked = noldo_cli("verify", url)
    assert checked.returncode == 1
    errors = checked.stderr.strip().splitlines()
    assert any(line.startswith("error: nol.zarr/s2/c/0/0/0/0/0: sha256 does not match") for line in errors)
    assert any(line.startswith("error: nol.zarr/dw/c/1/0/0/0: shard 1 of dw") for line in errors), errors
    problems, _ = verify(url, quick=True)  # the rewritten object has no SHA-256 of S3's: it is read
    assert {p.path for p in problems} == {"nol.zarr/s2/c/0/0/0/0/0", "nol.zarr/dw/c/1/0/0/0"}


def test_open_plot_and_read_lazily_from_s3(s3_store, tmp_path):
    _, url, local, _ = s3_store
    ds = noldo.open(url)
    assert ds.s2.chunks is not None  # lazy: dask arrays over the object store
    np.testing.assert_array_equal(ds.s2.isel(sample=3).values, noldo.open(local).s2.isel(sample=3).values)
    shown = noldo_cli("plot", url, "--sample", "1", "--png", str(tmp_path / "s.png"))
    assert shown.returncode == 0 and (tmp_path / "s.png").stat().st_size > 1000, shown.stderr


def test_no_secret_reaches_the_store_the_logs_the_summary_or_a_worker(s3_store):
    server, url, _, built = s3_store
    logged = noldo_cli("-vv", "--storage-option", "key=noldo-test-key", "--storage-option", f"secret={DUMMY_SECRET}",
                       "verify", url)
    assert logged.returncode == 0, logged.stderr
    bucket, _, _ = url.removeprefix("s3://").partition("/")
    client = server.client()
    for key in objects(server, url):
        assert DUMMY_SECRET.encode() not in client.get_object(Bucket=bucket, Key=key)["Body"].read(), key
    for text in (built.stdout, built.stderr, logged.stdout, logged.stderr):
        assert DUMMY_SECRET not in text
    for path in Path(os.environ["NOLDO_STATE_DIR"]).rglob("*"):
        assert not path.is_file() or DUMMY_SECRET.encode() not in path.read_bytes(), path
    location = StoreLocation(url, storage_options={"key": "id", "secret": DUMMY_SECRET, "endpoint_url": "x"})
    import pickle

    sent = pickle.loads(pickle.dumps(location))  # what a dask worker receives
    assert DUMMY_SECRET not in repr(location) and DUMMY_SECRET not in str(location)
    assert "secret" not in sent.options and "key" not in sent.options and sent.options["endpoint_url"] == "x"


def test_an_interrupted_multipart_upload_is_aborted_by_the_next_writer(s3):
    server, bucket = s3
    url = f"{bucket}/demo"
    build(BuildSpec("demo", "synthetic", samples=10, tile_size=40), url)
    name, _, prefix = url.removeprefix("s3://").partition("/")
    client = server.client()
    client.create_multipart_upload(Bucket=name, Key=f"{prefix}/nol.zarr/s2/c/0/0/0/0/0")
    assert len(client.list_multipart_uploads(Bucket=name).get("Uploads", [])) == 1
    build(BuildSpec("demo", "synthetic", samples=10, tile_size=40), url)  # the re-run cleans up
    assert client.list_multipart_uploads(Bucket=name).get("Uploads", []) == []


def test_s3_leases_one_writer_and_the_holder_is_named(s3):
    _, bucket = s3
    url = f"{bucket}/demo"
    with writing(url, "nol", command="noldo build --source synthetic"):
        with pytest.raises(LockHeld) as refused, writing(url, "nol", command="noldo convert"):
            pass
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and "--break-lock" in message and "\n" not in message
        with writing(url, "osm"):
            pass
    with writing(url, "nol"):  # released at the end of the block
        pass
    assert not ObjectLocation(url).exists(".noldo/locks/nol.lease")


def test_two_builds_on_s3_one_builds_the_other_refuses_at_once(s3):
    _, bucket = s3
    url = f"{bucket}/demo"
    args = [sys.executable, "-m", "noldo", "build", *SMALL, "--out", url]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted((p.wait(timeout=300), *p.communicate()) for p in procs)
    (ok, out, _), (refused, _, err) = outcomes
    assert ok == 0 and json.loads(out)["samples"] == 70, outcomes
    lines = err.strip().splitlines()
    assert refused == 1 and len(lines) == 1 and "is being written by noldo build --source synthetic" in lines[0]
    assert verify(url)[0] == []


def _killed_holder(url, env):
    holder = subprocess.Popen([sys.executable, "-m", "noldo", "build", *LONGER, "--out", url],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    location = ObjectLocation(url)
    deadline = time.monotonic() + 120
    while not location.exists(".noldo/locks/nol.lease"):
        assert holder.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    holder.kill()
    holder.wait()
    assert location.exists(".noldo/locks/nol.lease"), "a killed holder leaves its lease"


@pytest.mark.slow
def test_the_lease_of_a_killed_holder_expires(s3):
    _, bucket = s3
    url = f"{bucket}/demo"
    _killed_holder(url, {"NOLDO_LEASE_SECONDS": "10"})
    refused = noldo_cli("build", *LONGER, "--out", url)
    assert refused.returncode == 1 and "lease expires at" in refused.stderr
    expires = json.loads(ObjectLocation(url).read_bytes(".noldo/locks/nol.lease"))["expires_utc"]
    time.sleep(max(0.0, (datetime.fromisoformat(expires) - datetime.now(UTC)).total_seconds() + 1))
    resumed = noldo_cli("build", *LONGER, "--out", url)
    assert resumed.returncode == 0 and "removing the expired lease" in resumed.stderr, resumed.stderr


@pytest.mark.slow
def test_break_lock_clears_the_lease_of_a_killed_holder(s3):
    _, bucket = s3
    url = f"{bucket}/demo"
    _killed_holder(url, {})
    assert noldo_cli("build", *LONGER, "--out", url).returncode == 1
    resumed = noldo_cli("build", *LONGER, "--out", url, "--break-lock")
    assert resumed.returncode == 0, resumed.stderr
    assert verify(url)[0] == []


def test_a_training_epoch_reads_from_s3_a_batch_at_a_time(s3_store):
    torch = pytest.importorskip("torch")
    from benchmark.data import NoLPretrainDataset

    _, url, local, _ = s3_store
    data = NoLPretrainDataset(url, crop=32, seed=1)
    loader = torch.utils.data.DataLoader(data, batch_size=8, num_workers=2)
    batches = list(loader)  # each worker reads its batches with concurrent requests (__getitems__)
    assert sum(len(b["s2"]) for b in batches) == len(data) == Split.open(url, "nol").layout.samples
    on_disk = NoLPretrainDataset(local, crop=32, seed=1)
    keys = [(i, 3) for i in range(8)]  # (sample, epoch), as EpochSampler gives them: reproducible crops
    for got, expected in zip(data.__getitems__(keys), (on_disk[k] for k in keys), strict=True):
        for name in ("s1", "s2", "label", "prior"):
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0)


@pytest.mark.slow
def test_a_build_state_whose_store_was_deleted_starts_afresh_and_state_can_live_elsewhere(s3, tmp_path):
    _, bucket = s3
    url = f"{bucket}/demo"
    state = tmp_path / "my-state"
    first = noldo_cli("build", *SMALL, "--out", url, "--state", str(state))
    assert first.returncode == 0 and (state / "nol" / "build.json").exists(), first.stderr
    ObjectLocation(url).remove("")  # someone deletes the store; the state directory stays
    again = noldo_cli("build", *SMALL, "--out", url, "--state", str(state))
    assert again.returncode == 0 and "starting afresh" in again.stderr, again.stderr
    assert verify(url)[0] == []


def test_dask_workers_write_every_shard_and_the_store_equals_a_single_process_build(s3, tmp_path):
    """4 worker processes on a LocalCluster: each shard is written by a worker (its commit marker names the
    writer), none by this process, which writes only the metadata, the index and the manifest."""
    from distributed import Client, LocalCluster

    _, bucket = s3
    url = f"{bucket}/cluster"
    spec = BuildSpec("demo", "synthetic", samples=150, tile_size=32)
    build(spec, tmp_path / "single")
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        summary = build(spec, url, scheduler=cluster.scheduler_address)
    assert summary["shard_writers"] == "workers" and summary["shards_written"] == 3
    markers = sorted(ObjectLocation(url).state_dir("nol").glob("shard-*.json"))
    writers = [json.loads(m.read_text())["writer"]["pid"] for m in markers]
    assert len(writers) == 3 and os.getpid() not in writers and set(writers) <= worker_pids, writers
    assert_same_arrays(url, tmp_path / "single")
    assert verify(url)[0] == []


def test_shard_writers_workers_needs_a_cluster(tmp_path):
    with pytest.raises(noldo.NoldoError, match="needs a dask cluster"):
        build(BuildSpec("demo", "synthetic", samples=10, tile_size=16), tmp_path, shard_writers="workers")


@pytest.mark.slow
def test_a_build_on_s3_killed_five_times_and_resumed_equals_an_uninterrupted_one(s3, tmp_path):
    server, bucket = s3
    url = f"{bucket}/killed"
    args = ["--region", "demo", "--source", "synthetic", "--samples", "150", "--tile-size", "48", "--workers", "2"]
    build(BuildSpec("demo", "synthetic", samples=150, tile_size=48), tmp_path / "reference", workers=2)
    state = ObjectLocation(url).state_dir("nol")

    def units(n):
        return lambda: len(list((state / "units").glob("*.unit"))) >= n

    def shards(n):
        return lambda: len(list(state.glob("shard-*.json"))) >= n

    # a killed build leaves its lease: each re-run breaks it, as the refusal tells a user to
    kills = sum(kill_noldo(["build", *args, "--out", url, "--break-lock"], until) for until in
                (units(5), units(20), shards(1), units(40), shards(2)))
    assert kills >= 4, "the build finished before it could be interrupted"
    resumed = noldo_cli("build", *args, "--out", url, "--break-lock")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_arrays(url, tmp_path / "reference")
    assert verify(url)[0] == []
    name = bucket.removeprefix("s3://")
    assert server.client().list_multipart_uploads(Bucket=name).get("Uploads", []) == []


def test_convert_writes_a_published_zip_to_s3(s3, tmp_path):
    from tests.published_layouts import tiles_zip

    _, bucket = s3
    url = f"{bucket}/converted"
    source, _ = tiles_zip(tmp_path / "ssl4eo_s12_dw.zip", {"dw_train": (3, 32), "dw_test": (2, 32)})
    converted = noldo_cli("convert", str(source), "--out", url)
    assert converted.returncode == 0, converted.stderr
    assert json.loads(converted.stdout)["splits"] == {"dw_train": 3, "dw_test": 2}
    assert verify(url)[0] == []


def test_quick_verify_never_trusts_the_checksum_of_a_multipart_upload(s3):
    """S3 keeps a checksum of the parts' checksums for a multipart upload, not the object's SHA-256."""
    import hashlib

    server, bucket = s3
    name = bucket.removeprefix("s3://")
    client, part = server.client(), os.urandom(5 << 20)
    upload = client.create_multipart_upload(Bucket=name, Key="big", ChecksumAlgorithm="SHA256")
    parts = [client.upload_part(Bucket=name, Key="big", UploadId=upload["UploadId"], PartNumber=n, Body=part,
                                ChecksumAlgorithm="SHA256") for n in (1, 2)]
    client.complete_multipart_upload(Bucket=name, Key="big", UploadId=upload["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": p["ETag"], "ChecksumSHA256": p["ChecksumSHA256"]}
                  for n, p in zip((1, 2), parts, strict=True)]})
    location = ObjectLocation(bucket)
    assert location.stored_sha256("big") is None
    assert location.sha256("big") == hashlib.sha256(part + part).hexdigest()
    location.write_bytes("small", b"one put")
    assert location.stored_sha256("small") == hashlib.sha256(b"one put").hexdigest()


def test_a_stac_catalogue_in_the_bucket_is_listed_in_the_manifest(s3):
    """noldo stac on an S3 store writes ROOT/stac through the store's own location (one PUT per object),
    with asset hrefs relative to the items, and the store still verifies."""
    from click.testing import CliRunner

    from noldo.cli import cli

    _, url = s3
    build(BuildSpec("demo", "synthetic", samples=3, tile_size=16), url)
    result = CliRunner().invoke(cli, ["stac", url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["collections"]["nol"]["items"] == 3
    item = json.loads(StoreLocation(url).read_bytes("stac/nol/items/nol-0000000.json"))
    assert item["assets"]["s2"]["href"] == "../../../nol.zarr/s2"
    assert "stac/catalog.json" in {f["path"] for f in read_manifest(url)["files"]}
    problems, _ = verify(url)
    assert problems == [], problems
