"""Loopback servers speaking the real Earth Engine, Hugging Face hub and Overpass protocols, for tests."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"LoopbackServer": "loopback", "QuietHandler": "loopback", "FakeEarthEngine": "earthengine",
          "Catalogue": "earthengine", "Faults": "earthengine", "FakeHub": "hub", "FakeOverpass": "overpass"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """Import a server's module only when it is asked for (earthengine-api and osmium load slowly)."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
