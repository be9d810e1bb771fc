"""The contract every source implements, and the request counting the build reports.

A source is one module with one :class:`Source` subclass, registered by one line in
:mod:`noldo.sources`. It declares:

* ``arrays``: the image arrays it fills (``s2``, ``s1``, ``dw``, ``osm``, ``truth``);
* ``options``: its build options (:class:`Option`), from which ``noldo build`` makes its flags and
  by which every value is validated, whether it comes from the command line or the API;
* ``parallelism``: how many samples to work on at once by default (``noldo build --workers``);
* ``requests``: the names under which it counts its requests (:func:`count`), one per HTTP page;
* ``reads``: arrays of an existing split it looks at when it adds its arrays to that split;
* ``context``: the facts of the build its constructor takes, from :data:`CONTEXT` (``seed``,
  ``seasons`` for every source; ``processes``, the dask worker processes that share a service's
  quota, 0 for this process alone; ``tag``, a name for the build's requests).

and implements :meth:`Source.plan` (the per-sample search: provenance, or why the sample cannot be
used), :meth:`Source.fetch` (the pixels of one array on the sample's grid; :meth:`Source.fetch_many`
for several at once), :meth:`Source.cost`
(what a fetch would take, for ``--dry-run``), :meth:`Source.check` (fail early) and
:meth:`Source.grid` (the sample's grid, which a source may fix, e.g. from a published granule).
Sources never write the store; the build engine (:mod:`noldo.build`) does.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import click
import numpy as np

from noldo.errors import NoldoError
from noldo.grid import Grid
from noldo.regions import Candidate


class Rejected(Exception):
    """Raised by a source when a sample cannot be used; the reason is recorded in the build summary."""


class Unfinished(Exception):
    """Raised by a source when a sample could not be finished for a passing reason (a service still
    overloaded after every retry). The sample keeps its place, its shard stays pending, and re-running
    the build retries it: sample ids never depend on faults."""


@dataclass
class Plan:
    """What a source found for one sample: provenance columns and whatever ``fetch`` needs next.

    ``qc_failure`` says why the sample misses the source's quality thresholds although its data is
    fine: a new split rejects such a sample; a split that gets arrays added keeps it, flagged.
    """

    meta: dict[str, Any]
    context: Any = None
    qc_failure: str | None = None


@dataclass
class Fetched:
    """The pixels of one array of one sample, with provenance columns."""

    array: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Option:
    """One build option of a source, declared once: its flag, parser, default, help and environment variable.

    Args:
        name: the Python name; the flag is ``--`` + name with dashes (``max_cloud`` → ``--max-cloud``).
        type: a click parameter type; it parses and validates the value (from the flag or the API).
        default: the value when neither the flag nor ``env`` gives one.
        help: one sentence for ``noldo build --help``.
        env: an environment variable read, when the flag is not given, on the machine that runs the
            source (so each dask worker reads its own).
        runtime: how to fetch, not what: a resumed build may change it, it is not part of the build's
            identity (endpoints, concurrency).
        extends_only: applies only when the source adds its arrays to an existing split (``--like``).
    """

    name: str
    type: click.ParamType
    default: Any = None
    help: str = ""
    env: str | None = None
    runtime: bool = False
    extends_only: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_switch(self) -> bool:
        return self.type is click.BOOL

    def convert(self, value: Any) -> Any:
        """The validated value (paths made absolute), or a one-line error naming the flag."""
        if value is None:
            return None
        try:
            value = self.type.convert(value, None, None)
        except click.BadParameter as exc:
            raise NoldoError(f"{self.flag}: {exc.message}") from None
        if isinstance(self.type, click.Path):
            value = os.path.abspath(value)
        return value


#: Every fact of a build a source may take (see ``Source.context``).
CONTEXT = ("seed", "seasons", "processes", "tag")


class Source(ABC):
    """Base of every source; subclasses declare the class attributes and implement plan and fetch."""

    name: ClassVar[str]
    arrays: ClassVar[tuple[str, ...]]
    options: ClassVar[tuple[Option, ...]] = ()
    requests: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ()
    context: ClassVar[tuple[str, ...]] = ("seed", "seasons")
    parallelism: int = 2
    #: For a source another program runs (a plug-in): the command line that makes or resumes its build, a
    #: format string over its options, ``root`` and ``split``, recorded in the provenance instead of
    #: ``noldo build``'s.
    command: ClassVar[str | None] = None

    @abstractmethod
    def plan(self, candidate: Candidate) -> Plan:
        """Search for one sample: provenance and what ``fetch`` needs, or :class:`Rejected`."""

    @abstractmethod
    def fetch(self, candidate: Candidate, plan: Plan, array: str) -> Fetched:
        """The pixels of one of ``arrays`` on the sample's grid."""

    def fetch_many(self, candidate: Candidate, plan: Plan, arrays: tuple[str, ...]) -> dict[str, Fetched]:
        """Several arrays of one sample (what the build asks for); one :meth:`fetch` each unless the source
        can do better (one request for all)."""
        return {name: self.fetch(candidate, plan, name) for name in arrays}

    def cost(self, candidate: Candidate, plan: Plan, arrays: tuple[str, ...]) -> tuple[int, dict[str, int]]:
        """What fetching ``arrays`` would take (for ``--dry-run``): requests, and bytes per array; none by default."""
        return 0, {name: 0 for name in arrays}

    def check(self) -> None:
        """Fail early (credentials, endpoint, input files) before a build writes anything; nothing by default."""
        return None

    def grid(self, candidate: Candidate) -> Grid:
        """The grid the sample is built on: the candidate's, unless the source knows better."""
        return candidate.grid

    @classmethod
    def validate(cls, given: Mapping[str, Any], extending: bool = False) -> dict[str, Any]:
        """The options given (``None`` means not given), parsed and validated by their declarations.

        Refuses options of other sources and ``extends_only`` options outside an extension.
        """
        declared = {o.name: o for o in cls.options}
        valid = {}
        for key, value in given.items():
            if value is None:
                continue
            option = declared.get(key)
            if option is None:
                raise NoldoError(f"--{key.replace('_', '-')} does not apply to the {cls.name} source")
            if option.extends_only and not extending:
                raise NoldoError(f"{option.flag} applies only when adding {'/'.join(cls.arrays)} to an existing "
                                 "split (--like ROOT/SPLIT)")
            valid[key] = option.convert(value)
        return valid

    @classmethod
    def resolve(cls, given: Mapping[str, Any], extending: bool = False) -> dict[str, Any]:
        """Every option's value: the given one (validated), else its environment variable, else its default."""
        valid = cls.validate(given, extending)
        resolved = {}
        for option in cls.options:
            value = valid.get(option.name)
            if value is None and option.env:
                value = option.convert(os.environ.get(option.env) or None)
            resolved[option.name] = value if value is not None else option.convert(option.default)
        return resolved


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
    """Record ``n`` of ``kind``: a request name a source declares, ``retries`` or ``bytes``."""
    counter = getattr(_counters, "current", None)
    if counter is not None:
        with _count_lock:
            counter[kind] += n


#: Threads that :func:`in_parallel` keeps for the whole process (a build's workers share them).
PARALLEL_THREADS = 64
_parallel: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): a forked child makes its own
_parallel_lock = threading.Lock()
_in_parallel = threading.local()


def _parallel_pool() -> ThreadPoolExecutor:
    global _parallel
    with _parallel_lock:
        if _parallel is None or _parallel[0] != os.getpid():
            _parallel = (os.getpid(), ThreadPoolExecutor(PARALLEL_THREADS, thread_name_prefix="noldo-sample"))
        return _parallel[1]


def in_parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Run calls concurrently, each counting into the caller's counter; results in call order.

    For requests of one sample that do not depend on each other: the sample then takes one round
    trip per step instead of one per request (a service's seam still caps the concurrency). The
    threads are the process's, reused from call to call; a call made inside one of them runs its
    calls in turn (a pool thread never waits for work queued behind it).
    """
    counter = getattr(_counters, "current", None)

    def run(call: Callable[[], Any]) -> Any:
        _counters.current, _in_parallel.active = counter, True
        try:
            return call()
        finally:
            _counters.current, _in_parallel.active = None, False

    if len(calls) < 2 or getattr(_in_parallel, "active", False):
        return [call() for call in calls]
    return list(_parallel_pool().map(run, calls))
