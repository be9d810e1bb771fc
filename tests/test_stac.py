"""`noldo stac`: the STAC catalogue of a store and its stac-geoparquet files (docs/stac.md).

Every document is validated offline against the STAC 1.1 core schemas pystac ships; the extension
fields are checked here against their published specifications (projection v2.0.0, eo v2.0.0,
sar v1.3.2, product v1.0.0, label v1.0.1, ml-aoi v0.2.0), since no schema may be fetched. The
network is blocked for the whole module, so a schema fetch fails the test.
"""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pystac
import pystac.validation
import pytest
import shapely
import zarr
from click.testing import CliRunner
from shapely.geometry import shape
from stac_geoparquet.arrow import stac_table_to_items

from noldo import catalog
from noldo.cli import cli
from noldo.grid import sample_grid
from noldo.index import acquisition_times, footprint
from noldo.manifest import read_manifest
from noldo.stac import (
    ASSETS,
    EXTENSIONS,
    LABEL_ARRAYS,
    SENTINEL2_LAUNCH,
    SOURCE_ARRAYS,
    SplitStac,
    ml_aoi_split,
    stac_dict,
)
from noldo.stac_write import store_hrefs, target_for
from noldo.store import Split
from noldo.verify import verify
from tests.helpers import write_example_store

SPLITS = [("nol", 20, 0), ("dw_train", 8, 1)]

# --- the specifications, as far as these tests check them ---------------------------------------
#: eo v2.0.0: the common band names.
EO_COMMON_NAMES = {"pan", "coastal", "blue", "green", "green05", "yellow", "red", "rededge", "rededge071",
                   "rededge075", "rededge078", "nir", "nir08", "nir09", "cirrus", "swir16", "swir22", "lwir",
                   "lwir11", "lwir12"}
EO_FIELDS = {"eo:cloud_cover", "eo:snow_cover", "eo:common_name", "eo:center_wavelength", "eo:full_width_half_max",
             "eo:solar_illumination"}
#: sar v1.3.2: frequency bands and polarisations.
SAR_BANDS = {"P", "L", "S", "C", "X", "Ku", "K", "Ka"}
SAR_POLARIZATIONS = {"HH", "VV", "HV", "VH", "LH", "LV", "RH", "RV", "CH", "CV"}
SAR_FIELDS = {"sar:instrument_mode", "sar:frequency_band", "sar:center_frequency", "sar:bandwidth",
              "sar:polarizations", "sar:product_type", "sar:resolution_range", "sar:resolution_azimuth",
              "sar:pixel_spacing_range", "sar:pixel_spacing_azimuth", "sar:looks_range", "sar:looks_azimuth",
              "sar:looks_equivalent_number", "sar:observation_direction", "sar:relative_burst", "sar:beam_ids"}
#: label v1.0.1: item fields (the first three are required).
LABEL_REQUIRED = {"label:properties", "label:description", "label:type"}
LABEL_FIELDS = LABEL_REQUIRED | {"label:classes", "label:tasks", "label:methods", "label:overviews"}
#: ml-aoi v0.2.0
ML_AOI_SPLITS = {"train", "validate", "test"}
ML_AOI_ROLES = {"label", "feature"}
#: STAC 1.1 ``license``: an SPDX identifier (the core schema's pattern) or ``other``.
LICENSE = re.compile(r"^[\w\-.+]+$")
PROJ_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*:[A-Za-z0-9_.-]+$")  # AUTHORITY:CODE


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No network for this module: a schema fetch (or any other connection) raises."""
    def refuse(*args, **kwargs):
        raise OSError("network use in an offline test")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        patch.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="module")
def written(synthetic_store, offline):
    """A two-split synthetic store (nol: 4 seasons; dw_train: 1) after `noldo stac ROOT`, and what it printed."""
    root = synthetic_store(splits=SPLITS, tile_size=40, copy=True)
    result = CliRunner().invoke(cli, ["stac", str(root)])
    assert result.exit_code == 0, result.output
    return root, json.loads(result.stdout)


def documents(folder: Path) -> dict[Path, dict]:
    return {path: json.loads(path.read_text()) for path in sorted(folder.rglob("*.json"))}


def items_of(root: Path, split: str) -> dict[str, tuple[Path, dict]]:
    return {d["id"]: (p, d) for p, d in documents(root / "stac" / split / "items").items()}


def keys_with_prefix(obj, found=None) -> set[str]:
    """Every ``prefix:name`` key of a JSON object, at any depth."""
    found = set() if found is None else found
    if isinstance(obj, dict):
        found.update(k for k in obj if ":" in k)
        for value in obj.values():
            keys_with_prefix(value, found)
    elif isinstance(obj, list):
        for value in obj:
            keys_with_prefix(value, found)
    return found


def test_one_collection_per_split_one_item_per_sample_and_one_label_item_per_label_array(written):
    root, summary = written
    stac = root / "stac"
    links = json.loads((stac / "catalog.json").read_text())["links"]
    assert sorted(link["href"] for link in links if link["rel"] == "child") == [
        f"./{name}/collection.json" for name, _, _ in sorted(SPLITS)]
    for name, samples, _ in SPLITS:
        split = Split.open(root, name)
        labels = [a for a in LABEL_ARRAYS if a in split.layout.arrays]
        assert labels == ["dw", "truth"], "the synthetic source writes Dynamic World labels and the known truth"
        items = items_of(root, name)
        expected = {*split.ids(), *(f"{i}-{a}" for i in split.ids() for a in labels)}
        assert set(items) == expected and len(split.ids()) == samples
        collection = json.loads((stac / name / "collection.json").read_text())
        assert sorted(link["href"].rsplit("/", 1)[-1][:-5] for link in collection["links"]
                      if link["rel"] == "item") == sorted(expected)
        for index, sample in enumerate(split.ids()):
            path, source = items[sample]
            assert source["properties"]["noldo:sample_index"] == index
            assert not keys_with_prefix(source) & LABEL_FIELDS, "a source item holds no label fields"
            assert set(source["assets"]) == {a for a in SOURCE_ARRAYS if a in split.layout.arrays}
            for label in labels:
                label_path, item = items[f"{sample}-{label}"]
                assert item["properties"]["noldo:sample_index"] == index
                assert set(item["assets"]) == {a for a in LABEL_ARRAYS[label] if a in split.layout.arrays}
                sources = [link for link in item["links"] if link["rel"] == "source"]
                assert len(sources) == 1 and (label_path.parent / sources[0]["href"]).resolve() == path.resolve()
                assert item["geometry"] == source["geometry"] and item["bbox"] == source["bbox"]
        assert summary["collections"][name] == {"items": samples, "label_items": samples * len(labels),
                                                "geoparquet": f"{stac}/items-{name}.parquet"}


def test_every_document_validates_against_the_stac_core_schemas_offline_and_round_trips(written):
    root, _ = written
    kinds = {"Feature": pystac.Item, "Collection": pystac.Collection, "Catalog": pystac.Catalog}
    docs = documents(root / "stac")
    assert len(docs) == 1 + sum(1 + n * 3 for _, n, _ in SPLITS)
    for path, d in docs.items():
        assert pystac.validation.validate_dict(d, extensions=[]), path  # raises on an invalid document
        again = kinds[d["type"]].from_dict(d).to_dict(include_self_link=False, transform_hrefs=False)
        assert again == d, f"{path} does not round-trip through pystac"


def test_the_network_is_blocked_so_extension_schemas_cannot_be_fetched(written):
    root, _ = written
    item = next(iter(items_of(root, "nol").values()))[1]
    with pytest.raises(pystac.validation.GetSchemaError):
        pystac.validation.validate_dict(item)  # its extension schemas are not installed


def test_objects_declare_exactly_the_extensions_whose_fields_they_hold(written):
    root, _ = written
    for path, d in documents(root / "stac").items():
        prefixes = {key.partition(":")[0] for key in keys_with_prefix(d)} - {"noldo"}
        assert prefixes <= set(EXTENSIONS), f"{path} uses fields of an unknown extension"
        assert set(d.get("stac_extensions", [])) == {EXTENSIONS[p] for p in prefixes}, path


def check_projection(props: dict, epsg: int, transform: np.ndarray, shape_: tuple[int, int]) -> None:
    assert isinstance(props["proj:code"], str) and PROJ_CODE.match(props["proj:code"])
    assert props["proj:code"] == f"EPSG:{epsg}"
    assert len(props["proj:shape"]) == 2 and all(isinstance(n, int) and n > 0 for n in props["proj:shape"])
    assert tuple(props["proj:shape"]) == shape_, "proj:shape is [y, x]"
    assert len(props["proj:transform"]) in (6, 9) and all(isinstance(v, float | int) for v in props["proj:transform"])
    assert props["proj:transform"][:6] == list(transform), "proj:transform is in rasterio order a, b, c, d, e, f"


def check_eo_bands(asset: dict) -> None:
    assert not {k for k in asset if k.startswith("eo:")}, "eo fields sit in the bands (STAC 1.1)"
    assert [b["name"] for b in asset["bands"]] == [b.name for b in catalog.S2_BANDS]
    for band, known in zip(asset["bands"], catalog.S2_BANDS, strict=True):
        assert {k for k in band if k.startswith("eo:")} <= EO_FIELDS
        assert band["eo:common_name"] in EO_COMMON_NAMES
        wavelength = band["eo:center_wavelength"]
        assert isinstance(wavelength, float) and 0.4 < wavelength < 2.5, "in micrometres"
        assert wavelength == pytest.approx(known.wavelength_nm / 1000, abs=1e-4)
    names = {b["name"]: b["eo:common_name"] for b in asset["bands"]}
    assert (names["B2"], names["B3"], names["B4"], names["B8"], names["B11"]) == ("blue", "green", "red", "nir",
                                                                                   "swir16")


def check_sar(asset: dict) -> None:
    assert {k for k in asset if k.startswith("sar:")} <= SAR_FIELDS
    assert {"sar:instrument_mode", "sar:frequency_band", "sar:polarizations"} <= set(asset), "required in v1.1"
    assert asset["sar:instrument_mode"] == "IW"
    assert asset["sar:frequency_band"] in SAR_BANDS and asset["sar:frequency_band"] == "C"
    assert 4 <= asset["sar:center_frequency"] <= 8, "GHz, within the C band"
    polarizations = asset["sar:polarizations"]
    assert set(polarizations) <= SAR_POLARIZATIONS and len(set(polarizations)) == len(polarizations)
    assert polarizations == [b["name"] for b in asset["bands"]] == ["VV", "VH"], "in the order of the array"
    assert asset["product:type"] == "GRD"


def check_label(item: dict, source: dict, label: str, split: str) -> None:
    props = item["properties"]
    assert set(props) >= LABEL_REQUIRED and {k for k in keys_with_prefix(props) if k.startswith("label:")} <= (
        LABEL_FIELDS)
    assert props["label:type"] in {"raster", "vector"} and props["label:type"] == "raster"
    assert props["label:properties"] is None, "null for raster labels"
    assert isinstance(props["label:description"], str) and props["label:description"]
    legend = catalog.ARRAY_LEGENDS[label]
    assert props["label:classes"] == [{"name": None, "classes": [c.value for c in legend]}], "raster: name null"
    assert all(c.name in props["label:description"] for c in legend)
    assert props["label:tasks"] == ["segmentation"]
    assert set(props["label:methods"]) <= {"automated", "manual"}
    assert item["assets"][label]["roles"] == ["labels"], "a label asset has the role labels (v1.0.0 on)"
    (link,) = [link for link in item["links"] if link["rel"] == "source"]
    assert link["label:assets"] and set(link["label:assets"]) <= set(source["assets"])


def check_ml_aoi(d: dict, split: str) -> None:
    assert d["properties"]["ml-aoi:split"] in ML_AOI_SPLITS
    assert d["properties"]["ml-aoi:split"] == {"nol": "train", "dw_train": "train"}[split]
    for asset in d["assets"].values():
        assert asset.get("ml-aoi:role", "label") in ML_AOI_ROLES


def test_extension_fields_have_the_types_and_values_their_specifications_require(written):
    root, _ = written
    for name, _, _ in SPLITS:
        split = Split.open(root, name)
        group, items = split.group(), items_of(root, name)
        epsg, transforms = group["crs_epsg"][:], group["transform"][:]
        for index, sample in enumerate(split.ids()):
            source = items[sample][1]
            for d in [source, *(items[f"{sample}-{a}"][1] for a in ("dw", "truth"))]:
                check_projection(d["properties"], epsg[index], transforms[index],
                                 (split.layout.height, split.layout.width))
                check_ml_aoi(d, name)
            check_eo_bands(source["assets"]["s2"])
            check_sar(source["assets"]["s1"])
            assert source["assets"]["s2"]["product:type"] == "S2MSI1C"
            assert source["assets"]["s2"]["ml-aoi:role"] == source["assets"]["s1"]["ml-aoi:role"] == "feature"
            for label in ("dw", "truth"):
                item = items[f"{sample}-{label}"][1]
                check_label(item, source, label, name)
                assert item["assets"][label]["ml-aoi:role"] == "label"
        collection = json.loads((root / "stac" / name / "collection.json").read_text())
        assert collection["summaries"]["ml-aoi:split"] == ["train"]
        assert collection["summaries"]["proj:code"] == sorted({f"EPSG:{e}" for e in epsg})
        assert collection["summaries"]["label:type"] == ["raster"]
        check_eo_bands(collection["item_assets"]["s2"])
        check_sar(collection["item_assets"]["s1"])


def test_licences_are_spdx_identifiers_or_other_with_links(written):
    root, _ = written
    for path, d in documents(root / "stac").items():
        if d["type"] == "Catalog":
            continue
        licence = d["license"] if d["type"] == "Collection" else d["properties"]["license"]
        links = {link["href"] for link in d["links"] if link["rel"] == "license"}
        assert LICENSE.match(licence) and links, path
        if d["type"] == "Feature" and d["id"].endswith("-dw"):
            assert licence == "CC-BY-4.0" and links == {catalog.LICENCES["cc-by-4.0"].url}
        elif d["type"] == "Feature" and d["id"].endswith("-truth"):
            assert licence == "CC0-1.0"
        else:  # the Copernicus terms are not on the SPDX list
            assert licence == "other" and catalog.LICENCES["copernicus"].url in links


def test_assets_point_at_the_zarr_arrays_and_items_at_a_sample_of_them(written):
    root, _ = written
    split = Split.open(root, "nol")
    times = acquisition_times(split.index(), 4)
    for index, sample in enumerate(split.ids()[:3]):
        path, source = items_of(root, "nol")[sample]
        for name, asset in source["assets"].items():
            assert asset["type"] == "application/vnd.zarr; version=3"
            array = zarr.open_array(zarr.storage.LocalStore((path.parent / asset["href"]).resolve()), mode="r")
            assert array.metadata.dimension_names[0] == "sample" and array.shape[0] == split.layout.samples
            assert str(array.dtype) == asset["data_type"] == catalog.ARRAYS[name].dtype
            np.testing.assert_array_equal(array[source["properties"]["noldo:sample_index"]],
                                          split.group()[name][index])
        props = source["properties"]
        seasons = [np.datetime64(t.removesuffix("Z")) for t in props["noldo:season_datetimes"]]
        assert seasons == list(times[index])
        assert props["datetime"] is None, "four seasons: a time range"
        assert (props["start_datetime"], props["end_datetime"]) == (
            f"{min(times[index])}Z", f"{max(times[index])}Z")
    one_season = items_of(root, "dw_train")["dw_train-0000000"][1]["properties"]
    assert one_season["datetime"].endswith("Z") and "start_datetime" not in one_season, "one season: datetime"


def test_the_geoparquet_export_reads_back_with_the_same_items(written):
    root, _ = written
    for name, _, _ in SPLITS:
        table = pq.read_table(root / "stac" / f"items-{name}.parquet")
        back = {d["id"]: d for d in stac_table_to_items(table)}
        items = items_of(root, name)
        assert set(back) == set(items)
        for item_id, (_, d) in items.items():
            assert shape(back[item_id]["geometry"]).equals_exact(shape(d["geometry"]), 1e-9)
            assert back[item_id]["assets"].keys() == d["assets"].keys()
        metadata = json.loads(table.schema.metadata[b"stac-geoparquet"])
        assert name in metadata["collections"] and not [
            link for link in metadata["collections"][name]["links"] if link["rel"] == "item"]
        frame = gpd.read_parquet(root / "stac" / f"items-{name}.parquet")
        assert frame.crs.to_epsg() == 4326 and len(frame) == len(items)


def test_the_store_verifies_and_lists_its_catalogue_in_the_manifest(written):
    root, _ = written
    problems, _ = verify(root)
    assert problems == []
    entries = {e["path"]: e for e in read_manifest(root)["files"] if e["path"].startswith("stac/")}
    assert set(entries) == {p.relative_to(root).as_posix() for p in (root / "stac").rglob("*") if p.is_file()}
    assert {(e["split"], e["array"]) for e in entries.values()} == {(None, "meta")}


def test_a_catalogue_outside_the_store_leaves_it_as_it_is_and_points_at_it(synthetic_store, tmp_path):
    root = synthetic_store(samples=20, tile_size=40)
    before = sorted(p.relative_to(root) for p in root.rglob("*") if ".noldo" not in p.parts)
    out = tmp_path / "catalogue"
    for _ in range(2):  # a second run replaces the first catalogue
        result = CliRunner().invoke(cli, ["-q", "stac", str(root), "--out", str(out)])
        assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(root) for p in root.rglob("*") if ".noldo" not in p.parts) == before
    summary = json.loads(result.stdout)
    assert summary["catalog"] == f"{out}/catalog.json" and summary["manifest"] is False
    item = json.loads((out / "nol" / "items" / "nol-0000000.json").read_text())
    assert item["assets"]["s2"]["href"] == f"{root.resolve()}/nol.zarr/s2"
    result = CliRunner().invoke(cli, ["stac", str(root), "--out", str(tmp_path / "published"),
                                      "--href-base", "s3://bucket/noldo/"])
    assert result.exit_code == 0, result.output
    item = json.loads((tmp_path / "published" / "nol" / "items" / "nol-0000000-dw.json").read_text())
    assert item["assets"]["dw"]["href"] == "s3://bucket/noldo/nol.zarr/dw"


def test_refusals_are_one_line_errors(synthetic_store, tmp_path):
    root = synthetic_store(samples=20, tile_size=40)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    for args, words in ((["stac", str(tmp_path / "missing")], "not a noldo store"),
                        (["stac", str(tmp_path)], "no noldo splits"),
                        (["stac", str(root), "--out", str(tmp_path / "busy")], "not part of a noldo STAC catalogue"),
                        (["stac", str(root), "--out", str(root / "elsewhere")], "inside the store")):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and result.stderr.startswith("error: ") and words in result.stderr, args
        assert len(result.stderr.splitlines()) == 1
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_an_earlier_catalogue_beside_other_files_is_not_replaced(synthetic_store, tmp_path):
    root, out = synthetic_store(samples=20, tile_size=40), tmp_path / "catalogue"
    assert CliRunner().invoke(cli, ["-q", "stac", str(root), "--out", str(out)]).exit_code == 0
    (out / "notes.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["-q", "stac", str(root), "--out", str(out)])
    assert result.exit_code == 1 and "'notes.txt'" in result.stderr
    assert (out / "notes.txt").read_text() == "mine" and (out / "catalog.json").is_file()


def split_stac(root: Path, name: str) -> SplitStac:
    return SplitStac(Split.open(root, name), store_hrefs(root, target_for(root, None), None))


def test_an_item_across_the_antimeridian_has_two_polygons_and_a_bbox_from_west_to_east(written):
    root, _ = written
    grid = sample_grid(179.999, 10.0, size=40)
    times = np.array(["2021-03-01T10:00:00"] * 4, dtype="datetime64[s]")
    d = stac_dict(split_stac(root, "nol").items(0, "nol-0000000", grid, footprint(grid), times)[0])
    assert d["geometry"]["type"] == "MultiPolygon" and shapely.geometry.shape(d["geometry"]).is_valid
    west, south, east, north = d["bbox"]
    assert west > 179.9 and east < -179.9 and south < north, "RFC 7946: west > east across the antimeridian"
    assert d["properties"]["proj:code"] == "EPSG:32660" and d["properties"]["datetime"] == "2021-03-01T10:00:00Z"
    assert pystac.validation.validate_dict(d, extensions=[])


def test_a_sample_without_times_spans_sentinel_2_to_the_store_and_one_without_imagery_has_no_assets(tmp_path):
    write_example_store(tmp_path / "store", samples=3, seasons=4, size=16, arrays=("dw",))
    stac = split_stac(tmp_path / "store", "nol")
    split = Split.open(tmp_path / "store", "nol")
    created = datetime.fromisoformat(split.attrs["provenance"]["created"])
    grid = split.grids(0, 1)[0]
    source, label = (stac_dict(i) for i in stac.items(0, split.ids()[0], grid, footprint(grid),
                                                      np.full(4, np.datetime64("NaT"), dtype="datetime64[s]")))
    assert source["assets"] == {} and source["properties"]["license"] == "CC0-1.0"
    assert source["properties"]["noldo:season_datetimes"] == [None] * 4
    for d in (source, label):
        props = d["properties"]
        assert props["datetime"] is None and props["start_datetime"] == SENTINEL2_LAUNCH.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert datetime.fromisoformat(props["end_datetime"].replace("Z", "+00:00")) == created.astimezone(UTC)
        assert pystac.validation.validate_dict(d, extensions=[])
    assert "label:assets" not in next(link for link in label["links"] if link["rel"] == "source")
    assert EXTENSIONS["eo"] not in source["stac_extensions"]


def test_ml_aoi_split_of_every_standard_split():
    assert {name: ml_aoi_split(name) for name in catalog.SPLITS} == {
        "nol": "train", "dw_train": "train", "dw_test": "test", "osm_train": "train", "osm_test": "test",
        "dfc2020_val": "validate", "dfc2020_test": "test"}
    assert ml_aoi_split("osm_test_512x512") == "test" and ml_aoi_split("demo") is None


def test_every_image_array_has_an_asset_in_a_source_or_a_label_item():
    assert set(ASSETS) == set(catalog.IMAGE_ARRAYS)
    assert sorted([*SOURCE_ARRAYS, *(a for arrays in LABEL_ARRAYS.values() for a in arrays)]) == sorted(
        catalog.IMAGE_ARRAYS)


def test_a_stopped_run_is_finished_by_running_it_again(synthetic_store, tmp_path):
    """A run stopped after some items but before the split's collection.json leaves items/ alone in the split
    folder: that is still our catalogue, and the next run replaces it."""
    root, out = synthetic_store(samples=20, tile_size=40), tmp_path / "catalogue"
    assert CliRunner().invoke(cli, ["-q", "stac", str(root), "--out", str(out)]).exit_code == 0
    (out / "nol" / "collection.json").unlink()
    result = CliRunner().invoke(cli, ["-q", "stac", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "nol" / "collection.json").is_file()


def test_an_id_that_cannot_name_a_file_is_refused_before_anything_is_written(tmp_path):
    import pandas as pd

    from noldo.store import Layout, SplitWriter
    from tests.helpers import example_arrays

    layout = Layout(2, 1, 16, 16, ("s2", "dw"))
    writer = SplitWriter(tmp_path / "store", "dw_train", layout, {"source": "example"})
    writer.write_shard(0, example_arrays(layout), pd.DataFrame({"sample": ["fine", "../escape"]}))
    writer.finalize()
    result = CliRunner().invoke(cli, ["stac", str(tmp_path / "store"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "'../escape'" in result.stderr
    assert not (tmp_path / "out" / "dw_train").exists(), "no item was written"
