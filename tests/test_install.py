"""The core install is complete on its own: `pip install noldo` (no extras) builds, verifies and describes.

The fast test checks that every third-party module imported anywhere under ``noldo/`` (module level or
inside a function) belongs to a distribution declared in ``[options] install_requires``. The slow test
installs the committed tree without extras into a fresh virtual environment and runs the CLI there.
"""

from __future__ import annotations

import ast
import configparser
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "noldo"
#: The torch stack of the `benchmark` extra: none of it may arrive with the core install.
HEAVY = {"torch": "torch", "lightning": "lightning", "segmentation_models_pytorch": "segmentation-models-pytorch"}


def normalise(name: str) -> str:
    """A distribution name in PEP 503 form: ``PyYAML`` → ``pyyaml``, ``huggingface_hub`` → ``huggingface-hub``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(section: str, key: str, setup_cfg: Path = REPO / "setup.cfg") -> set[str]:
    """The normalised distribution names a setup.cfg entry lists (other extras of noldo left out)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(setup_cfg)
    lines = (line.split("#", 1)[0].strip() for line in parser[section][key].splitlines())
    return {normalise(Requirement(line).name) for line in lines if line and not line.startswith("noldo[")}


def install_requires(setup_cfg: Path = REPO / "setup.cfg") -> set[str]:
    """The normalised distribution names of ``[options] install_requires``."""
    return requirements("options", "install_requires", setup_cfg)


def third_party_imports(sources: dict[str, str]) -> dict[str, list[str]]:
    """Top-level third-party module → ``file:line`` of each import, for every import statement (any depth)."""
    found: dict[str, list[str]] = {}
    for where, text in sources.items():
        for node in ast.walk(ast.parse(text, where)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue  # relative imports are noldo's own
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("__future__", "noldo"):
                    found.setdefault(top, []).append(f"{where}:{node.lineno}")
    return found


def undeclared(sources: dict[str, str], declared: set[str]) -> dict[str, str]:
    """Module → why it is not covered by ``declared`` (its distributions, or that none provides it here)."""
    providers = importlib.metadata.packages_distributions()
    problems = {}
    for module, places in sorted(third_party_imports(sources).items()):
        dists = {normalise(d) for d in providers.get(module, [])}
        if not dists:
            problems[module] = f"no installed distribution provides it (imported at {', '.join(places)})"
        elif not dists & declared:
            problems[module] = f"from {', '.join(sorted(dists))}, not in install_requires ({', '.join(places)})"
    return problems


def noldo_sources() -> dict[str, str]:
    return {str(path.relative_to(REPO)): path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}


#: Modules of the noldo package that only a setup.cfg extra makes usable (the loopback S3 server needs
#: moto, a test dependency); nothing else in noldo imports them.
EXTRA_ONLY = {"noldo/testing/s3.py": "test"}


def test_every_noldo_import_is_declared_in_install_requires():
    sources = noldo_sources()
    assert "noldo/sources/synthetic.py" in sources
    imports = third_party_imports(sources)
    assert {"numpy", "scipy", "affine", "zarr"} <= set(imports)  # the scan sees what noldo imports
    core = {where: text for where, text in sources.items() if where not in EXTRA_ONLY}
    assert undeclared(core, install_requires()) == {}
    for where, extra in EXTRA_ONLY.items():
        declared = install_requires() | requirements("options.extras_require", extra)
        assert undeclared({where: sources[where]}, declared) == {}, where
        importers = [w for w, text in core.items() if re.search(rf"\bnoldo\.testing\.{Path(where).stem}\b", text)]
        assert importers == [], f"{where} needs the {extra} extra; {importers} import it"


def test_the_import_check_flags_an_undeclared_import():
    declared = install_requires()
    assert "torch" not in declared and "scipy" in declared and "affine" in declared
    sources = {"noldo/extra.py": "import numpy\n\ndef f():\n    import torch.nn as nn\n    from affine import Affine\n",
               "noldo/other.py": "from . import grid\nimport json, os.path\nfrom noldo.grid import Grid\n"}
    assert set(third_party_imports(sources)) == {"numpy", "torch", "affine"}
    assert set(undeclared(sources, declared)) == {"torch"}
    assert set(undeclared(sources, declared - {"scipy"} - {"affine"})) == {"torch", "affine"}


def run(args: list, *, env: dict, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd,
                            timeout=timeout)
    output = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{' '.join(map(str, args))} exited {result.returncode}\n{output}"
    return result


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_core_install_without_extras_builds_verifies_and_catalogues(tmp_path):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git checkout (git archive HEAD)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", MPLBACKEND="Agg", PYTHONNOUSERSITE="1")

    # the committed tree only: no uncommitted files, no .venv, no egg-info
    src = tmp_path / "src"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "HEAD"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    assert (src / "noldo" / "data" / "places.csv").is_file()

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], env=env, cwd=tmp_path)
    python, noldo = venv / "bin" / "python", venv / "bin" / "noldo"
    start = time.monotonic()
    run([python, "-m", "pip", "install", "--quiet", "--timeout", "180", src], env=env, cwd=tmp_path, timeout=3000)
    print(f"\ncore install (no extras) into a fresh venv took {time.monotonic() - start:.0f} s")

    where = run([python, "-c", "import noldo; print(noldo.__file__)"], env=env, cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the installed copy, not the repository
    code = ("import importlib.metadata as md, importlib.util, json, sys\n"
            "def installed(dist):\n"
            "    try:\n        md.distribution(dist)\n        return True\n"
            "    except md.PackageNotFoundError:\n        return False\n"
            "print(json.dumps({m: importlib.util.find_spec(m) is not None or installed(d)"
            " for m, d in json.loads(sys.argv[1]).items()}))")
    heavy = json.loads(run([python, "-c", code, json.dumps(HEAVY)], env=env, cwd=tmp_path).stdout)
    assert heavy == dict.fromkeys(HEAVY, False), f"the core install pulled in {heavy}"

    catalog = run([noldo, "catalog"], env=env, cwd=tmp_path).stdout
    assert catalog.startswith("# NoLDO-S12 catalogue\n"), catalog[:200]

    store = tmp_path / "store"
    built = run([noldo, "build", "--region", "demo", "--source", "synthetic", "--out", store, "--samples", "2",
                 "--tile-size", "32"], env=env, cwd=tmp_path).stdout
    summary = json.loads(built)
    assert summary["samples"] == 2 and summary["source"] == "synthetic", summary
    verified = run([noldo, "verify", store], env=env, cwd=tmp_path).stdout
    assert verified.startswith("ok: "), verified
