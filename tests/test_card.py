"""CITATION.cff, and `noldo card`: the dataset card and the Croissant description of a store (docs/card.md)."""

import hashlib
import json
from pathlib import Path

import jsonschema
import mlcroissant
import pyarrow as pa
import pytest
import yaml
from click.testing import CliRunner

import noldo
from noldo.build import BuildSpec, build
from noldo.card import size_category
from noldo.catalog import REFERENCES
from noldo.cli import cli
from noldo.croissant import data_type
from noldo.location import StoreLocation
from noldo.manifest import read_manifest
from noldo.store import Split

REPO = Path(__file__).resolve().parents[1]
SPLITS = [("nol", 5, 0), ("dw_train", 3, 1)]


def citation() -> dict:
    return yaml.safe_load((REPO / "CITATION.cff").read_text())


def test_citation_cff_is_valid_cff_1_2_0():
    schema = json.loads((REPO / "tests/data/citation-file-format-1.2.0.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(citation())] == []
    assert not validator.is_valid({**citation(), "preferred-citation": {"title": "no type, no authors"}})


def test_citation_cff_agrees_with_the_package_and_the_catalogue():
    cff = citation()
    assert cff["version"] == noldo.__version__ and cff["license"] == "MIT"
    works = [cff["preferred-citation"], *cff["references"]]
    for work, ref in zip(works, REFERENCES, strict=True):
        assert " ".join(work["title"].split()) == ref.title
        assert (work["journal"], work["year"], work.get("doi")) == (ref.journal, ref.year, ref.doi)
        assert work.get("url") == (f"https://arxiv.org/abs/{ref.arxiv}" if ref.arxiv else None)
        people = [f"{a['given-names']} {a['family-names']}" for a in work["authors"] if "family-names" in a]
        assert people == list(ref.authors)
        assert (work["authors"][-1] == {"name": "others"}) == ref.et_al


@pytest.fixture(scope="module")
def carded(synthetic_store):
    """A two-split synthetic store after `noldo card`, and what the command printed."""
    root = synthetic_store(tile_size=32, splits=SPLITS, copy=True)
    result = CliRunner().invoke(cli, ["card", str(root)])
    assert result.exit_code == 0, result.output
    return root, json.loads(result.stdout)


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_writes_the_two_files_and_lists_them(carded):
    root, summary = carded
    assert summary == {"written": [str(root / "README.md"), str(root / "croissant.json"),
                                   str(root / "manifest.json")]}
    listed = {f["path"]: f for f in read_manifest(root)["files"]}
    for name in ("README.md", "croissant.json"):
        assert listed[name]["sha256"] == hashlib.sha256((root / name).read_bytes()).hexdigest()
        assert listed[name]["split"] is None and listed[name]["array"] == "meta"
    problems, _ = noldo.verify(root)
    assert problems == []


def test_card_front_matter_describes_the_store(carded):
    root, _ = carded
    meta = front_matter((root / "README.md").read_text())
    samples = {name: n for name, n, _ in SPLITS}
    assert meta["pretty_name"] == "NoLDO-S12" and meta["task_categories"] == ["image-segmentation"]
    licences = {key for name in samples for key in Split.open(root, name).attrs["licences"]}
    assert "copernicus" in licences and "cc-by-4.0" in licences
    assert meta["license"] == sorted({"other", "cc-by-4.0", *(["cc0-1.0"] if "cc0-1.0" in licences else [])})
    assert meta["license_name"] == "copernicus" and meta["license_link"].startswith("https://sentinels.copernicus")
    assert {"remote-sensing", "sentinel-1", "sentinel-2", "noisy-labels", "synthetic"} <= set(meta["tags"])
    assert meta["size_categories"] == ["n<1K"]
    assert meta["configs"] == [{"config_name": name, "data_files": [{"split": name, "path": f"{name}.parquet"}]}
                               for name in sorted(samples)]
    manifest, described = read_manifest(root), noldo.describe(root)["splits"]
    for info in meta["dataset_info"]:
        name = info["config_name"]
        assert info["splits"][0]["num_examples"] == samples[name]
        assert info["download_size"] == sum(f["bytes"] for f in manifest["files"] if f["split"] == name)
        decoded = sum(a["bytes"] for a in described[name]["arrays"].values())
        assert info["dataset_size"] == info["splits"][0]["num_bytes"] == decoded
    body = (root / "README.md").read_text()
    assert "**Simulated data.**" in body and "@article{liu2025cromss," in body
    assert "noldo download --release vikki23/NoLDO-S12" in body


def test_croissant_loads_and_yields_the_sample_index(carded):
    root, _ = carded
    dataset = mlcroissant.Dataset(jsonld=str(root / "croissant.json"))
    assert dataset.metadata.ctx.issues.errors == set()
    doc = json.loads((root / "croissant.json").read_text())
    files = {d["@id"]: d for d in doc["distribution"]}
    assert files["nol.zarr"]["includes"] == "nol.zarr/**" and files["nol.zarr"]["@type"] == "cr:FileSet"
    for name, n, _ in SPLITS:
        index = Split.open(root, name).index()
        assert files[f"{name}.parquet"]["sha256"] == hashlib.sha256((root / f"{name}.parquet").read_bytes()).hexdigest()
        records = list(dataset.records(name))
        assert [r[f"{name}/sample"].decode() for r in records] == index["sample"].tolist() and len(records) == n
        assert [r[f"{name}/lon"] for r in records] == pytest.approx(index["lon"].tolist())


def test_size_categories():
    assert [size_category(n) for n in (0, 999, 1000, 9999, 103_793, 10**12)] == \
        ["n<1K", "n<1K", "1K<n<10K", "1K<n<10K", "100K<n<1M", "n>1T"]


def test_croissant_data_types():
    assert [data_type(t) for t in (pa.int32(), pa.float64(), pa.large_string(), pa.bool_(), pa.timestamp("s"))] \
        == ["sc:Integer", "sc:Float", "sc:Text", "sc:Boolean", "sc:DateTime"]
    assert data_type(pa.binary()) is None and data_type(pa.struct([("x", pa.float64())])) is None


def test_card_out_leaves_the_store_as_it_is(synthetic_store, tmp_path):
    root = synthetic_store(samples=3, tile_size=32)
    before = (root / "manifest.json").read_bytes()
    result = CliRunner().invoke(cli, ["card", str(root), "--out", str(tmp_path / "cards"), "--repo", "me/noldo"])
    assert result.exit_code == 0, result.output
    assert not (root / "README.md").exists() and (root / "manifest.json").read_bytes() == before
    assert front_matter((tmp_path / "cards" / "README.md").read_text())["configs"][0]["config_name"] == "nol"
    assert "noldo download --release me/noldo" in (tmp_path / "cards" / "README.md").read_text()
    assert json.loads((tmp_path / "cards" / "croissant.json").read_text())["url"] == \
        "https://huggingface.co/datasets/me/noldo"


def test_card_of_no_store_is_one_line(tmp_path):
    for root in (tmp_path, tmp_path / "missing"):
        result = CliRunner().invoke(cli, ["card", str(root)])
        assert result.exit_code == 1
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr
    assert list(tmp_path.iterdir()) == []


def test_card_on_object_storage(s3):
    _, url = s3
    build(BuildSpec("demo", "synthetic", samples=3, tile_size=16), url)
    result = CliRunner().invoke(cli, ["card", url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["written"][0] == f"{url}/README.md"
    problems, _ = noldo.verify(url)
    assert problems == []
    card = StoreLocation(url).read_bytes("README.md").decode()
    assert front_matter(card)["dataset_info"][0]["splits"][0]["num_examples"] == 3


def test_card_again_renews_the_hashes_of_what_it_rewrites(synthetic_store):
    """A second card for another repository of the same name length rewrites README.md at the same size: the
    manifest must take its new hash, not keep the old one."""
    root = synthetic_store(tile_size=32, splits=SPLITS[:1], copy=True)
    for repo in ("org-a/noldo", "org-b/noldo"):
        result = CliRunner().invoke(cli, ["card", str(root), "--repo", repo])
        assert result.exit_code == 0, result.output
        problems, _ = noldo.verify(root)
        assert problems == [], problems


def test_a_readme_of_the_user_is_never_replaced(synthetic_store):
    root = synthetic_store(tile_size=32, splits=SPLITS[:1], copy=True)
    (root / "README.md").write_text("# my notes\n")
    manifest = (root / "manifest.json").read_bytes()
    result = CliRunner().invoke(cli, ["card", str(root)])
    assert result.exit_code == 1 and "not written by noldo card" in result.stderr
    assert (root / "README.md").read_text() == "# my notes\n" and not (root / "croissant.json").exists()
    assert (root / "manifest.json").read_bytes() == manifest, "nothing of the store changed"
