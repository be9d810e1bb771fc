"""The catalogue is consistent, and CATALOG.md is what `noldo catalog` prints."""

import re
from pathlib import Path

from click.testing import CliRunner

from noldo import catalog
from noldo.catalog_doc import markdown
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


def test_seasons_are_chronological():
    dates = [s.reference_date for s in catalog.SEASONS]
    assert dates == sorted(dates) and len(dates) == 4


def test_every_array_has_a_known_licence():
    assert all(a.licence in catalog.LICENCES for a in catalog.ARRAYS.values())
    assert catalog.ARRAYS["osm"].licence == "odbl-1.0"
