"""`noldo convert`: the published layouts and DFC2020 into stores, pixel for pixel, georeference kept."""

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import zarr
from click.testing import CliRunner

from noldo.cli import cli
from noldo.verify import verify
from tests.published_layouts import dfc_folder, nol_zip, tiles_zip


def run(*args):
    result = CliRunner().invoke(cli, list(map(str, args)))
    return result


def group(root, split):
    return zarr.open_group(root / f"{split}.zarr", mode="r")


def test_nol_labels(tmp_path):
    source, expected = nol_zip(tmp_path / "ssl4eo_s12_nol.zip")
    result = run("convert", source, "--out", tmp_path / "store")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["splits"] == {"nol": 3}
    g = group(tmp_path / "store", "nol")
    index = pd.read_parquet(tmp_path / "store" / "nol.parquet")
    assert list(index["sample"]) == ["nol-0000003", "nol-0000017", "nol-0000042"]
    for i, key in enumerate(expected):
        np.testing.assert_array_equal(g["dw"][i], expected[key])
    assert [index[f"s2_id_t{t}"][0][:8] for t in range(4)] == ["20201201", "20210301", "20210601", "20210901"]
    assert g["crs_epsg"][0] == 4326, "the published NoL labels carry approximate lat/lon georeference"
    assert verify(tmp_path / "store")[0] == []


def test_dw_tiles_round_trip(tmp_path):
    source, expected = tiles_zip(tmp_path / "ssl4eo_s12_dw.zip", {"dw_train": (3, 24), "dw_test": (2, 26)})
    result = run("convert", source, "--out", tmp_path / "store")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["splits"] == {"dw_test": 2, "dw_train": 3}
    for split, tiles in expected.items():
        g = group(tmp_path / "store", split)
        for i, tile in enumerate(tiles.values()):
            np.testing.assert_array_equal(g["s2"][i, 0], tile["s2"].astype("uint16"))
            np.testing.assert_array_equal(g["s1"][i, 0], tile["s1"])
            dw = np.where((tile["dw"] >= 1) & (tile["dw"] <= 9), tile["dw"].astype(int) - 1, 255)
            np.testing.assert_array_equal(g["dw"][i, 0], dw)
            assert g["crs_epsg"][i] == 32632 and tuple(g["transform"][i]) == tile["transform"]
    assert verify(tmp_path / "store")[0] == []


@pytest.mark.parametrize("order", ["noldo", "readme"])
def test_osm_tiles_and_label_orders(tmp_path, order):
    source, expected = tiles_zip(tmp_path / "ssl4eo_s12_osm.zip", {"osm_train": (2, 20), "osm_test": (1, 20)},
                                 with_osm=True)
    assert run("convert", source, "--out", tmp_path / order, "--osm-order", order).exit_code == 0
    from noldo.catalog import OSM_README_ORDER

    g = group(tmp_path / order, "osm_train")
    raw = next(iter(expected["osm_train"].values()))
    mapping = np.arange(256) if order == "noldo" else np.array([0, *OSM_README_ORDER, *range(14, 256)])
    np.testing.assert_array_equal(g["osm"][0], mapping[raw["osm"]])
    assert tuple(g["transform"][0]) == raw["transform"], "georeference from the images, not the OSM header"


def test_mixed_tile_sizes_become_separate_splits(tmp_path):
    source, _ = tiles_zip(tmp_path / "a.zip", {"osm_test": (2, 20)}, with_osm=True)
    more, _ = tiles_zip(tmp_path / "b.zip", {"osm_test": (1, 22)}, with_osm=True, seed=5)
    with zipfile.ZipFile(source, "a") as out, zipfile.ZipFile(more) as extra:
        for name in extra.namelist():
            out.writestr(name.replace("2019061", "2019071"), extra.read(name))
    result = run("convert", source, "--out", tmp_path / "store")
    assert json.loads(result.stdout)["splits"] == {"osm_test_20x20": 2, "osm_test_22x22": 1}


def test_dfc2020_mapping(tmp_path):
    folder, expected = dfc_folder(tmp_path / "DFC2020")
    result = run("convert", folder, "--out", tmp_path / "store")
    assert result.exit_code == 0, result.output
    from noldo.convert import DFC_TO_DW

    g = group(tmp_path / "store", "dfc2020_val")
    np.testing.assert_array_equal(g["dw"][0, 0], DFC_TO_DW[expected["validation"][1]["dfc"]])
    assert set(np.unique(g["dw"][:])) <= set(range(8)) | {255}
    assert (g["dw"][0, 0][expected["validation"][1]["dfc"] == 3] == 255).all(), "savanna is ignored"
    np.testing.assert_array_equal(g["s2"][2, 0], expected["validation"][3]["s2"])


def test_conversion_resumes(tmp_path):
    source, _ = tiles_zip(tmp_path / "dw.zip", {"dw_train": (70, 8)})
    assert run("convert", source, "--out", tmp_path / "store").exit_code == 0
    shard = tmp_path / "store/dw_train.zarr/s2/c/1/0/0/0/0"
    before = shard.read_bytes()
    shard.unlink()
    assert verify(tmp_path / "store")[0], "the deleted shard is noticed"
    again = run("convert", source, "--out", tmp_path / "store")
    assert again.exit_code == 0 and shard.read_bytes() == before
    assert verify(tmp_path / "store")[0] == []


def test_damaged_inputs_are_refused(tmp_path):
    source, _ = tiles_zip(tmp_path / "dw.zip", {"dw_train": (2, 8)})
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as z:  # flip a byte inside the first member's compressed data
        info = z.infolist()[0]
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 5
    data[offset] ^= 0xFF
    source.write_bytes(bytes(data))
    result = run("convert", source, "--out", tmp_path / "store")
    assert result.exit_code == 1 and "damaged" in result.stderr and "Traceback" not in result.output
    (tmp_path / "nothing.zip").write_bytes(b"not a zip")
    result = run("convert", tmp_path / "nothing.zip", "--out", tmp_path / "store2")
    assert result.exit_code == 1 and "neither a folder nor a readable zip" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run("convert", tmp_path / "empty", "--out", tmp_path / "store3")
    assert result.exit_code == 1 and "none of the known layouts" in result.stderr
