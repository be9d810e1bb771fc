"""One writer per store split (noldo/lock.py): a second writer refuses at once, naming the holder."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from noldo.lock import LockHeld, writing, writing_manifest
from noldo.verify import verify

BUILD = [sys.executable, "-m", "noldo", "build", "--region", "demo", "--source", "synthetic", "--samples", "128",
         "--tile-size", "64"]


def _start(root, *extra):
    return subprocess.Popen([*BUILD, "--out", str(root), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _wait_for_holder(root, process, split="nol", timeout=60.0):
    about = root / ".noldo" / "locks" / f"{split}.json"
    deadline = time.monotonic() + timeout
    while not about.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    return json.loads(about.read_text())


def test_a_second_writer_refuses_at_once_naming_the_holder(tmp_path):
    """In one process two lock objects conflict too (flock locks belong to the open file, not the process)."""
    with writing(tmp_path, "nol", command="noldo build --source synthetic"):
        with pytest.raises(LockHeld) as refused, writing(tmp_path, "dw_train", "nol", command="noldo convert"):
            pass
        message = str(refused.value)
        assert "split nol of" in message and "noldo build --source synthetic" in message
        assert f"pid {os.getpid()}" in message and "since 20" in message and "\n" not in message
        assert not (tmp_path / ".noldo" / "locks" / "dw_train.json").exists(), "a refused writer holds nothing"
        with writing(tmp_path, "osm", command="noldo build"):  # another split is free
            pass
    with writing(tmp_path, "nol"):  # released at the end of the block
        pass


def test_the_manifest_lock_waits_instead_of_refusing(tmp_path, monkeypatch):
    import noldo.lock

    monkeypatch.setattr(noldo.lock, "MANIFEST_WAIT", 0.2)
    with writing_manifest(tmp_path, command="noldo build"):
        started = time.monotonic()
        with pytest.raises(LockHeld, match="the store's manifest"), writing_manifest(tmp_path):
            pass
        assert time.monotonic() - started >= 0.2


def test_two_builds_started_together_one_builds_one_refuses(tmp_path):
    root = tmp_path / "store"
    first, second = _start(root), _start(root)
    outcomes = sorted((p.wait(timeout=300), *p.communicate()) for p in (first, second))
    (ok, out, _), (refused, _, err) = outcomes
    assert ok == 0 and json.loads(out)["samples"] == 128, outcomes
    lines = err.strip().splitlines()
    assert refused == 1 and len(lines) == 1 and "is being written by noldo build --source synthetic" in lines[0]
    assert "pid" in lines[0] and "host" in lines[0]
    assert verify(root)[0] == []


def test_a_build_refuses_while_another_runs_and_proceeds_once_it_was_killed(tmp_path):
    root = tmp_path / "store"
    holder = _start(root)
    try:
        info = _wait_for_holder(root, holder)
        assert info["pid"] == holder.pid and info["command"] == "noldo build --source synthetic"
        started = time.monotonic()
        refused = subprocess.run([*BUILD, "--out", str(root)], capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1 and f"pid {holder.pid}" in refused.stderr
        assert time.monotonic() - started < 30, "refused at once, not after waiting"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # kill -9 leaves the description behind, but the OS released the lock with the process
    resumed = subprocess.run([*BUILD, "--out", str(root)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert verify(root)[0] == []
