"""`noldo download` against a loopback server that speaks the Hugging Face hub's file endpoints."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from noldo.cli import cli
from noldo.errors import NoldoError
from noldo.testing.hub import COMMIT, FakeHub
from noldo.verify import verify
from tests.helpers import write_example_store
from tests.published_layouts import nol_zip, tiles_zip

REPO = "vikki23/NoLDO-S12"
WEIGHTS = [f"weights-cromss-{b}-{f}-epoch=199.ckpt" for b in ("13B", "9B") for f in ("midFusion", "lateFusion")]


@pytest.fixture
def published(tmp_path):
    """The published repository's files, small, in their documented layouts."""
    dw_zip, expected = tiles_zip(tmp_path / "src-dw.zip", {"dw_train": (3, 128), "dw_test": (2, 130)})
    nol, _ = nol_zip(tmp_path / "src-nol.zip")
    osm_zip, _ = tiles_zip(tmp_path / "src-osm.zip", {"osm_train": (2, 16)}, with_osm=True)
    files = {"ssl4eo_s12_dw.zip": dw_zip.read_bytes(), "ssl4eo_s12_nol.zip": nol.read_bytes(),
             "ssl4eo_s12_osm.zip": osm_zip.read_bytes(), "README.md": b"# NoLDO-S12\n"}
    files |= {name: os.urandom(3000 + i) for i, name in enumerate(WEIGHTS)}
    return files, expected


@pytest.fixture
def hub(published, monkeypatch):
    from huggingface_hub import constants

    with FakeHub({REPO: published[0]}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield server


def download(*args):
    return CliRunner().invoke(cli, ["download", *map(str, args)])


def test_download_convert_verify(hub, published, tmp_path):
    """The acceptance chain: download the DW zip, convert it, verify the store."""
    result = download("--what", "dw", "--root", tmp_path / "files")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["files"] == 1 and summary["bytes_fetched"] == len(published[0]["ssl4eo_s12_dw.zip"])
    zip_path = tmp_path / "files" / "ssl4eo_s12_dw.zip"
    assert zip_path.read_bytes() == published[0]["ssl4eo_s12_dw.zip"]
    converted = CliRunner().invoke(cli, ["convert", str(zip_path), "--out", str(tmp_path / "store")])
    assert converted.exit_code == 0, converted.output
    assert verify(tmp_path / "store")[0] == []
    again = json.loads(download("--what", "dw", "--root", tmp_path / "files").stdout)
    assert again["to_fetch"] == 0 and again["bytes_fetched"] == 0 and hub.served["ssl4eo_s12_dw.zip"] == len(
        published[0]["ssl4eo_s12_dw.zip"])


def test_all_and_dry_run(hub, published, tmp_path):
    plan = json.loads(download("--root", tmp_path / "files", "--dry-run").stdout)
    names = {f["path"] for f in plan["file_list"]}
    assert names == {"ssl4eo_s12_nol.zip", "ssl4eo_s12_dw.zip", "ssl4eo_s12_osm.zip", *WEIGHTS}
    assert plan["bytes_to_fetch"] == sum(len(published[0][n]) for n in names)
    assert not (tmp_path / "files").exists() and sum(hub.served.values()) == 0
    result = download("--what", "weights", "--what", "nol", "--root", tmp_path / "files", "--revision", COMMIT)
    assert result.exit_code == 0, result.output
    for name in (*WEIGHTS, "ssl4eo_s12_nol.zip"):
        assert (tmp_path / "files" / name).read_bytes() == published[0][name]


def test_corrupt_download_is_fetched_again_then_reported(hub, published, tmp_path):
    name = "ssl4eo_s12_nol.zip"
    hub.corrupt_next[name] = 1
    result = download("--what", "nol", "--root", tmp_path / "a")
    assert result.exit_code == 0 and (tmp_path / "a" / name).read_bytes() == published[0][name]
    assert hub.served[name] == 2 * len(published[0][name])
    hub.corrupt_next[name] = 2
    result = download("--what", "nol", "--root", tmp_path / "b")
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert f"{tmp_path / 'b' / name}: sha256 does not match" in result.stderr
    assert "repair: noldo download" in result.stderr
    assert not (tmp_path / "b" / name).exists() and not list((tmp_path / "b").glob("*.part"))


def test_a_damaged_local_file_is_never_used(hub, published, tmp_path):
    name = "ssl4eo_s12_dw.zip"
    assert download("--what", "dw", "--root", tmp_path / "f").exit_code == 0
    path = tmp_path / "f" / name
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["convert", str(path), "--out", str(tmp_path / "store")])
    assert result.exit_code == 1 and "does not match the sha256" in result.stderr and "noldo download" in result.stderr
    assert download("--what", "dw", "--root", tmp_path / "f").exit_code == 0, "a re-run repairs it"
    assert path.read_bytes() == published[0][name]


@pytest.mark.parametrize(("args", "message"), [
    (["--revision", "v9.9"], "revision 'v9.9' does not exist in dataset vikki23/NoLDO-S12"),
    (["--repo", "someone/else"], "dataset someone/else was not found"),
])
def test_wrong_revision_or_repo(hub, tmp_path, args, message):
    result = download("--what", "dw", "--root", tmp_path / "x", *args)
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1 and message in result.stderr


def test_unreachable_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    result = download("--what", "dw", "--root", tmp_path / "x")
    assert result.exit_code == 1 and "cannot reach the Hugging Face hub at http://127.0.0.1:9" in result.stderr


def test_offline_with_a_warm_root(published, tmp_path, monkeypatch):
    from huggingface_hub import constants

    with FakeHub({REPO: published[0]}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        assert download("--what", "dw", "--root", tmp_path / "f").exit_code == 0
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = download("--what", "dw", "--root", tmp_path / "f")
    assert result.exit_code == 0 and json.loads(result.stdout)["to_fetch"] == 0
    (tmp_path / "f" / "ssl4eo_s12_dw.zip").unlink()
    result = download("--what", "dw", "--root", tmp_path / "f")
    assert result.exit_code == 1 and "HF_HUB_OFFLINE is set" in result.stderr
    result = download("--what", "dw", "--root", tmp_path / "cold")
    assert result.exit_code == 1 and "run once online" in result.stderr


def test_killed_download_resumes_without_refetching(hub, published, tmp_path):
    """Kill `noldo download` in the middle of the second file; the re-run fetches only what is missing."""
    hub.delay = 0.02
    first, second = "ssl4eo_s12_nol.zip", "ssl4eo_s12_dw.zip"
    env = {**os.environ, "HF_HUB_OFFLINE": "0"}
    child = subprocess.Popen([sys.executable, "-m", "noldo", "download", "--what", "nol", "--what", "dw",
                              "--root", str(tmp_path / "f")], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    part = tmp_path / "f" / f"{second}.part"
    deadline = time.monotonic() + 60
    size = len(published[0][second])
    while not (part.exists() and part.stat().st_size > size // 3) and time.monotonic() < deadline:
        assert child.poll() is None, "the download finished before it could be killed"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    while hub.sending and time.monotonic() < deadline:  # the server notices the dead client
        time.sleep(0.01)
    assert (tmp_path / "f" / first).exists() and not (tmp_path / "f" / second).exists()
    have = part.stat().st_size
    served_before = dict(hub.served)
    hub.delay = 0
    result = download("--what", "nol", "--what", "dw", "--root", tmp_path / "f")
    assert result.exit_code == 0, result.output
    assert hub.served[first] == served_before[first], "the finished file is not fetched again"
    assert hub.served[second] - served_before[second] == len(published[0][second]) - have
    assert (tmp_path / "f" / second).read_bytes() == published[0][second]


@pytest.fixture
def release(tmp_path, monkeypatch):
    """A noldo release on the loopback hub: (hub, the release's files, the arrays written)."""
    from huggingface_hub import constants

    data = write_example_store(tmp_path / "release", samples=10)
    files = {p.relative_to(tmp_path / "release").as_posix(): p.read_bytes()
             for p in (tmp_path / "release").rglob("*") if p.is_file() and ".noldo" not in p.parts}
    with FakeHub({"noldo/nol-demo": files}, tree_page=7) as server:  # listings of several pages to follow
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield server, files, data


def test_release_download_gives_a_verified_store(release, tmp_path):
    hub, _, data = release
    result = download("--release", "noldo/nol-demo", "--root", tmp_path / "store")
    assert result.exit_code == 0, result.output
    assert verify(tmp_path / "store")[0] == []
    assert set(hub.fetched_at) == {COMMIT}, "every file comes from the commit 'main' resolved to"
    import noldo

    np.testing.assert_array_equal(noldo.open(tmp_path / "store", "nol", mask=False).s2.values, data["s2"])


def _store_files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and ".noldo-download" not in p.parts)


@pytest.mark.parametrize("bad", ["../outside.bin", "nol.zarr/../../outside.bin", "<tmp>/outside.bin",
                                 "C:/outside.bin", "nol.zarr\\..\\..\\outside.bin", "nol.zarr//s2", "./x", ""])
def test_release_with_a_path_outside_the_root_is_refused(release, tmp_path, bad):
    hub, files, _ = release
    bad = bad.replace("<tmp>", str(tmp_path))  # an absolute path
    manifest = json.loads(files["manifest.json"])
    payload = b"not yours"
    manifest["files"].insert(0, {"path": bad, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()})
    files["manifest.json"] = json.dumps(manifest).encode()
    files[bad] = payload
    root = tmp_path / "deep" / "store"
    result = download("--release", "noldo/nol-demo", "--root", root)
    assert result.exit_code == 1 and repr(bad) in result.output and "nothing was written" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert _store_files(tmp_path / "deep") == [], "nothing of the release is written, inside the root or out"
    assert not (tmp_path / "outside.bin").exists() and sum(hub.served[n] for n in files if n != "manifest.json") == 0


def test_release_through_a_symlinked_parent_is_refused(release, tmp_path):
    outside, root = tmp_path / "elsewhere", tmp_path / "store"
    outside.mkdir()
    root.mkdir()
    (root / "nol.zarr").symlink_to(outside, target_is_directory=True)
    result = download("--release", "noldo/nol-demo", "--root", root)
    assert result.exit_code == 1 and "symbolic link" in result.output
    assert list(outside.iterdir()) == [] and _store_files(root) == []


def test_release_whose_manifest_differs_from_the_hub_is_refused(release, tmp_path):
    hub, _, _ = release
    hub.corrupt_next["manifest.json"] = 2  # the bytes served do not match the hub's git blob id, twice
    result = download("--release", "noldo/nol-demo", "--root", tmp_path / "store")
    assert result.exit_code == 1 and "git blob id does not match" in result.output
    assert _store_files(tmp_path / "store") == []


def test_a_release_opens_in_place_from_the_hub_and_reads_a_sample_without_downloading_it(release):
    import noldo
    from noldo.location import ReleaseLocation

    hub, files, data = release
    url = "hf://datasets/noldo/nol-demo@main"
    ds = noldo.open(url, mask=False)  # lazy: metadata, and the time chunk xarray decodes to check its units
    assert not any(name.startswith("nol.zarr/s2/c/") for name in hub.served), "no shard read while opening"
    np.testing.assert_array_equal(ds.s2.isel(sample=3).values, data["s2"][3])
    shards = {name for name in hub.served if "/c/" in name}
    assert shards - {"nol.zarr/time/c/0/0"} == {"nol.zarr/s2/c/0/0/0/0/0"}, f"only the sample's shard is read: {shards}"
    assert set(hub.fetched_at) == {COMMIT}, "every read is made at the commit 'main' resolved to"
    assert hub.served["nol.zarr/s2/c/0/0/0/0/0"] == len(files["nol.zarr/s2/c/0/0/0/0/0"]), "one whole fetch"
    location = ReleaseLocation(url)
    with pytest.raises(NoldoError, match="read-only"):
        location.write_bytes("x", b"")
    problems, summary = verify(url)
    assert problems == [] and summary["files"] == len(files) - 1


def test_a_tampered_shard_of_a_release_is_refused_when_it_is_read(release):
    import noldo

    hub, files, _ = release
    shard = "nol.zarr/s1/c/0/0/0/0/0"
    hub.tampered[shard] = bytes([files[shard][0] ^ 1]) + files[shard][1:]
    ds = noldo.open("hf://datasets/noldo/nol-demo")
    assert ds.s2.isel(sample=0).values.any()  # another array's shard is fine
    with pytest.raises(NoldoError, match=f"{shard}: sha256 does not match the release's manifest.json"):
        ds.s1.isel(sample=0).load()


def test_a_release_whose_manifest_differs_from_the_hub_record_is_refused(release):
    import noldo

    hub, files, _ = release
    manifest = json.loads(files["manifest.json"])
    manifest["files"][0]["sha256"] = "0" * 64
    hub.tampered["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(NoldoError, match="does not match the hub's record"):
        noldo.open("hf://datasets/noldo/nol-demo@main")


def test_a_release_downloads_onto_object_storage_verified_and_resumable(release, s3):
    """Each file is fetched and verified locally, uploaded, then its local copy removed; a re-run uploads
    nothing again; the store on S3 verifies and reads like the release."""
    import noldo
    from noldo.location import ObjectLocation

    hub, files, data = release
    _, bucket = s3
    url = f"{bucket}/release"
    result = download("--release", "noldo/nol-demo", "--root", url)
    assert result.exit_code == 0, result.output
    assert verify(url)[0] == []
    np.testing.assert_array_equal(noldo.open(url, "nol", mask=False).s2.values, data["s2"])
    location = ObjectLocation(url)
    kept = [p for p in location.state_dir("download").rglob("*") if p.is_file() and p.parent.name != ".noldo-download"]
    assert kept == [], "the local copies are removed once uploaded"
    served = sum(hub.served.values())
    again = download("--release", "noldo/nol-demo", "--root", url)
    assert again.exit_code == 0 and json.loads(again.output)["to_fetch"] == 0
    assert sum(hub.served.values()) - served <= len(files["manifest.json"]), "nothing but the manifest again"
    published = download("--what", "weights", "--root", url)
    assert published.exit_code == 1 and "downloaded to a local directory" in published.output
