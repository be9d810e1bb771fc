"""`noldo plot` writes a real picture of a sample."""

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from noldo import catalog
from noldo.cli import cli
from noldo.plot import label_colours, plot_sample


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255


@pytest.fixture(scope="module")
def demo_store(synthetic_store):
    return synthetic_store(samples=3, tile_size=64)


@pytest.mark.parametrize(("args", "panels"), [([], 4 * 3 + 1), (["--season", "2"], 4)])
def test_plot_writes_a_non_blank_png(demo_store, tmp_path, args, panels):
    out = tmp_path / "sample.png"
    result = CliRunner().invoke(cli, ["plot", str(demo_store), "--sample", "1", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    image = imread(out)
    assert image.ndim == 3 and image.shape[0] > 200
    assert image[..., :3].std() > 0.1, "the picture is blank"
    # the Dynamic World palette of the catalogue appears
    trees = _rgb(catalog.DW_CLASSES[1].colour)
    assert (np.abs(image[..., :3] - trees).max(axis=-1) < 0.02).sum() > 50


@pytest.mark.parametrize(("args", "message"), [
    (["--sample", "9"], "outside 0–2"),
    (["--sample", "nol-9999999"], "no sample 'nol-9999999'"),
    (["--season", "4"], "season 4 is outside"),
    (["--split", "dw_test"], "no split 'dw_test'"),
])
def test_plot_errors(demo_store, tmp_path, args, message):
    result = CliRunner().invoke(cli, ["plot", str(demo_store), "--out", str(tmp_path / "x.png"), *args])
    assert result.exit_code == 1 and message in result.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("legend", list(catalog.LEGENDS.values()), ids=list(catalog.LEGENDS))
def test_label_colours_are_the_catalog_colours(legend):
    values = np.array([[cls.value for cls in legend] + [255]], dtype="uint8")
    rgb = label_colours(values, legend)
    expected = np.stack([_rgb(cls.colour) for cls in legend] + [_rgb(catalog.NODATA_COLOUR)])
    np.testing.assert_allclose(rgb[0], expected, atol=1e-6)


def test_plot_legend_uses_the_catalog_colours(demo_store):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    fig = plot_sample(demo_store, "nol", 0)
    patches = {text.get_text(): to_hex(patch.get_facecolor()).upper()
               for patch, text in zip(fig.legends[0].get_patches(), fig.legends[0].get_texts(), strict=True)}
    plt.close(fig)
    assert patches == {**{f"{c.value} {c.name}": c.colour for c in catalog.DW_CLASSES},
                       "nodata / no label": catalog.NODATA_COLOUR}
