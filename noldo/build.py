"""``noldo build``: candidate samples → source tasks (threads or dask) → unit cache → whole shards → store.

Work is idempotent. Finished (sample, array) units are cached in ``ROOT/.noldo/<split>/units/`` until
their shard is written; rejections are logged; committed shards are never redone. Candidates are
consumed in stream order, so re-running the same command after any interruption produces the
same samples in the same order, byte for byte.
"""

from __future__ import annotations

import io
import json
import logging
import shlex
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from noldo.catalog import SHARD_SAMPLES, split_info
from noldo.errors import NoldoError
from noldo.files import atomic_write_bytes, atomic_write_json
from noldo.regions import MIN_SPACING_KM, Candidate, Region, candidates, capacity, parse_region
from noldo.sources import Rejected, Source, counting, in_parallel, source_for
from noldo.store import Layout, SplitWriter, georef_arrays, remove_split, stored_layout, work_path

log = logging.getLogger(__name__)
SCHEDULER_TIMEOUT = "10s"
_BYTES = ("bytes", "arrays_bytes")


@dataclass(frozen=True)
class BuildSpec:
    """Everything that decides a build's content; equal specs give identical arrays."""

    region: str
    source: str
    split: str = "nol"
    samples: int = 64
    seed: int = 0
    tile_size: int = 264
    options: dict[str, Any] = field(default_factory=dict)  # source options, e.g. {"noise": 0.2}
    runtime: dict[str, Any] = field(default_factory=dict, compare=False)  # how to fetch, not what: EE endpoint

    @property
    def seasons(self) -> int:
        info = split_info(self.split)
        return info.seasons if info else (4 if self.split == "nol" else 1)

    def source_spec(self) -> dict[str, Any]:
        options = {**self.options, **self.runtime, "seed": self.seed, "seasons": self.seasons}
        return {"name": self.source, "options": options}

    def record(self, region: str) -> dict[str, Any]:
        """What a later run must match to resume this build (the runtime settings may change)."""
        record = {**asdict(self), "region": region}
        del record["runtime"]
        return record

    def command(self, root: Path) -> str:
        """The `noldo build` command line that makes (or resumes) this build."""
        args = ["noldo", "build", "--region", self.region, "--source", self.source, "--split", self.split,
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
    requests: Counter = field(default_factory=Counter)  # requests by kind, retries and bytes received
    costs: dict[str, tuple[int, int]] = field(default_factory=dict)  # per array: (requests, bytes) to fetch it


def run_candidate(source_spec: Mapping[str, Any], candidate: Candidate, needed: tuple[str, ...],
                  estimate: bool = False) -> Outcome:
    """Plan one candidate and fetch the ``needed`` arrays (a build task; runs on threads or dask workers).

    With ``estimate``, also record what fetching every array would cost (requests, bytes).
    """
    source = source_for(source_spec)
    outcome = Outcome(candidate.index)
    with counting() as requests:
        try:
            plan = source.plan(candidate)
            outcome.meta["plan"] = plan.meta
            if estimate:
                outcome.costs = {name: source.cost(candidate, plan, name) for name in source.arrays}
            calls = [partial(source.fetch, candidate, plan, name) for name in needed]
            results = in_parallel(*calls) if getattr(source, "parallel_fetch", False) else [c() for c in calls]
            for name, fetched in zip(needed, results, strict=True):
                outcome.arrays[name], outcome.meta[name] = fetched.array, fetched.meta
        except Rejected as exc:
            outcome.rejected, outcome.arrays = str(exc), {}
    outcome.requests = requests
    return outcome


class _UnitCache:
    """Finished (sample, array) units of candidates whose shard is not written yet."""

    def __init__(self, directory: Path, arrays: tuple[str, ...]) -> None:
        self.dir, self.arrays = directory, arrays
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, index: int, name: str) -> Path:
        return self.dir / f"{index:07d}.{name}.npz" if name != "plan" else self.dir / f"{index:07d}.plan.json"

    def missing(self, index: int) -> tuple[str, ...]:
        return tuple(a for a in self.arrays if not self._path(index, a).exists())

    def complete(self, index: int) -> bool:
        return not self.missing(index) and self._path(index, "plan").exists()

    def save(self, outcome: Outcome) -> None:
        for name, array in outcome.arrays.items():
            buffer = io.BytesIO()
            np.savez(buffer, array=array, meta=np.array(json.dumps(outcome.meta.get(name, {}))))
            atomic_write_bytes(self._path(outcome.index, name), buffer.getvalue())
        atomic_write_json(self._path(outcome.index, "plan"), outcome.meta["plan"])

    def load(self, index: int, name: str) -> tuple[np.ndarray, dict[str, Any]]:
        with np.load(self._path(index, name)) as f:
            return f["array"], json.loads(str(f["meta"]))

    def meta(self, index: int) -> dict[str, Any]:
        meta = json.loads(self._path(index, "plan").read_text())
        for name in self.arrays:
            meta |= self.load(index, name)[1]
        return meta

    def drop(self, index: int) -> None:
        for name in (*self.arrays, "plan"):
            self._path(index, name).unlink(missing_ok=True)


class _ShardArrays(Mapping):
    """The arrays of one shard, stacked from the unit cache one array at a time (bounded memory)."""

    def __init__(self, cache: _UnitCache, shard: list[Candidate]) -> None:
        self.cache, self.shard = cache, shard
        self.georef = georef_arrays([c.grid for c in shard])

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.georef:
            return self.georef[name]
        return np.stack([self.cache.load(c.index, name)[0] for c in self.shard])

    def __iter__(self) -> Iterator[str]:
        return iter((*self.cache.arrays, *self.georef))

    def __len__(self) -> int:
        return len(self.cache.arrays) + len(self.georef)


class _RejectionLog:
    """Append-only log of rejected candidates (``rejected.jsonl``); a torn last line is ignored."""

    def __init__(self, path: Path) -> None:
        self.path, self.reasons = path, {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self.reasons[entry["candidate"]] = entry["reason"]
                except (ValueError, KeyError, TypeError):
                    continue

    def add(self, candidate: Candidate, sample: str, reason: str) -> None:
        self.reasons[candidate.index] = reason
        with open(self.path, "a") as f:
            f.write(json.dumps({"candidate": candidate.index, "sample": sample, "reason": reason}) + "\n")


def _executor(workers: int, scheduler: str | None) -> tuple[Callable[..., Any], int, Callable[[], None]]:
    """``submit(fn, *args)``, the number of parallel slots, and a shutdown function."""
    if scheduler:
        try:
            from distributed import Client

            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise NoldoError(f"cannot connect to the dask scheduler at {scheduler}: {exc}") from None
        slots = max(1, sum(client.nthreads().values()))
        return (lambda fn, *args: client.submit(fn, *args, pure=False)), slots, client.close
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="noldo-build")
    return pool.submit, max(1, workers), lambda: pool.shutdown(wait=True, cancel_futures=True)


def _prepare(spec: BuildSpec) -> tuple[Region, Source]:
    """Check a build's arguments; returns its region and source."""
    region = parse_region(spec.region)
    if spec.samples > (room := capacity(region)):
        raise NoldoError(f"region {spec.region!r} holds about {room} samples {MIN_SPACING_KM} km apart "
                         f"({region.area_km2():.0f} km²); ask for fewer with --samples or use a larger region")
    try:
        source = source_for(spec.source_spec())
    except (TypeError, ValueError) as exc:
        raise NoldoError(f"invalid options for the {spec.source} source: {exc}") from None
    source.check()
    return region, source


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


def plan_build(spec: BuildSpec, *, workers: int | None = None, scheduler: str | None = None,
               progress: bool = False) -> dict[str, Any]:
    """``--dry-run``: search scenes until enough samples are accepted; report them and the pixel requests and
    bytes a build would fetch. Fetches no pixels and writes nothing."""
    started = time.monotonic()
    region, source = _prepare(spec)
    submit, slots, shutdown = _executor(workers or getattr(source, "parallelism", 2), scheduler)
    source_spec = spec.source_spec()
    stream = _lookahead(candidates(region, spec.seed, spec.tile_size),
                        lambda c: submit(run_candidate, source_spec, c, (), True), slots, lambda c: False,
                        lambda: spec.samples - len(samples))
    samples, reasons, made, planned = [], Counter(), Counter(), Counter()
    try:
        for candidate, future in tqdm(stream, desc="plan", unit="candidate", disable=not progress):
            outcome = future.result()
            made.update(outcome.requests)
            if outcome.rejected:
                reasons[outcome.rejected.split(":")[0]] += 1
                continue
            samples.append({"sample": candidate.sample_id(spec.split), "lon": round(candidate.lon, 6),
                            "lat": round(candidate.lat, 6), "epsg": candidate.grid.epsg, **outcome.meta["plan"]})
            for name, (requests, size) in outcome.costs.items():
                planned["computePixels"] += requests
                planned[f"{name}_bytes"] += size
            if len(samples) == spec.samples:
                break
    finally:
        stream.close()
        shutdown()
    pixel_bytes = sum(v for k, v in planned.items() if k.endswith("_bytes"))
    return {"dry_run": True, "split": spec.split, "source": spec.source, "samples": len(samples),
            "requested": spec.samples, "rejected": {"total": sum(reasons.values()), "reasons": dict(reasons)},
            "search_requests": dict(made - Counter({"bytes": made["bytes"]})),
            "pixel_requests": planned["computePixels"], "pixel_bytes": pixel_bytes,
            "bytes_by_array": {k[:-6]: v for k, v in planned.items() if k.endswith("_bytes")},
            "seconds": round(time.monotonic() - started, 2), "sample_list": samples}


def build(spec: BuildSpec, root: Path, *, workers: int | None = None, scheduler: str | None = None,
          overwrite: bool = False, progress: bool = False) -> dict[str, Any]:
    """Build (or resume) one split of a store; returns the JSON-ready summary.

    Example:
        >>> build(BuildSpec("demo", "synthetic", samples=64), Path("demo-data"))  # doctest: +SKIP
    """
    started = time.monotonic()
    root = Path(root)
    region, source = _prepare(spec)
    state = work_path(root, spec.split)
    record = spec.record(region.spec)
    previous = json.loads((state / "build.json").read_text()) if (state / "build.json").exists() else None
    if previous is not None and previous != record and not overwrite:
        changed = ", ".join(k for k in record if previous.get(k) != record[k])
        raise NoldoError(f"{root} holds a {spec.split} build with different arguments ({changed}); "
                         "re-run the original command to resume it, or pass --overwrite to replace it")
    if overwrite:
        remove_split(root, spec.split)
        previous = None
    layout = stored_layout(root, spec.split) if previous is not None else None
    height, width = region.tile_shape or (spec.tile_size, spec.tile_size)
    layout = layout or Layout(spec.samples, spec.seasons, height, width, source.arrays)
    provenance = {"source": spec.source, "command": spec.command(root), "region": region.spec, "seed": spec.seed,
                  "source_options": spec.options}
    writer = SplitWriter(root, spec.split, layout, provenance)
    atomic_write_json(state / "build.json", record)
    cache = _UnitCache(state / "units", source.arrays)
    rejections = _RejectionLog(state / "rejected.jsonl")
    done = {k: writer.marker(k)["candidates"] for k in range(layout.shards) if writer.shard_done(k)}
    committed = {i for members in done.values() for i in members}

    submit, slots, shutdown = _executor(workers or getattr(source, "parallelism", 2), scheduler)
    source_spec = spec.source_spec()
    stats = Counter()
    new_rejections: Counter = Counter()

    def known(candidate: Candidate) -> bool:
        index = candidate.index
        return index in committed or index in rejections.reasons or cache.complete(index)

    bar = tqdm(total=layout.samples, unit="sample", desc=f"build {spec.split}", disable=not progress)
    stream = _lookahead(candidates(region, spec.seed, spec.tile_size),
                        lambda c: submit(run_candidate, source_spec, c, cache.missing(c.index)), slots, known,
                        lambda: layout.samples - accepted)
    accepted, fetched, buffer = 0, 0, []
    try:
        for candidate, future in stream:
            if future is not None:
                outcome = future.result()
                stats.update(outcome.requests)
                stats["arrays_bytes"] += sum(a.nbytes for a in outcome.arrays.values())
                if outcome.rejected:
                    rejections.add(candidate, candidate.sample_id(spec.split), outcome.rejected)
                    new_rejections[outcome.rejected.split(":")[0]] += 1
                else:
                    cache.save(outcome)
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
                    _write_shard(writer, cache, spec.split, shard, buffer)
                    buffer = []
            if accepted == layout.samples:
                break
        else:  # the region ran out of candidates before enough were accepted
            if accepted < layout.samples:
                log.warning("region exhausted: %d of %d samples accepted", accepted, layout.samples)
                writer.resize(accepted)
                if buffer:
                    _write_shard(writer, cache, spec.split, accepted // SHARD_SAMPLES, buffer)
    finally:
        stream.close()
        bar.close()
        shutdown()
    if accepted == 0:
        raise NoldoError(f"no candidate in region {spec.region!r} was accepted; rejections: "
                         f"{dict(Counter(r.split(':')[0] for r in rejections.reasons.values()))}")
    manifest = writer.finalize()
    reasons = Counter(r.split(":")[0] for r in rejections.reasons.values())
    return {
        "root": str(root), "split": spec.split, "source": spec.source, "samples": accepted,
        "requested": spec.samples, "exhausted": accepted < spec.samples,
        "rejected": {"total": sum(reasons.values()), "reasons": dict(reasons),
                     "this_run": sum(new_rejections.values())},
        "resumed_shards": len(done), "requests": {k: v for k, v in sorted(stats.items()) if k not in _BYTES},
        "requests_per_sample": round((stats["listImages"] + stats["computePixels"]) / max(1, fetched), 2),
        "bytes": stats["arrays_bytes"], "bytes_received": stats["bytes"],
        "stored_bytes": manifest["total_bytes"], "seconds": round(time.monotonic() - started, 2),
    }


def _write_shard(writer: SplitWriter, cache: _UnitCache, split: str, shard: int, members: list[Candidate]) -> None:
    rows = [{"sample": c.sample_id(split), "candidate": c.index, "lon": c.lon, "lat": c.lat, "epsg": c.grid.epsg,
             **cache.meta(c.index)} for c in members]
    writer.write_shard(shard, _ShardArrays(cache, members), pd.DataFrame(rows),
                       extra={"candidates": [c.index for c in members]})
    for c in members:
        cache.drop(c.index)

