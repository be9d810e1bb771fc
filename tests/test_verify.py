"""`noldo verify`: a clean store passes; corruption, missing shards and manifest mismatches are named."""

import json
import shutil

import pytest
from click.testing import CliRunner

from noldo.cli import cli


def run_verify(root):
    result = CliRunner().invoke(cli, ["verify", str(root)])
    return result.exit_code, result.stdout, result.stderr


def test_clean_store_passes(example_store):
    root, _ = example_store
    code, out, err = run_verify(root)
    assert code == 0, err
    assert out.startswith("ok: ") and err == ""


def test_flipped_byte_in_a_chunk(example_store):
    root, _ = example_store
    shard = root / "nol.zarr/s2/c/1/0/0/0/0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x01
    shard.write_bytes(bytes(data))
    code, out, err = run_verify(root)
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "nol.zarr/s2/c/1/0/0/0/0" in lines[0] and "sha256" in lines[0] and "Traceback" not in err
    assert "repair: rm " in lines[0] and "example-store" in lines[0]


def test_missing_shard(example_store):
    root, _ = example_store
    (root / "nol.zarr/dw/c/0/0/0/0").unlink()
    code, _, err = run_verify(root)
    assert code == 1
    assert err.splitlines() == [f"error: nol.zarr/dw/c/0/0/0/0: shard 0 of dw (samples 0–63) is missing; repair: "
                                f"example-store {root}"], "reported once, not again by the manifest check"
    (root / "nol.zarr/s1/zarr.json").rename(root / "moved")
    code, _, err = run_verify(root)
    assert "nol.zarr/s1/zarr.json: is listed in manifest.json but missing" in err


@pytest.mark.parametrize("field", ["sha256", "bytes"])
def test_manifest_mismatch(example_store, field):
    root, _ = example_store
    manifest = json.loads((root / "manifest.json").read_text())
    entry = next(f for f in manifest["files"] if f["path"] == "nol.parquet")
    entry[field] = "0" * 64 if field == "sha256" else entry[field] + 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_verify(root)
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith("error: nol.parquet: ")


def test_unlisted_file_and_missing_manifest(example_store):
    root, _ = example_store
    (root / "nol.zarr/s2/stray").write_bytes(b"x")
    code, _, err = run_verify(root)
    assert code == 1 and "nol.zarr/s2/stray: is not listed in manifest.json" in err
    (root / "nol.zarr/s2/stray").unlink()
    (root / "manifest.json").unlink()
    code, _, err = run_verify(root)
    assert code == 1 and "manifest.json: is missing" in err and "noldo manifest" in err
    assert CliRunner().invoke(cli, ["manifest", str(root)]).exit_code == 0
    assert run_verify(root)[0] == 0


def test_damaged_manifest_and_index(example_store):
    root, _ = example_store
    shutil.copy(root / "nol.parquet", root / "index.bak")
    (root / "nol.parquet").write_bytes(b"not parquet")
    (root / "manifest.json").write_text("{not json")
    code, _, err = run_verify(root)
    assert code == 1 and "Traceback" not in err
    assert "error: nol.parquet: cannot be read" in err
    assert "error: manifest.json: is damaged" in err and "repair: noldo manifest" in err


def test_not_a_store(tmp_path):
    code, _, err = run_verify(tmp_path)
    assert code == 1 and err == f"error: {tmp_path} holds no noldo splits (no <split>.zarr groups)\n"
