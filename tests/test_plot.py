"""`noldo plot` writes a real picture of a sample."""

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from noldo.build import BuildSpec, build
from noldo.cli import cli


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot") / "demo"
    build(BuildSpec("demo", "synthetic", samples=3, tile_size=64), root)
    return root


@pytest.mark.parametrize(("args", "panels"), [([], 4 * 3 + 1), (["--season", "2"], 4)])
def test_plot_writes_a_non_blank_png(demo_store, tmp_path, args, panels):
    out = tmp_path / "sample.png"
    result = CliRunner().invoke(cli, ["plot", str(demo_store), "--sample", "1", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    image = imread(out)
    assert image.ndim == 3 and image.shape[0] > 200
    assert image[..., :3].std() > 0.1, "the picture is blank"
    # the Dynamic World palette appears: trees are #397D49
    trees = np.array([0x39, 0x7D, 0x49]) / 255
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
