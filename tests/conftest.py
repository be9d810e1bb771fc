"""Shared fixtures. Tests run offline: a stray Hugging Face hub call fails fast."""

import os
import tempfile

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
