"""``noldo build``: the one build engine — candidates → source tasks (threads or dask) → unit cache → shards.

A build either makes a new split from a region (:class:`NewSplit`) or adds a source's arrays to an
existing split, for that split's own samples (:class:`ExtendedSplit`, ``--like ROOT/SPLIT``). Both
run the same loop: plan and fetch each candidate, cache finished (sample, array) units in the
build's state directory until their shard is written, log rejections, write whole shards,
finalise the index and the manifest. Work is idempotent: committed shards are never redone and
candidates are consumed in stream order, so re-running the same command after any interruption
gives the same samples in the same order, byte for byte.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from noldo.build_state import RejectionLog, StackedUnits, UnitCache
from noldo.catalog import SHARD_SAMPLES, array_kind, split_info
from noldo.errors import NoldoError
from noldo.files import atomic_write_json
from noldo.location import RootLike, StoreLocation
from noldo.lock import writing
from noldo.manifest import known_hashes, write_manifest
from noldo.regions import MIN_SPACING_KM, Candidate, capacity, parse_region
from noldo.regions import candidates as region_candidates
from noldo.sources import Rejected, Source, Unfinished, counting, make_source, source_class, source_for
from noldo.store import (
    Layout,
    ShardEncoder,
    Split,
    SplitWriter,
    check_split_name,
    georef_arrays,
    group_name,
    remove_split,
)

log = logging.getLogger(__name__)
SCHEDULER_TIMEOUT = "10s"
_NOT_REQUESTS = ("bytes", "arrays_bytes")  # counted, but not requests (nor are the *_cpu_us CPU times)


@dataclass(frozen=True)
class BuildSpec:
    """Everything that decides a build's content; equal specs give identical arrays.

    ``extend`` adds the source's arrays to the existing split ``split`` for its own samples (no
    region); ``options`` are the source options given (validated by the source's contract),
    ``runtime`` the ones that say how to fetch, not what (they may change when a build resumes).
    """

    region: str | None
    source: str
    split: str = "nol"
    samples: int = 64
    seed: int = 0
    tile_size: int = 264
    options: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict, compare=False)
    extend: bool = False

    @property
    def seasons(self) -> int:
        """Seasons of a new split: those of the standard split of that name, else one."""
        info = split_info(self.split)
        return info.seasons if info else 1

    def record(self, region: str | None) -> dict[str, Any]:
        """What a later run must match to resume this build (the runtime settings may change)."""
        record = {**asdict(self), "region": region}
        del record["runtime"]
        return record

    def command(self, root: StoreLocation) -> str:
        """The `noldo build` command line that makes (or resumes) this build, or the source's own
        (:attr:`noldo.sources.base.Source.command`)."""
        template = source_class(self.source).command
        if template:
            values = {**self.options, "root": root, "split": self.split}
            return template.format(**{key: shlex.quote(str(value)) for key, value in values.items()})
        if self.extend:
            args = ["noldo", "build", "--source", self.source, "--like", f"{root}/{self.split}"]
        else:
            args = ["noldo", "build", "--region", str(self.region), "--source", self.source, "--split", self.split,
                    "--out", str(root), "--samples", str(self.samples), "--seed", str(self.seed),
                    "--tile-size", str(self.tile_size)]
        for key, value in sorted({**self.options, **self.runtime}.items()):
            flag = f"--{key.replace('_', '-')}"
            if value is True:
                args.append(flag)
            elif value is False:
                args.append(flag.replace("--", "--no-", 1))
            elif value is not None:
                args += [flag, str(value)]
        return shlex.join(args)


@dataclass
class Outcome:
    """What one candidate task returns: the arrays it fetched, provenance, or a rejection."""

    index: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)  # "plan" and per-array provenance
    rejected: str | None = None
    unfinished: str | None = None  # a passing failure: the sample keeps its place and is retried next run
    requests: Counter = field(default_factory=Counter)  # requests by name, retries and bytes received
    costs: tuple[int, dict[str, int]] = (0, {})  # requests and bytes per array that fetching would take
    arrays_bytes: int = 0  # the arrays' size, known to the client even when they stay on a worker


def qc_columns(source: str) -> tuple[str, str]:
    """The index columns that flag a sample failing a source's quality checks in an extended split."""
    return f"{source}_qc", f"{source}_qc_reason"


def run_candidate(source_spec: Mapping[str, Any], candidate: Candidate, needed: tuple[str, ...],
                  estimate: bool = False, keep: Layout | None = None) -> Outcome:
    """Plan one candidate and fetch the ``needed`` arrays (a build task; runs on threads or dask workers).

    With ``estimate``, also record what fetching every array would cost (requests, bytes). With
    ``keep`` (the layout of a split being extended) a sample is never rejected: a failed quality
    check or a rejection becomes a flag in its index row, and a rejection gives nodata arrays.
    """
    source = source_for(source_spec)
    outcome = Outcome(candidate.index)
    passed, reason = qc_columns(source.name)
    with counting() as requests:
        try:
            plan = source.plan(candidate)
            if plan.qc_failure and keep is None:
                raise Rejected(plan.qc_failure)
            outcome.meta["plan"] = plan.meta if keep is None else {
                **plan.meta, passed: plan.qc_failure is None, reason: plan.qc_failure}
            if estimate:
                outcome.costs = source.cost(candidate, plan, source.arrays)
            for name, fetched in (source.fetch_many(candidate, plan, needed) if needed else {}).items():
                outcome.arrays[name], outcome.meta[name] = fetched.array, fetched.meta
        except Unfinished as exc:
            outcome.unfinished, outcome.arrays = str(exc), {}
        except Rejected as exc:
            if keep is None:
                outcome.rejected, outcome.arrays = str(exc), {}
            else:
                outcome.meta = {"plan": {passed: False, reason: str(exc)}}
                outcome.arrays = {name: _nodata(keep, name) for name in needed}
    outcome.requests = requests
    outcome.arrays_bytes = sum(a.nbytes for a in outcome.arrays.values())
    return outcome


def without_arrays(outcome: Outcome) -> Outcome:
    """What the client needs of a task whose arrays stay on the worker until a worker writes their shard."""
    return replace(outcome, arrays={})


def write_shard_task(location: StoreLocation, split: str, layout: Layout, shard: int, outcomes: list[Outcome],
                     extra: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Stack one shard's samples and write it to the store (a dask task: the worker's own credentials)."""
    names = [name for name in layout.all_arrays if name in outcomes[0].arrays]
    arrays = {name: np.stack([o.arrays[name] for o in outcomes]) for name in names}
    return ShardEncoder(location, split).write(shard, {**arrays, **extra}, layout)


def _nodata(layout: Layout, name: str) -> np.ndarray:
    kind = array_kind(name)
    return np.full(layout.shape(name, 1)[1:], kind.nodata, dtype=kind.dtype)


class WorkerUnits:
    """Fetched samples whose arrays stay on the dask workers until a worker writes their shard: the
    client keeps only each sample's task and index columns. Nothing is kept across runs, so a re-run
    fetches again the samples of shards that were not written (the same bytes: tasks are deterministic)."""

    def __init__(self, arrays: tuple[str, ...]) -> None:
        self.arrays = arrays
        self.tasks: dict[int, Any] = {}
        self.metas: dict[int, dict[str, Any]] = {}

    def missing(self, index: int) -> tuple[str, ...]:
        return self.arrays

    def complete(self, index: int) -> bool:
        return False

    def keep(self, index: int, task: Any, outcome: Outcome) -> None:
        """Keep a sample's task (its arrays stay on the worker) and its index columns, as the unit cache
        would return them."""
        meta = dict(outcome.meta["plan"])
        for name in self.arrays:
            meta |= outcome.meta.get(name, {})
        self.tasks[index], self.metas[index] = task, json.loads(json.dumps(meta))

    def meta(self, index: int) -> dict[str, Any]:
        return self.metas[index]

    def drop(self, index: int) -> None:
        self.tasks.pop(index, None)
        self.metas.pop(index, None)


# --- the two kinds of build ----------------------------------------------------------------------
class NewSplit:
    """A new split: candidates drawn from a region, rejected candidates skipped."""

    extending = False

    def __init__(self, spec: BuildSpec, location: StoreLocation) -> None:
        self.spec, self.location = spec, location
        self.region = parse_region(spec.region)
        if spec.samples > (room := capacity(self.region)):
            raise NoldoError(f"region {spec.region!r} holds about {room} samples {MIN_SPACING_KM} km apart "
                             f"({self.region.area_km2():.0f} km²); ask for fewer with --samples or use a larger "
                             "region")
        self.state = location.state_dir(check_split_name(spec.split))
        self.seasons = spec.seasons

    def candidates(self, source: Source, needs_data: Callable[[int], bool]) -> Iterator[Candidate]:
        for candidate in region_candidates(self.region, self.spec.seed, self.spec.tile_size):
            yield replace(candidate, grid=source.grid(candidate))

    def open(self, source: Source, overwrite: bool) -> SplitWriter:
        """Check the recorded build, then create or reopen the split."""
        record = self.spec.record(self.region.spec)
        previous = _previous_record(self.state, record, self.location, self.spec.split, overwrite)
        if overwrite:
            remove_split(self.location, self.spec.split)
            previous = None
        if previous is not None and not self.location.is_file(f"{group_name(self.spec.split)}/zarr.json"):
            log.warning("%s: the build state in %s is of a split no longer in the store; starting afresh",
                        self.location, self.state)  # a state directory apart from its store (--state)
            previous = None
        layout = Split.open(self.location, self.spec.split).layout if previous is not None else None
        height, width = self.region.tile_shape or (self.spec.tile_size, self.spec.tile_size)
        layout = layout or Layout(self.spec.samples, self.seasons, height, width, source.arrays)
        provenance = {"source": self.spec.source, "command": self.spec.command(self.location),
                      "region": self.region.spec, "seed": self.spec.seed, "source_options": self.spec.options}
        writer = SplitWriter(self.location, self.spec.split, layout, provenance)
        atomic_write_json(self.state / "build.json", record)
        return writer

    @staticmethod
    def committed(writer: SplitWriter, shards: list[int]) -> set[int]:
        return {i for k in shards for i in writer.marker(k)["candidates"]}

    def rows(self, units: UnitCache | WorkerUnits, members: list[Candidate]) -> pd.DataFrame:
        """The index rows of a shard's samples."""
        split = self.spec.split
        return pd.DataFrame([{"sample": c.sample_id(split), "candidate": c.index, "lon": c.lon, "lat": c.lat,
                              "epsg": c.grid.epsg, **units.meta(c.index)} for c in members])

    @staticmethod
    def fixed_arrays(members: list[Candidate]) -> dict[str, np.ndarray]:
        """The arrays of a shard that the build itself makes (the georeference)."""
        return georef_arrays([c.grid for c in members])

    @staticmethod
    def marker_fields(members: list[Candidate]) -> dict[str, Any]:
        return {"candidates": [c.index for c in members]}


class ExtendedSplit:
    """An existing split that gets a source's arrays, for its own samples: every sample keeps its place."""

    extending = True

    def __init__(self, spec: BuildSpec, location: StoreLocation) -> None:
        self.spec, self.location = spec, location
        self.split = Split.open(location, spec.split)
        self.ids = self.split.ids()
        self.seasons = self.split.layout.seasons
        self.state = location.state_dir(spec.split, f"add-{spec.source}")

    def candidates(self, source: Source, needs_data: Callable[[int], bool]) -> Iterator[Candidate]:
        """The split's samples on their stored grids, with the arrays the source reads."""
        group, layout = self.split.group(), self.split.layout
        lon, lat = group["center_lon"][:], group["center_lat"][:]
        index = self.split.index()
        offsets = index["day_offset"].to_numpy() if "day_offset" in index else np.zeros(len(index), int)
        reads = [name for name in source.reads if name in layout.arrays]
        prefix = f"{self.spec.split}-"
        for start in range(0, layout.samples, SHARD_SAMPLES):
            grids = self.split.grids(start, min(start + SHARD_SAMPLES, layout.samples))
            for i, grid in enumerate(grids, start):
                given = {name: group[name][i] for name in reads} if needs_data(i) else {}
                yield Candidate(i, self.ids[i].removeprefix(prefix), float(lon[i]), float(lat[i]), grid,
                                int(offsets[i]), given=given)  # stored grids: a sample keeps its pixels

    def open(self, source: Source, overwrite: bool) -> SplitWriter:
        if overwrite:
            raise NoldoError(f"--overwrite does not apply with --like: the {self.spec.split} split keeps its "
                             "samples; remove the state directory " f"{self.state} and rebuild the split to "
                             f"replace its {'/'.join(source.arrays)} arrays")
        record = self.spec.record(None)
        _previous_record(self.state, record, self.location, self.spec.split, overwrite)
        writer = SplitWriter(self.location, self.spec.split, self.split.layout, {})
        writer.add_arrays(source.arrays, {f"{source.name}_command": self.spec.command(self.location)},
                          known_hashes(self.location))
        atomic_write_json(self.state / "build.json", record)
        return writer

    @staticmethod
    def committed(writer: SplitWriter, shards: list[int]) -> set[int]:
        return {i for k in shards for i in range(*writer.layout.shard_range(k))}

    def rows(self, units: UnitCache | WorkerUnits, members: list[Candidate]) -> pd.DataFrame:
        return pd.DataFrame([{"sample": self.ids[c.index], **units.meta(c.index)} for c in members])

    @staticmethod
    def fixed_arrays(members: list[Candidate]) -> dict[str, np.ndarray]:
        return {}

    @staticmethod
    def marker_fields(members: list[Candidate]) -> dict[str, Any]:
        return {}


def _previous_record(state: Path, record: dict[str, Any], location: StoreLocation, split: str,
                     overwrite: bool) -> dict[str, Any] | None:
    """The record of the build that made this state, refusing one made with other arguments."""
    path = state / "build.json"
    previous = json.loads(path.read_text()) if path.exists() else None
    if previous is not None and previous != record and not overwrite:
        changed = ", ".join(k for k in record if previous.get(k) != record[k])
        raise NoldoError(f"{location} holds a {split} build with different arguments ({changed}); "
                         "re-run the original command to resume it, or pass --overwrite to replace it")
    return previous


def _prepare(spec: BuildSpec, location: StoreLocation,
             processes: int = 0) -> tuple[NewSplit | ExtendedSplit, Source, dict[str, Any]]:
    """Check a build's arguments; returns its target, source and the source spec its tasks receive
    (``processes``: the dask worker processes the tasks run on, 0 for this process)."""
    target = ExtendedSplit(spec, location) if spec.extend else NewSplit(spec, location)
    options = {**spec.options, **spec.runtime}
    context = {"seed": spec.seed, "seasons": target.seasons, "processes": processes,
               "tag": f"noldo-build-{spec.split}"}
    source_spec = {"name": spec.source, "options": options, "context": context, "extending": target.extending}
    source = make_source(spec.source, options, context, target.extending)
    source.check()
    return target, source, source_spec


class _Executor:
    """Where build tasks run: threads on this machine, or a dask.distributed cluster (``scheduler``)."""

    def __init__(self, scheduler: str | None) -> None:
        self.client = None
        if scheduler:
            try:
                from distributed import Client

                self.client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
            except (OSError, TimeoutError, ValueError) as exc:
                raise NoldoError(f"cannot connect to the dask scheduler at {scheduler}: {exc}") from None
        self.pool: ThreadPoolExecutor | None = None

    @property
    def processes(self) -> int:
        """Worker processes of the cluster (0 without one): they share a service's quota."""
        return len(self.client.scheduler_info()["workers"]) if self.client else 0

    def start(self, workers: int) -> int:
        """Get ready to run tasks; returns the number of parallel slots."""
        if self.client:
            return max(1, sum(self.client.nthreads().values()))
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="noldo-build")
        return max(1, workers)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(fn, *args, pure=False) if self.client else self.pool.submit(fn, *args)

    def close(self) -> None:
        if self.client:
            self.client.close()
        if self.pool:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _lookahead(stream: Iterator[Candidate], submit: Callable[[Candidate], Any], slots: int,
               ready: Callable[[Candidate], bool], wanted: Callable[[], int]) -> Iterator[tuple[Candidate, Any]]:
    """Candidates in stream order, each with a future (or None when ``ready``).

    At most 2·slots tasks are in flight, and never more than the samples still ``wanted``, so a build
    does not spend requests on candidates it will not need.
    """
    pending: deque = deque()
    futures = 0
    for candidate in stream:
        task = None if ready(candidate) else submit(candidate)
        pending.append((candidate, task))
        futures += task is not None
        while pending and (pending[0][1] is None or futures >= max(1, min(2 * slots, wanted()))):
            candidate, task = pending.popleft()
            futures -= task is not None
            yield candidate, task
    yield from pending


def plan_build(spec: BuildSpec, root: RootLike | None = None, *, workers: int | None = None,
               scheduler: str | None = None, progress: bool = False) -> dict[str, Any]:
    """``--dry-run``: search scenes until enough samples are accepted; report them and the pixel requests and
    bytes a build would fetch. Fetches no pixels and writes nothing (``root`` only names the split to
    extend)."""
    started = time.monotonic()
    executor = _Executor(scheduler)
    try:
        target, source, source_spec = _prepare(spec, StoreLocation.of(root or "."), executor.processes)
        slots = executor.start(workers or source.parallelism)
    except BaseException:
        executor.close()
        raise
    keep = target.split.layout if target.extending else None
    wanted_samples = keep.samples if keep else spec.samples
    stream = _lookahead(target.candidates(source, lambda i: True),
                        lambda c: executor.submit(run_candidate, source_spec, c, (), True, keep), slots,
                        lambda c: False, lambda: wanted_samples - len(samples))
    samples, reasons, made, planned, unfinished = [], Counter(), Counter(), Counter(), Counter()
    try:
        for candidate, future in tqdm(stream, desc="plan", unit="candidate", disable=not progress):
            outcome = future.result()
            made.update(outcome.requests)
            if outcome.rejected or outcome.unfinished:
                (reasons if outcome.rejected else unfinished)[(outcome.rejected or outcome.unfinished)
                                                              .split(":")[0]] += 1
                continue
            samples.append({"sample": candidate.sample_id(spec.split), "lon": round(candidate.lon, 6),
                            "lat": round(candidate.lat, 6), "epsg": candidate.grid.epsg, **outcome.meta["plan"]})
            requests, sizes = outcome.costs
            planned["requests"] += requests
            for name, size in sizes.items():
                planned[f"{name}_bytes"] += size
            if len(samples) == wanted_samples:
                break
    finally:
        stream.close()
        executor.close()
    by_array = {k.removesuffix("_bytes"): v for k, v in planned.items() if k.endswith("_bytes")}
    return {"dry_run": True, "split": spec.split, "source": spec.source, "samples": len(samples),
            "requested": wanted_samples, "rejected": {"total": sum(reasons.values()), "reasons": dict(reasons)},
            "unfinished": {"total": sum(unfinished.values()), "reasons": dict(unfinished)},
            "search_requests": {k: v for k, v in made.items() if k not in _NOT_REQUESTS and not k.endswith("_cpu_us")},
            "pixel_requests": planned["requests"], "pixel_bytes": sum(by_array.values()),
            "bytes_by_array": by_array, "seconds": round(time.monotonic() - started, 2), "sample_list": samples}


def build(spec: BuildSpec, root: RootLike, *, workers: int | None = None, scheduler: str | None = None,
          overwrite: bool = False, progress: bool = False, shard_writers: str | None = None) -> dict[str, Any]:
    """Build (or resume) one split of a store, or add a source's arrays to one; returns the JSON-ready summary.

    Holds the split's write lock (noldo/lock.py) throughout: a second writer refuses at once.
    ``shard_writers``: who encodes and writes the shards, ``"client"`` (this process) or ``"workers"``
    (the dask workers of ``scheduler``, straight to a ROOT they all reach); default: the workers for
    an object-store ROOT with a scheduler, else the client.

    Example:
        >>> build(BuildSpec("demo", "synthetic", samples=64), "demo-data")  # doctest: +SKIP
    """
    location = StoreLocation.of(root)
    with ExitStack() as held:  # the lock is taken once the source is ready: nothing is written before
        return _build(spec, location, workers, scheduler, overwrite, progress, shard_writers,
                      lock=lambda: held.enter_context(writing(location, spec.split,
                                                              command=f"noldo build --source {spec.source}")))


def _build(spec: BuildSpec, location: StoreLocation, workers: int | None, scheduler: str | None,
           overwrite: bool, progress: bool, shard_writers: str | None, lock: Callable[[], Any]) -> dict[str, Any]:
    started = time.monotonic()
    if shard_writers not in (None, "client", "workers"):
        raise NoldoError(f"shard writers are 'client' or 'workers', not {shard_writers!r}")
    if shard_writers == "workers" and not scheduler:
        raise NoldoError("--shard-writers workers needs a dask cluster (--scheduler ADDRESS)")
    on_workers = bool(scheduler) and (shard_writers == "workers" or (shard_writers is None and location.remote))
    executor = _Executor(scheduler)
    try:
        target, source, source_spec = _prepare(spec, location, executor.processes)
        lock()
        writer = target.open(source, overwrite)
        slots = executor.start(workers or source.parallelism)
    except BaseException:
        executor.close()
        raise
    layout = writer.layout
    keep = layout if target.extending else None
    cache = WorkerUnits(source.arrays) if on_workers else UnitCache(target.state / "units", source.arrays)
    rejections = RejectionLog(target.state / "rejected.jsonl")
    done = [k for k in range(layout.shards) if writer.shard_done(k)]
    committed = target.committed(writer, done)
    holes: set[int] = set()  # candidates still failing for a passing reason: they keep their place

    def known(index: int) -> bool:
        return index in committed or index in rejections.reasons or cache.complete(index)

    def writable(members: list[Candidate]) -> bool:
        """A new split writes no shard after a hole (later positions depend on its fate); an extended
        split, whose positions are fixed, only leaves the hole's own shard pending."""
        return not any(c.index in holes for c in members) if target.extending else not holes

    stats, new_rejections, unfinished = Counter(), Counter(), Counter()
    bar = tqdm(total=layout.samples, unit="sample", desc=f"build {spec.split}", disable=not progress)
    def submit(candidate: Candidate) -> Any:
        task = executor.submit(run_candidate, source_spec, candidate, cache.missing(candidate.index), False, keep)
        return (task, executor.submit(without_arrays, task)) if on_workers else (task, task)

    stream = _lookahead(target.candidates(source, lambda i: not known(i)), submit, slots,
                        lambda c: known(c.index), lambda: layout.samples - accepted)
    accepted, fetched, written, buffer = 0, 0, 0, []
    try:
        for candidate, tasks in stream:
            if tasks is not None:
                outcome = tasks[1].result()  # without the arrays when they stay on a worker
                stats.update(outcome.requests)
                stats["arrays_bytes"] += outcome.arrays_bytes
                if outcome.rejected:
                    rejections.add(candidate.index, candidate.sample_id(spec.split), outcome.rejected)
                    new_rejections[outcome.rejected.split(":")[0]] += 1
                elif outcome.unfinished:
                    holes.add(candidate.index)
                    unfinished[outcome.unfinished.split(":")[0]] += 1
                elif on_workers:
                    cache.keep(outcome.index, tasks[0], outcome)
                    fetched += 1
                else:
                    cache.save(outcome.index, outcome.arrays, outcome.meta)
                    fetched += 1
            if candidate.index in rejections.reasons:
                bar.set_postfix(rejected=len(rejections.reasons), refresh=False)
                continue
            position, accepted = accepted, accepted + 1
            bar.update(1)
            shard = position // SHARD_SAMPLES
            if shard not in done:
                buffer.append(candidate)
                if position + 1 == layout.shard_range(shard)[1]:
                    if writable(buffer):
                        _write(target, writer, cache, shard, buffer, executor)
                        written += 1
                    buffer = []
            if accepted == layout.samples:
                break
        else:  # the region ran out of candidates before enough were accepted
            if accepted < layout.samples and not holes:
                log.warning("region exhausted: %d of %d samples accepted", accepted, layout.samples)
                writer.resize(accepted)
                if buffer:
                    _write(target, writer, cache, accepted // SHARD_SAMPLES, buffer, executor)
                    written += 1
    finally:
        stream.close()
        bar.close()
        executor.close()
    if accepted == 0:
        raise NoldoError(f"no candidate in region {spec.region!r} was accepted; rejections: "
                         f"{dict(Counter(r.split(':')[0] for r in rejections.reasons.values()))}")
    manifest = None if holes else write_manifest(location, known_hashes=writer.finalize())
    reasons = Counter(r.split(":")[0] for r in rejections.reasons.values())
    flagged = 0
    if target.extending and manifest is not None:
        flagged = int((~Split.open(location, spec.split).index([qc_columns(source.name)[0]]).iloc[:, 0]).sum())
    return {
        "root": str(location), "split": spec.split, "source": spec.source, "samples": accepted,
        "requested": layout.samples if target.extending else spec.samples,
        "exhausted": not target.extending and accepted < spec.samples, "complete": not holes,
        "rejected": {"total": sum(reasons.values()), "reasons": dict(reasons),
                     "this_run": sum(new_rejections.values())},
        "unfinished": {"total": len(holes), "reasons": dict(unfinished)},
        "qc_flagged": flagged, "resumed_shards": len(done), "shards_written": written,
        "shard_writers": "workers" if on_workers else "client", "fetched": fetched,
        "requests": {k: v for k, v in sorted(stats.items()) if k not in _NOT_REQUESTS and not k.endswith("_cpu_us")},
        "requests_per_sample": round(sum(stats[name] for name in source.requests) / max(1, fetched), 2),
        "request_cpu_ms": {n: round(stats[f"{n}_cpu_us"] / 1000 / stats[n], 3) for n in source.requests
                           if stats[n] and stats[f"{n}_cpu_us"]},
        "bytes": stats["arrays_bytes"], "bytes_received": stats["bytes"],
        "stored_bytes": manifest["total_bytes"] if manifest else None, "seconds": round(time.monotonic() - started, 2),
    }


def _write(target: NewSplit | ExtendedSplit, writer: SplitWriter, units: UnitCache | WorkerUnits, shard: int,
           members: list[Candidate], executor: _Executor) -> None:
    """Write one shard — here from the unit cache, or on a dask worker from the samples it holds — then
    commit it and forget its units."""
    rows, fixed, fields = target.rows(units, members), target.fixed_arrays(members), target.marker_fields(members)
    if isinstance(units, WorkerUnits):
        writer.check_shard(shard, (*units.arrays, *fixed), rows)
        task = executor.submit(write_shard_task, writer.location, writer.split, writer.layout, shard,
                               [units.tasks[c.index] for c in members], fixed)
        writer.commit_shard(shard, task.result(), rows, fields)
    else:
        writer.write_shard(shard, StackedUnits(units, [c.index for c in members], fixed), rows, fields)
    for c in members:
        units.drop(c.index)
