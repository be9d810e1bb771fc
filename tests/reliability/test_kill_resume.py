"""kill -9 at ten random moments of a build and of a download; every resume ends identical and verified."""

import os
import random
import subprocess
import sys
import time

import pytest

from noldo.testing.hub import FakeHub
from noldo.verify import verify
from tests.helpers import assert_same_arrays, kill_noldo
from tests.published_layouts import tiles_zip

pytestmark = pytest.mark.slow
BUILD = ["build", "--region", "demo", "--source", "synthetic", "--samples", "150", "--tile-size", "96",
         "--workers", "2"]


def run(args, env=None):
    return subprocess.run([sys.executable, "-m", "noldo", *args], capture_output=True, text=True, env=env)


def kill_after(args, seconds, env=None) -> bool:
    """Start `python -m noldo ARGS`, SIGKILL it after ``seconds``; True if it was still running."""
    deadline = time.monotonic() + seconds
    return kill_noldo(args, lambda: time.monotonic() >= deadline, env)


def build_progress(root) -> int:
    """Samples a build has finished: cached units plus the samples of committed shards."""
    state = root / ".noldo" / "nol"
    return len(list((state / "units").glob("*.unit"))) + 64 * len(list(state.glob("shard-*.json")))


def test_build_survives_ten_kills(tmp_path):
    assert run([*BUILD, "--out", str(tmp_path / "reference")]).returncode == 0
    killed = tmp_path / "killed"
    # ten random moments, as points of progress (a timer would race the machine's speed)
    moments = sorted(random.Random(1).sample(range(5, 140), 10))
    kills = sum(kill_noldo([*BUILD, "--out", str(killed)], lambda m=m: build_progress(killed) >= m)
                for m in moments)
    assert kills >= 5, "the build finished too early to be killed"
    done = run([*BUILD, "--out", str(tmp_path / "killed")])
    assert done.returncode == 0, done.stderr
    assert_same_arrays(tmp_path / "reference", tmp_path / "killed")
    assert verify(tmp_path / "killed")[0] == []
    assert not list((tmp_path / "killed").rglob("*.partial"))


def test_download_survives_ten_kills(tmp_path):
    zip_path, _ = tiles_zip(tmp_path / "src.zip", {"dw_train": (6, 256)})
    data = zip_path.read_bytes()
    with FakeHub({"vikki23/NoLDO-S12": {"ssl4eo_s12_dw.zip": data}}) as hub:
        blocks = -(-len(data) // 65536)
        hub.delay = 40 / blocks  # the whole file takes 40 s: ten kills at most 2.5 s apart cannot finish it
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"}
        args = ["download", "--what", "dw", "--root", str(tmp_path / "files")]
        rng = random.Random(2)
        kills = sum(kill_after(args, rng.uniform(1.5, 2.5), env) for _ in range(10))
        assert kills == 10
        hub.delay = 0
        done = run(args, env)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "files" / "ssl4eo_s12_dw.zip").read_bytes() == data
    assert sum(hub.served.values()) < 2 * len(data), "resumed downloads do not start over"
