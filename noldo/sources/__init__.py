"""Data sources: each takes a candidate sample's grid and seasons and returns numpy arrays plus provenance.

The contract is :class:`noldo.sources.base.Source`; a new source is one module plus one line in
``SOURCES`` below. Sources never write the store; the build engine does.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from noldo.errors import NoldoError, choose
from noldo.sources.base import Fetched, Option, Plan, Rejected, Source, Unfinished, count, counting, in_parallel
from noldo.sources.ee_source import EarthEngineSource
from noldo.sources.osm import OsmSource
from noldo.sources.synthetic import SyntheticSource

#: Every source by name (``noldo build --source NAME``).
SOURCES: dict[str, type[Source]] = {cls.name: cls for cls in (SyntheticSource, EarthEngineSource, OsmSource)}

__all__ = ["SOURCES", "Fetched", "Option", "Plan", "Rejected", "Source", "Unfinished", "count", "counting",
           "in_parallel", "make_source", "source_class", "source_for"]


def source_class(name: str) -> type[Source]:
    """The source class of a name, or a one-line error listing the sources.

    ``package.module:Class`` names a source outside this registry (a plug-in, such as
    ``benchmark.audit:TrustSource``, which needs libraries noldo does not import).
    """
    if ":" not in name:
        return choose(SOURCES, name, "source")
    module, _, attribute = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise NoldoError(f"cannot load the source {name}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise NoldoError(f"{name} is not a noldo source (a subclass of noldo.sources.base.Source)")
    return cls


def make_source(name: str, options: Mapping[str, Any], context: Mapping[str, Any] | None = None,
                extending: bool = False) -> Source:
    """A source by name, its options resolved (flag, environment, default) and validated; ``context``
    holds facts of the build (``noldo.sources.base.CONTEXT``), of which the source takes those it declares."""
    cls = source_class(name)
    facts = {k: v for k, v in (context or {}).items() if k in cls.context}
    return cls(**cls.resolve(options, extending), **facts)


@lru_cache(maxsize=8)
def _cached_source(name: str, options: tuple[tuple[str, Any], ...], context: tuple[tuple[str, Any], ...],
                   extending: bool, environment: tuple[tuple[str, str], ...]) -> Source:
    return make_source(name, dict(options), dict(context), extending)


def source_for(spec: Mapping[str, Any]) -> Source:
    """The source described by a build's small picklable spec (``{"name", "options", "context",
    "extending"}``), created once per process and per NOLDO_* environment (options may be read from it).

    Build tasks receive this spec, so they also run on dask.distributed workers.
    """
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("NOLDO_")))
    return _cached_source(spec["name"], tuple(sorted(spec["options"].items())),
                          tuple(sorted(spec["context"].items())), spec["extending"], environment)
