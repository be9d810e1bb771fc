"""One writer per store split: every command that writes a split holds its lock while it runs.

A second writer on the same ROOT and split refuses at once, with one line naming the holder (host,
pid, start time, command) and what to do. Readers never take a lock. On a local ROOT the lock is an
OS file lock (``filelock``: ``flock`` on POSIX) on ``ROOT/.noldo/locks/<split>.lock``: the kernel
releases it when its holder ends, however it ends (``kill -9`` included), so it never goes stale;
the holder's description is kept beside it in ``<split>.json``. On object storage the lock is a
lease object ``ROOT/.noldo/locks/<split>.lease`` made by a create-only PUT (``If-None-Match: *``),
so of two writers exactly one creates it; its holder renews it every third of
:data:`LEASE_SECONDS` and deletes it at the end. A holder that dies leaves a lease that expires
(the next writer removes it with a conditional delete, ``If-Match`` its ETag) or that
``--break-lock`` (:func:`break_lock`) removes at once. The store's manifest has its own lock
(``_manifest``), which writers wait for instead of refusing (writing it takes seconds).

Example:
    >>> with writing("demo-data", "nol", command="noldo build ..."):  # doctest: +SKIP
    ...     ...
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import filelock

from noldo.errors import NoldoError
from noldo.files import atomic_write_json
from noldo.location import LocalLocation, ObjectLocation, RootLike, StoreLocation

log = logging.getLogger(__name__)
MANIFEST_LOCK = "_manifest"  # not a valid split name
MANIFEST_WAIT = 600.0  # seconds a writer waits for another one's manifest
DESCRIBE_WAIT = 2.0  # seconds a refused writer waits for the holder to describe itself
#: How long a lease on object storage outlives its holder's last renewal (env NOLDO_LEASE_SECONDS).
LEASE_SECONDS = float(os.environ.get("NOLDO_LEASE_SECONDS", 120))
LEASES = ".noldo/locks"


class LockHeld(NoldoError):
    """Another process is writing this split."""


def holder(command: str) -> dict[str, object]:
    """How this process describes itself to a writer it turns away."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started_utc": datetime.now(UTC).isoformat(timespec="seconds"), "command": command}


def _describe(info: dict | None) -> str:
    if not info:
        return "another noldo process (it has not described itself yet)"
    return f"{info.get('command') or 'a noldo command'} (host {info.get('host')}, pid {info.get('pid')}, " \
           f"since {info.get('started_utc')})"


def _what(name: str) -> str:
    return "the store's manifest" if name == MANIFEST_LOCK else f"split {name}"


def _description(about: Path) -> dict | None:
    """The holder's description, waiting up to :data:`DESCRIBE_WAIT` seconds for a holder that has just taken
    the lock to write it."""
    deadline = time.monotonic() + DESCRIBE_WAIT
    while True:
        try:
            return json.loads(about.read_text())
        except (OSError, ValueError):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)


@contextmanager
def _local_lock(location: LocalLocation, name: str, command: str, wait: float) -> Iterator[None]:
    location.is_store_dir()  # a clear error if ROOT is a file
    folder = location.lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    about = folder / f"{name}.json"
    lock = filelock.FileLock(folder / f"{name}.lock", thread_local=False)
    try:
        lock.acquire(timeout=wait)
    except filelock.Timeout:
        info = _description(about)
        raise LockHeld(f"{_what(name)} of {location} is being written by {_describe(info)}; wait until it ends "
                       "(re-running then continues its work) or stop it first. A local lock is released when "
                       "its holder ends, so there is nothing to break.") from None
    try:
        atomic_write_json(about, holder(command))
        yield
    finally:
        about.unlink(missing_ok=True)
        lock.release()


def _expired(info: dict) -> bool:
    try:
        return datetime.fromisoformat(info["expires_utc"]) < datetime.now(UTC)
    except (KeyError, TypeError, ValueError):
        return True  # a lease nobody can read protects nothing


def _lease_body(about: dict) -> bytes:
    expires = datetime.now(UTC) + timedelta(seconds=LEASE_SECONDS)
    return json.dumps({**about, "expires_utc": expires.isoformat(timespec="seconds")}).encode()


class _Renewal(threading.Thread):
    """Renews a held lease until stopped; notices (and logs) a lease taken away by --break-lock."""

    def __init__(self, location: ObjectLocation, rel: str, about: dict) -> None:
        super().__init__(name="noldo-lease", daemon=True)
        self.location, self.rel, self.about = location, rel, about
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(LEASE_SECONDS / 3):
            current = self.location.read_tagged(self.rel)
            if current is None or json.loads(current[0]).get("token") != self.about["token"]:
                log.error("the lease %s/%s was broken by another process; stop this one, the other now "
                          "writes", self.location, self.rel)
                return
            self.location.write_bytes(self.rel, _lease_body(self.about))


@contextmanager
def _lease(location: ObjectLocation, name: str, command: str, wait: float) -> Iterator[None]:
    rel = f"{LEASES}/{name}.lease"
    about = {**holder(command), "token": uuid.uuid4().hex}
    deadline = time.monotonic() + wait
    while not location.create(rel, _lease_body(about)):
        current = location.read_tagged(rel)
        if current is None:
            continue  # released meanwhile: try again
        info = _parse(current[0])
        if _expired(info):
            log.warning("%s of %s: removing the expired lease of %s", _what(name), location, _describe(info))
            location.delete_if(rel, current[1])
            continue
        if time.monotonic() >= deadline:
            raise LockHeld(f"{_what(name)} of {location} is being written by {_describe(info)}; wait until it "
                           "ends (re-running then continues its work), or if that process is gone, wait until its "
                           f"lease expires at {info.get('expires_utc')} or re-run with --break-lock")
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    renewal = _Renewal(location, rel, about)
    renewal.start()
    try:
        yield
    finally:
        renewal.stopped.set()
        current = location.read_tagged(rel)
        if current is not None and _parse(current[0]).get("token") == about["token"]:
            location.delete_if(rel, current[1])


def _parse(data: bytes) -> dict:
    try:
        info = json.loads(data)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _lock(location: StoreLocation, name: str, command: str, wait: float):
    if isinstance(location, ObjectLocation):
        return _lease(location, name, command, wait)
    return _local_lock(location, name, command, wait)


def break_lock(root: RootLike, *splits: str) -> list[str]:
    """Remove the leases of ``splits`` (all, if none is named) on object storage, whose holders must be
    gone; returns the splits freed. A local lock cannot go stale, so there is nothing to break on disk."""
    location = StoreLocation.of(root)
    if not isinstance(location, ObjectLocation):
        return []
    removed = []
    for split in splits or [name.removesuffix(".lease") for name in location.children(LEASES)]:
        current = location.read_tagged(f"{LEASES}/{split}.lease")
        if current is not None:
            log.warning("breaking the lease of split %s of %s, held by %s", split, location,
                        _describe(_parse(current[0])))
            location.delete_if(f"{LEASES}/{split}.lease", current[1])
            removed.append(split)
    return removed


@contextmanager
def writing(root: RootLike, *splits: str, command: str = "") -> Iterator[None]:
    """Hold the write lock of each split of ``root`` (in name order) for the block; refuse at once if
    another process holds one of them."""
    location = StoreLocation.of(root)
    with ExitStack() as stack:
        for split in sorted(set(splits)):
            stack.enter_context(_lock(location, split, command, wait=0))
        yield


@contextmanager
def writing_manifest(root: RootLike, command: str = "") -> Iterator[None]:
    """Hold the store's manifest lock, waiting up to ``MANIFEST_WAIT`` seconds for another writer's."""
    with _lock(StoreLocation.of(root), MANIFEST_LOCK, command, wait=MANIFEST_WAIT):
        yield
