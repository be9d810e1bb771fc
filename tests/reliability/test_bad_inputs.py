"""The bad-input corpus: each case ends with one `error:` line, a non-zero exit and no traceback, and
leaves every file that was there before exactly as it was (checksums before and after)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zarr

from tests.helpers import write_example_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "store"
    write_example_store(root)
    return root


def checksums(folder: Path) -> dict[str, str]:
    """Every file's sha256, but the empty OS lock files of noldo/lock.py (they stay, by design, once a
    writer held the lock; a store made by a command has them, one made by a test helper may not)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()
            and not (p.parent.name == "locks" and p.suffix == ".lock" and p.stat().st_size == 0)}


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def then(_action: object, args: list[str]) -> list[str]:
    """Run a setup action (its value is ignored), then give the command's arguments."""
    return args


def newer_schema(store: Path) -> None:
    zarr.open_group(store / "nol.zarr", mode="r+", use_consolidated=False).attrs["schema_version"] = 99


def edit_manifest(store: Path) -> None:
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["files"][3]["sha256"] = "0" * 64
    (store / "manifest.json").write_text(json.dumps(manifest))


BUILD = ["build", "--source", "synthetic", "--samples", "2", "--tile-size", "16"]
EE = ["build", "--source", "earthengine", "--ee-project", "P", "--samples", "1"]

# name → (setup(workspace, store) → arguments, text expected in the error)
CASES = {
    "bbox west > east": (lambda w, s: [*BUILD, "--region", "12,48,11,49", "--out", str(w / "o")], "west 12"),
    "bbox south > north": (lambda w, s: [*BUILD, "--region", "11,49,12,48", "--out", str(w / "o")], "south 49"),
    "longitude out of range": (lambda w, s: [*BUILD, "--region", "11,48,200,49", "--out", str(w / "o")], "longitude"),
    "latitude out of range": (lambda w, s: [*BUILD, "--region", "11,48,12,95", "--out", str(w / "o")], "latitude"),
    "polar bbox": (lambda w, s: [*BUILD, "--region", "0,85,10,89", "--out", str(w / "o")], "UTM range"),
    "antimeridian bbox": (lambda w, s: [*BUILD, "--region", "179,0,-179,1", "--out", str(w / "o")], "antimeridian"),
    "antimeridian polygon": (lambda w, s: [*BUILD, "--region", write(w / "a.geojson", json.dumps(
        {"type": "Polygon", "coordinates": [[[-179, 0], [179, 0], [179, 1], [-179, 0]]]})), "--out", str(w / "o")],
                             "180°"),
    "three numbers": (lambda w, s: [*BUILD, "--region", "11,48,12", "--out", str(w / "o")], "four numbers"),
    "unknown place": (lambda w, s: [*BUILD, "--region", "atlantis", "--out", str(w / "o")], "unknown region"),
    "missing region file": (lambda w, s: [*BUILD, "--region", str(w / "nope.geojson"), "--out", str(w / "o")],
                            "does not exist"),
    "malformed GeoJSON": (lambda w, s: [*BUILD, "--region", write(w / "b.geojson", "{oops"), "--out", str(w / "o")],
                          "cannot read GeoJSON"),
    "GeoJSON line": (lambda w, s: [*BUILD, "--region", write(w / "l.geojson", json.dumps(
        {"type": "LineString", "coordinates": [[0, 0], [1, 1]]})), "--out", str(w / "o")], "not an area"),
    "self-intersecting polygon": (lambda w, s: [*BUILD, "--region", write(w / "x.geojson", json.dumps(
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]})), "--out", str(w / "o")],
                                  "invalid polygon"),
    "empty feature collection": (lambda w, s: [*BUILD, "--region", write(w / "e.geojson", json.dumps(
        {"type": "FeatureCollection", "features": []})), "--out", str(w / "o")], "no Polygon"),
    "projected GeoJSON": (lambda w, s: [*BUILD, "--region", write(w / "p.geojson", json.dumps(
        {"type": "Polygon", "coordinates": [[[5e5, 0], [6e5, 0], [6e5, 1e5], [5e5, 0]]]})), "--out", str(w / "o")],
                          "EPSG:4326"),
    "table without lon/lat": (lambda w, s: [*BUILD, "--region", write(w / "t.csv", "x,y\n1,2\n"), "--out",
                                            str(w / "o")], "lon,lat"),
    "table with text": (lambda w, s: [*BUILD, "--region", write(w / "u.csv", "lon,lat\neast,2\n"), "--out",
                                      str(w / "o")], "line 2"),
    "region too small": (lambda w, s: [*BUILD[:-4], "--samples", "80", "--region", "kotka", "--out", str(w / "o")],
                         "holds about"),
    "invalid split name": (lambda w, s: [*BUILD, "--region", "demo", "--split", "Bad-Name", "--out", str(w / "o")],
                           "invalid split name"),
    "unknown source": (lambda w, s: ["build", "--region", "demo", "--source", "bogus", "--out", str(w / "o")],
                       "'bogus' is not one of"),
    "output path is a file": (lambda w, s: [*BUILD, "--region", "demo", "--out", write(w / "file", "keep")],
                              "not a directory"),
    "different arguments": (lambda w, s: ["build", "--region", "demo", "--source", "synthetic", "--samples", "70",
                                          "--tile-size", "32", "--out", str(s)], "already holds a different"),
    "unknown split": (lambda w, s: ["plot", str(s), "--split", "nosuch", "--out", str(w / "p.png")], "no split"),
    "unknown sample": (lambda w, s: ["plot", str(s), "--sample", "nol-9999999", "--out", str(w / "p.png")],
                       "no sample"),
    "unknown season": (lambda w, s: ["plot", str(s), "--season", "9", "--out", str(w / "p.png")], "season 9"),
    "unknown download class": (lambda w, s: ["download", "--what", "imagery", "--root", str(w / "d")],
                               "'imagery' is not one of"),
    "unknown OSM order": (lambda w, s: ["convert", str(s), "--out", str(w / "c"), "--osm-order", "rainbow"],
                          "'rainbow' is not one of"),
    "corrupt chunk": (lambda w, s: then(flip_byte(s / "nol.zarr/s2/c/0/0/0/0/0"), ["verify", str(s)]),
                      "nol.zarr/s2/c/0/0/0/0/0: sha256 does not match"),
    "truncated shard": (lambda w, s: then((s / "nol.zarr/s1/c/1/0/0/0/0").write_bytes(
        (s / "nol.zarr/s1/c/1/0/0/0/0").read_bytes()[:100]), ["verify", str(s)]), "bytes, manifest.json says"),
    "missing shard": (lambda w, s: then((s / "nol.zarr/dw/c/1/0/0/0").unlink(), ["verify", str(s)]), "is missing"),
    "manifest mismatch": (lambda w, s: then(edit_manifest(s), ["verify", str(s)]), "sha256 does not match"),
    "damaged manifest": (lambda w, s: then((s / "manifest.json").write_text("{"), ["verify", str(s)]),
                         "is damaged"),
    "newer schema": (lambda w, s: then(newer_schema(s), ["info", str(s)]), "upgrade noldo"),
    "damaged metadata": (lambda w, s: then((s / "nol.zarr/zarr.json").write_text("{"), ["info", str(s)]),
                         "not valid Zarr metadata"),
    "not a store": (lambda w, s: ["verify", str(w)], "holds no noldo splits"),
    "not a zip": (lambda w, s: ["convert", write(w / "x.zip", "nope"), "--out", str(w / "c")],
                  "neither a folder nor a readable zip"),
    "download root is a file": (lambda w, s: ["download", "--what", "dw", "--root", write(w / "r", "x")],
                                "not a directory"),
    "unreachable hub": (lambda w, s: ["download", "--what", "dw", "--root", str(w / "d")],
                        "cannot reach the Hugging Face hub"),
    "missing credentials": (lambda w, s: [*EE, "--region", "munich", "--ee-url", "http://127.0.0.1:9", "--out",
                                          str(w / "ee")], "no Earth Engine credentials"),
    "missing key file": (lambda w, s: then(os.environ.update(NOLDO_EE_SERVICE_ACCOUNT_KEY=str(w / "k.json")),
                                           [*EE, "--region", "munich", "--out", str(w / "ee")]), "does not exist"),
    "corrupt OSM file": (lambda w, s: ["build", "--split", "osm", "--osm-file", write(w / "x.osm.pbf", "garbage"),
                                       "--region", "kotka", "--samples", "1", "--out", str(w / "osm")],
                         "cannot read OSM file"),
    "too many EE requests": (lambda w, s: [*EE, "--region", "munich", "--ee-concurrency", "41", "--out",
                                           str(w / "ee")], "41 is not in the range"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, pristine, tmp_path, monkeypatch):
    store = tmp_path / "store"
    shutil.copytree(pristine, store)
    env_before = dict(os.environ)
    setup, expected = CASES[name]
    args = setup(tmp_path, store)
    env = {**os.environ, "HOME": str(tmp_path), "NO_GCE_CHECK": "True", "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HUB_OFFLINE": "0", "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}
    os.environ.clear()
    os.environ.update(env_before)
    before = checksums(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "noldo", *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0], lines[0]
    assert checksums(tmp_path) == before, "a failed command changed files that were there before"


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 30
