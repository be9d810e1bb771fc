"""The catalogue is consistent, and CATALOG.md is what `noldo catalog` prints."""

import re
from pathlib import Path

from click.testing import CliRunner

from noldo import catalog
from noldo.catalog_doc import markdown, split_raw_bytes
from noldo.cli import cli

HEX = re.compile(r"^#[0-9A-F]{6}$")
CATALOG_MD = Path(__file__).resolve().parents[1] / "CATALOG.md"


def test_catalog_md_is_up_to_date():
    assert CATALOG_MD.read_text() == markdown(), "CATALOG.md is stale: run `noldo catalog > CATALOG.md`"


def test_noldo_catalog_prints_catalog_md():
    result = CliRunner().invoke(cli, ["catalog"])
    assert result.exit_code == 0
    assert result.output == CATALOG_MD.read_text()


def test_bands_are_in_ssl4eo_order():
    assert [b.name for b in catalog.S2_BANDS] == ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A",
                                                  "B9", "B10", "B11", "B12"]
    assert [b.index for b in catalog.S2_BANDS] == list(range(13))
    assert [b.name for b in catalog.S1_BANDS] == ["VV", "VH"]
    assert all(b.std > 0 for b in (*catalog.S2_BANDS, *catalog.S1_BANDS))
    wavelengths = [b.wavelength_nm for b in catalog.S2_BANDS]
    assert wavelengths == sorted(wavelengths)


def test_band_subsets():
    assert catalog.band_subset("13B") == tuple(range(13))
    assert [catalog.S2_BANDS[i].name for i in catalog.band_subset("9B")] == [
        "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12"]


def test_legends_are_complete_and_map_to_dynamic_world():
    assert [c.value for c in catalog.DW_CLASSES] == list(range(9))
    assert [c.value for c in catalog.OSM_CLASSES] == list(range(1, 14))
    assert [c.value for c in catalog.DFC2020_CLASSES] == list(range(1, 11))
    for legend in catalog.LEGENDS.values():
        assert all(HEX.match(c.colour) for c in legend)
    assert all(c.dw_value in range(9) for c in catalog.OSM_CLASSES)
    mapped = {c.dw_value for c in catalog.DFC2020_CLASSES if c.dw_value is not None}
    assert mapped == set(range(8)), "DFC2020 maps onto the 8 DW classes without snow"


def test_dynamic_world_legend_is_the_official_palette():
    official = {"water": "#419BDF", "trees": "#397D49", "grass": "#88B053", "flooded_vegetation": "#7A87C6",
                "crops": "#E49635", "shrub_and_scrub": "#DFC35A", "built": "#C4281B", "bare": "#A59B8F",
                "snow_and_ice": "#B39FE1"}
    assert {c.name: c.colour for c in catalog.DW_CLASSES} == official
    assert list(official) == [c.name for c in catalog.DW_CLASSES]
    assert HEX.match(catalog.NODATA_COLOUR)
    assert catalog.ARRAY_LEGENDS["dw"] is catalog.ARRAY_LEGENDS["truth"] is catalog.DW_CLASSES


def test_split_sizes_are_computed_from_the_layout():
    published = {"nol": 103_793, "dw_train": 3_574, "dw_test": 340, "osm_train": 1_375, "osm_test": 400,
                 "dfc2020_val": 986, "dfc2020_test": 5_128}
    assert {s.name: s.samples for s in catalog.SPLITS.values()} == published
    nol = split_raw_bytes(catalog.SPLITS["nol"])
    assert nol == {"s2": 103_793 * 4 * 13 * 264 * 264 * 2, "s1": 103_793 * 4 * 2 * 264 * 264 * 4,
                   "dw": 103_793 * 4 * 264 * 264}
    assert split_raw_bytes(catalog.SPLITS["osm_test"])["osm"] == 400 * 512 * 512
    splits = markdown().split("## Splits")[1].split("\n## ")[0]
    assert "| nol | 103,793 | 4 | 264×264 | s2, s1, dw | 1,013 GB (s2 752, s1 231, dw 28.9) |" in splits
    assert "`noldo info ROOT`" in splits


def test_citation_section():
    text = markdown().split("## Citation")[1]
    assert "@article{liu2025cromss," in text and "arXiv:2405.01217" in text
    assert "IEEE Transactions on Geoscience and Remote Sensing" in text
    assert "SSL4EO-S12" in text and "Dynamic World" in text
    assert catalog.REFERENCES[0].key == "liu2025cromss" and catalog.REFERENCES[0].doi is None


def test_seasons_are_chronological():
    dates = [s.reference_date for s in catalog.SEASONS]
    assert dates == sorted(dates) and len(dates) == 4


def test_every_array_has_a_known_licence():
    assert all(a.licence in catalog.LICENCES for a in catalog.ARRAYS.values())
    assert catalog.ARRAYS["osm"].licence == "odbl-1.0"
    assert {"copernicus", "cc-by-4.0", "odbl-1.0"} <= set(catalog.LICENCES)


def test_the_noise_figure_renders(tmp_path):
    from noldo.noise_figure import render

    out = render(tmp_path / "noise.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 50_000
