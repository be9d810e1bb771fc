"""The `noldo` command line: version, info JSON, one-line errors."""

import json
import subprocess
import sys

from click.testing import CliRunner

import noldo
from noldo.cli import cli


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output == f"noldo, version {noldo.__version__}\n"


def test_help_lists_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("info", "verify", "catalog", "manifest"):
        assert command in result.output


def test_info_json(example_store):
    root, data = example_store
    result = CliRunner().invoke(cli, ["info", str(root)])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["root"] == str(root)
    nol = info["splits"]["nol"]
    assert nol["samples"] == 70
    s2 = nol["arrays"]["s2"]
    assert s2["shape"] == [70, 4, 13, 32, 32] and s2["dtype"] == "uint16"
    assert s2["bytes"] == data["s2"].nbytes and s2["stored_bytes"] > 0
    assert set(nol["arrays"]) == {"s2", "s1", "dw", "crs_epsg", "center_lon", "center_lat", "transform", "time"}


def test_errors_are_one_line_without_traceback(tmp_path):
    for args in (["info", str(tmp_path / "missing")], ["verify", str(tmp_path)]):
        proc = subprocess.run([sys.executable, "-m", "noldo", *args], capture_output=True, text=True)
        assert proc.returncode == 1
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: "), proc.stderr
        assert "Traceback" not in proc.stderr


def test_build_with_bad_region_is_one_line(tmp_path):
    for region in ("12,48,11,49", "nowhere", str(tmp_path / "missing.geojson"), "11,48,200,49"):
        result = CliRunner().invoke(cli, ["build", "--region", region, "--source", "synthetic",
                                          "--out", str(tmp_path / "out")])
        assert result.exit_code == 1
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
        assert not (tmp_path / "out").exists(), "a refused build writes nothing"


def test_regions_lists_the_gazetteer():
    result = CliRunner().invoke(cli, ["regions"])
    assert result.exit_code == 0 and result.output.startswith("demo ") and "helsinki" in result.output
