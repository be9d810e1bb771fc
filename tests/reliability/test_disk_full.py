"""A full disk in the middle of a build leaves the store as it was; after space returns, the build completes."""

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from noldo.verify import verify
from tests.helpers import assert_same_arrays

REPO = Path(__file__).resolve().parents[2]
BUILD = ["--region", "demo", "--source", "synthetic", "--samples", "70", "--tile-size", "48"]


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".noldo" not in p.parts}


# Runs a build in which the write of the second shard's S1 file fails with ENOSPC, at the store's write call.
ENOSPC_BUILD = textwrap.dedent("""
    import errno, sys
    sys.path.insert(0, {repo!r})
    import zarr.storage._local as local
    real_put = local._put
    def put(path, value, exclusive=False):
        if "/s1/c/1/" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_put(path, value, exclusive)
    local._put = put
    from noldo.cli import main
    sys.argv = ["noldo", "build", *{args!r}]
    main()
""")


def test_enospc_at_a_shard_write(tmp_path):
    reference, root = tmp_path / "reference", tmp_path / "store"
    assert subprocess.run([sys.executable, "-m", "noldo", "build", *BUILD, "--out", str(reference)]).returncode == 0
    proc = subprocess.run([sys.executable, "-c", ENOSPC_BUILD.format(repo=str(REPO), args=[*BUILD, "--out",
                                                                                          str(root)])],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f"error: No space left on device ({root}/nol.zarr/s1/c/1/0/0/0/0)"], proc.stderr
    before = digests(root)
    assert "nol.zarr/s2/c/0/0/0/0/0" in before and "nol.zarr/s1/c/1/0/0/0/0" not in before
    assert not list(root.rglob("*.partial"))
    done = subprocess.run([sys.executable, "-m", "noldo", "build", *BUILD, "--out", str(root)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    after = digests(root)
    assert all(after[k] == v for k, v in before.items() if "/c/0/" in k), "shard 0 was not touched"
    assert_same_arrays(reference, root)
    assert verify(root)[0] == []


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs, if this machine lets us mount one (tests run as root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here; test_enospc_at_a_shard_write covers the write call")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk(small_disk, tmp_path):
    root = small_disk / "store"
    proc = subprocess.run([sys.executable, "-m", "noldo", "build", *BUILD, "--out", str(root)], capture_output=True,
                          text=True)
    assert proc.returncode == 1 and proc.stderr.startswith("error: No space left on device")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".partial")]
    moved = tmp_path / "store"
    subprocess.run(["cp", "-a", str(root), str(moved)], check=True)
    done = subprocess.run([sys.executable, "-m", "noldo", "build", *BUILD, "--out", str(moved)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert verify(moved)[0] == []
