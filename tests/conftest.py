"""Shared fixtures. Tests run offline: a stray Hugging Face hub call fails fast."""

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="noldo-test-cache-")  # osmnx and extract caches

import pytest

from tests.helpers import write_example_store


@pytest.fixture
def example_store(tmp_path):
    """A finished 70-sample `nol` store (two shards, the second partial) and the arrays written."""
    root = tmp_path / "store"
    return root, write_example_store(root)


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory):
    """A factory of synthetic stores, each built once a session and shared: do not change them.

    ``synthetic_store(samples=20, tile_size=40)`` is the root of a store holding one split built by
    ``build(BuildSpec(region, "synthetic", split, samples, seed, tile_size), root)`` (defaults: region
    "demo", split "nol", seed 0); ``splits=[(split, samples, seed), ...]`` builds several splits into
    one store instead. A test that changes its store passes ``copy=True`` and gets a private copy.
    """
    from noldo.build import BuildSpec, build

    built: dict[tuple, Path] = {}

    def make(region: str = "demo", split: str = "nol", samples: int = 64, seed: int = 0, tile_size: int = 264, *,
             splits: list[tuple[str, int, int]] | None = None, copy: bool = False) -> Path:
        splits = [(split, samples, seed)] if splits is None else splits
        key = (region, tile_size, tuple(tuple(s) for s in splits))
        if key not in built:
            root = tmp_path_factory.mktemp("synthetic") / "store"
            for name, n, s in splits:
                build(BuildSpec(region, "synthetic", name, n, s, tile_size), root)
            built[key] = root
        if not copy:
            return built[key]
        private = tmp_path_factory.mktemp("synthetic-copy") / "store"
        shutil.copytree(built[key], private)
        return private

    return make


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 for the session (noldo.testing.s3), reached the standard way: the
    AWS_* variables (dummy keys) are set while it runs, build state goes to a private directory."""
    from noldo.testing.s3 import S3Server

    with S3Server() as server, pytest.MonkeyPatch.context() as patch:
        for key, value in server.environment().items():
            patch.setenv(key, value)
        patch.setenv("NOLDO_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        yield server


@pytest.fixture
def s3(s3_server):
    """A fresh bucket on the loopback S3 server; returns ``(server, "s3://bucket")``."""
    import uuid

    bucket = f"noldo-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    return s3_server, f"s3://{bucket}"
