"""Data sources: each takes a candidate sample's grid and seasons and returns numpy arrays plus provenance.

A source is one module with a class that has ``arrays`` (the image arrays it fills), ``plan`` (the
per-sample search: which scenes, or why the sample is rejected) and ``fetch`` (the pixels of one
modality on the sample's grid). Sources never write the store; the shard writer does.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from noldo.errors import NoldoError
from noldo.regions import Candidate


class Rejected(Exception):
    """Raised by a source when a sample cannot be used; the reason is recorded in the build summary."""


@dataclass
class Plan:
    """What a source found for one sample: provenance columns and whatever ``fetch`` needs next."""

    meta: dict[str, Any]
    context: Any = None


@dataclass
class Fetched:
    """The pixels of one modality of one sample, with provenance columns and request statistics."""

    array: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


_counters = threading.local()
_count_lock = threading.Lock()


@contextmanager
def counting() -> Iterator[Counter]:
    """Count the requests (and bytes) that sources make in this thread inside the block."""
    counter: Counter = Counter()
    previous = getattr(_counters, "current", None)
    _counters.current = counter
    try:
        yield counter
    finally:
        _counters.current = previous


def count(kind: str, n: int = 1) -> None:
    """Record ``n`` of ``kind`` (e.g. ``listImages``, ``computePixels``, ``retries``, ``bytes``)."""
    counter = getattr(_counters, "current", None)
    if counter is not None:
        with _count_lock:
            counter[kind] += n


def in_parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Run calls concurrently, each counting into the caller's counter; results in call order.

    For requests of one sample that do not depend on each other: the sample then takes one round
    trip per step instead of one per request (the Earth Engine seam still caps the concurrency).
    """
    counter = getattr(_counters, "current", None)

    def run(call: Callable[[], Any]) -> Any:
        _counters.current = counter
        try:
            return call()
        finally:
            _counters.current = None

    if len(calls) < 2:
        return [call() for call in calls]
    with ThreadPoolExecutor(len(calls), thread_name_prefix="noldo-sample") as pool:
        return list(pool.map(run, calls))


class Source(Protocol):
    """The protocol every source implements."""

    name: str
    arrays: tuple[str, ...]

    def plan(self, candidate: Candidate) -> Plan: ...

    def fetch(self, candidate: Candidate, plan: Plan, array: str) -> Fetched: ...

    def cost(self, candidate: Candidate, plan: Plan, array: str) -> tuple[int, int]:
        """Requests and bytes that fetching ``array`` would take (for ``--dry-run``)."""
        ...

    def check(self) -> None:
        """Fail early (credentials, endpoint) before a build writes anything."""
        ...


SOURCES = ("synthetic", "earthengine", "osm")


def make_source(name: str, options: Mapping[str, Any]) -> Source:
    """A source by name, configured with ``options`` (the source-specific build options)."""
    if name == "synthetic":
        from noldo.sources.synthetic import SyntheticSource

        return SyntheticSource(**options)
    if name == "earthengine":
        from noldo.sources.ee_source import EarthEngineSource

        return EarthEngineSource(**options)
    if name == "osm":
        from noldo.sources.osm import OsmSource

        return OsmSource(**options)
    raise NoldoError(f"unknown source {name!r}; choose one of {', '.join(SOURCES)}")


@lru_cache(maxsize=8)
def _cached_source(name: str, options: tuple[tuple[str, Any], ...], environment: tuple[tuple[str, str], ...]) -> Source:
    return make_source(name, dict(options))


def source_for(spec: Mapping[str, Any]) -> Source:
    """The source described by ``{"name": ..., "options": {...}}``, created once per process (and per
    NOLDO_* environment, which sources read for credentials and endpoints).

    Build tasks receive this small picklable spec, so they also run on dask.distributed workers.
    """
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("NOLDO_")))
    return _cached_source(spec["name"], tuple(sorted(spec["options"].items())), environment)
