"""The notebooks: paired with their .py files, outputs stripped, and executed with a small configuration.

Each notebook has a cell tagged ``parameters``; the test adds a cell after it with small settings and
paths in a temporary folder (as papermill does), then runs the notebook in a real Jupyter kernel.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
NAMES = ["01-explore-a-store", "02-build-from-earth-engine", "03-pretrain-and-transfer"]


def execute(name: str, overrides: dict[str, str], timeout: int = 900) -> nbformat.NotebookNode:
    """Run a notebook with ``overrides`` (name → Python expression) injected after its parameters cell."""
    notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    source = "\n".join(f"{key} = {value}" for key, value in overrides.items())
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected"]}))
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode, kind: str) -> list:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
            if kind in out.get("data", {})]


@pytest.fixture(autouse=True)
def kernel_environment(monkeypatch):
    """The kernel runs this interpreter, offline, with the repository importable."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(NOTEBOOKS.parent), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_paired_and_stripped(name):
    paired = jupytext.read(NOTEBOOKS / f"{name}.py")
    stored = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert [c.source for c in stored.cells] == [c.source for c in paired.cells], \
        f"run `jupytext --sync notebooks/{name}.py`"
    assert all(not c.get("outputs") and not c.get("execution_count") for c in stored.cells if c.cell_type == "code")


def test_explore_a_store(tmp_path):
    notebook = execute("01-explore-a-store", {"ROOT": f"Path({str(tmp_path / 'demo')!r})", "SAMPLES": "8",
                                              "OSM_ROOT": f"Path({str(tmp_path / 'helsinki')!r})"})
    assert len(outputs(notebook, "image/png")) >= 5  # two sample plots, the grid, the class bars, Helsinki
    assert (tmp_path / "helsinki" / "nol.zarr" / "osm").is_dir()


def test_build_from_earth_engine(tmp_path, monkeypatch):
    """Against the loopback Earth Engine: the notebook sees only NOLDO_EE_URL and a service-account key."""
    from noldo.testing.earthengine import Catalogue, FakeEarthEngine

    with FakeEarthEngine(Catalogue((11.3, 48.0, 11.5, 48.15), "2019-11-01", "2021-11-01", 32632)) as fake:
        monkeypatch.setenv("NOLDO_EE_URL", fake.url)
        monkeypatch.setenv("NOLDO_EE_PROJECT", "noldo-test")
        monkeypatch.setenv("NOLDO_EE_SERVICE_ACCOUNT_KEY", str(fake.service_account_key(tmp_path)))
        notebook = execute("02-build-from-earth-engine", {"OUT": f"Path({str(tmp_path / 'ee')!r})", "SAMPLES": "2"})
    assert fake.requests["computePixels"] > 0
    assert len(outputs(notebook, "image/png")) >= 2  # the candidate map and a sample
    from noldo.verify import verify

    assert verify(tmp_path / "ee")[0] == []


def test_pretrain_and_transfer(tmp_path):
    small = {"DATA": f"Path({str(tmp_path / 'demo')!r})", "OUT": f"Path({str(tmp_path / 'runs')!r})",
             "STORE": '{"region": "demo", "samples": 12, "truth_train": 8, "truth_test": 4, "truth_tile": 64}',
             "PRETRAIN": '{"epochs": 2, "T": 1, "batch_size": 4, "crop": 64, "val_fraction": 0.2}',
             "FINETUNE": '{"task": "truth", "modality": "s2", "encoder": "resnet18", "epochs": 1, "batch_size": 4, '
                         '"crop": 32, "cosine_epochs": 1, "workers": 0}'}
    notebook = execute("03-pretrain-and-transfer", small)
    assert len(outputs(notebook, "image/png")) >= 2  # the loss curve and the selection figure
    table = "".join(out["data"]["text/markdown"] for out in outputs(notebook, "text/markdown"))
    assert "CromSS-midF" in table and "random" in table
    assert len(__import__("pandas").read_csv(tmp_path / "runs" / "results.csv")) == 4
