"""Helpers shared by the tests: a small store of random arrays, array comparison, killing a noldo process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from noldo.grid import sample_grid
from noldo.manifest import write_manifest
from noldo.store import Layout, Split, SplitWriter, georef_arrays


def example_arrays(layout: Layout, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic random arrays for every array of ``layout`` (georeference from real grids)."""
    rng = np.random.default_rng(seed)
    n = layout.samples
    grids = [sample_grid(11.0 + 0.05 * i, 48.0 + 0.01 * (i % 7), layout.height) for i in range(n)]
    arrays = {
        "s2": rng.integers(1, 5000, layout.shape("s2"), dtype="uint16"),
        "s1": rng.normal(-15, 5, layout.shape("s1")).astype("float32"),
        "dw": rng.integers(0, 9, layout.shape("dw"), dtype="uint8"),
        "osm": rng.integers(0, 14, layout.shape("osm"), dtype="uint8"),
        "truth": rng.integers(0, 9, layout.shape("truth"), dtype="uint8"),
    }
    return {**{k: arrays[k] for k in layout.arrays}, **georef_arrays(grids)}


def write_example_store(root: Path, samples: int = 70, seasons: int = 4, size: int = 32, split: str = "nol",
                        arrays: tuple[str, ...] = ("s2", "s1", "dw"), seed: int = 0) -> dict[str, np.ndarray]:
    """Write a finished split of random data; returns the arrays written."""
    layout = Layout(samples, seasons, size, size, arrays)
    data = example_arrays(layout, seed)
    writer = SplitWriter(root, split, layout, {"source": "example", "command": f"example-store {root}"})
    for shard in writer.pending_shards():
        start, stop = layout.shard_range(shard)
        index = pd.DataFrame({"sample": [f"{split}-{i:07d}" for i in range(start, stop)]})
        writer.write_shard(shard, {k: v[start:stop] for k, v in data.items()}, index)
    write_manifest(root, known_hashes=writer.finalize())
    return data


def write_store_with_nodata(root: Path) -> dict[str, np.ndarray]:
    """A finished 3-sample split with nodata in S2 (0), S1 (NaN) and DW (255), and times for one season."""
    layout = Layout(3, 4, 16, 16, ("s2", "s1", "dw"))
    data = example_arrays(layout)
    data["s2"][0, 1, :, :5] = 0  # unimaged
    data["s1"][1, 2, :, 3:] = np.nan
    data["dw"][2, :, :4] = 255
    writer = SplitWriter(root, "nol", layout, {"source": "example"})
    index = pd.DataFrame({"sample": ["a", "b", "c"], "s2_time_t0": ["2021-01-05T10:00:00Z", None, None]})
    writer.write_shard(0, data, index)
    writer.finalize()
    return data


def assert_same_arrays(a, b) -> None:
    """The `nol` split of two stores (paths or URLs) holds the same arrays and the same sample index."""
    sa, sb = Split.open(a, "nol"), Split.open(b, "nol")
    ga, gb = sa.group(), sb.group()
    names = sorted(n for n, _ in ga.arrays())
    assert names == sorted(n for n, _ in gb.arrays())
    for name in names:
        np.testing.assert_array_equal(ga[name][:], gb[name][:], err_msg=name)
    pd.testing.assert_frame_equal(sa.index(), sb.index())


def kill_noldo(args: list[str], until, env: dict[str, str] | None = None, timeout: float = 120,
               module: str = "noldo") -> bool:
    """Start `python -m MODULE ARGS`, SIGKILL it as soon as ``until()`` holds; True if it was still running."""
    child = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout
    while child.poll() is None and not until() and time.monotonic() < deadline:
        time.sleep(0.005)
    killed = child.poll() is None
    if killed:
        os.kill(child.pid, signal.SIGKILL)
    child.wait()
    return killed


REPO = str(Path(__file__).resolve().parents[1])


def run_ranks(tmp_path, script: str, env: dict[str, str] | None = None, **fields) -> list[str]:
    """Run ``script`` (formatted with ``repo``, a free ``port`` and ``fields``) as ranks 0 and 1, each with
    ``LOCAL_RANK``/``NODE_RANK``/``MASTER_*`` set as a launcher would; returns their stdout."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "rank.py"
    path.write_text(script.format(repo=REPO, port=port, **fields))
    procs = [subprocess.Popen([sys.executable, str(path), str(rank)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, **(env or {}), "MASTER_ADDR": "127.0.0.1",
                                              "MASTER_PORT": str(port), "LOCAL_RANK": str(rank), "NODE_RANK": "0"})
             for rank in (0, 1)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-3000:] for _, err in outputs]
    return [out for out, _ in outputs]


def torchgeo_file(path: Path, in_chans: int = 13, model: str = "resnet50") -> dict:
    """A state dict in TorchGeo's layout (a whole timm ResNet, ``fc.*`` included), as their files hold."""
    import timm
    import torch

    state = timm.create_model(model, in_chans=in_chans).state_dict()
    torch.save(state, path)
    return state
