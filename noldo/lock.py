"""One writer per store split: every command that writes a split holds its lock while it runs.

A second writer on the same ROOT and split refuses at once, with one line naming the holder (host,
pid, start time, command) and what to do. Readers never take a lock. On a local ROOT the lock is an
OS file lock (``filelock``: ``flock`` on POSIX) on ``ROOT/.noldo/locks/<split>.lock``: the kernel
releases it when its holder ends, however it ends (``kill -9`` included), so it never goes stale;
the holder's description is kept beside it in ``<split>.json``. The store's manifest has its own
lock (``_manifest.lock``), which writers wait for instead of refusing (writing it takes seconds).

Example:
    >>> with writing("demo-data", "nol", command="noldo build ..."):  # doctest: +SKIP
    ...     ...
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime

import filelock

from noldo.errors import NoldoError
from noldo.files import atomic_write_json
from noldo.location import RootLike, StoreLocation

MANIFEST_LOCK = "_manifest"  # not a valid split name
MANIFEST_WAIT = 600.0  # seconds a writer waits for another one's manifest


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


@contextmanager
def _local_lock(location: StoreLocation, name: str, command: str, wait: float) -> Iterator[None]:
    location.is_store_dir()  # a clear error if ROOT is a file
    folder = location.state_dir("locks")
    folder.mkdir(parents=True, exist_ok=True)
    about = folder / f"{name}.json"
    lock = filelock.FileLock(folder / f"{name}.lock", thread_local=False)
    try:
        lock.acquire(timeout=wait)
    except filelock.Timeout:
        try:
            info = json.loads(about.read_text())
        except (OSError, ValueError):
            info = None
        what = "the store's manifest" if name == MANIFEST_LOCK else f"split {name}"
        raise LockHeld(f"{what} of {location} is being written by {_describe(info)}; wait until it ends "
                       "(re-running then continues its work) or stop it first. A local lock is released when "
                       "its holder ends, so there is nothing to break.") from None
    try:
        atomic_write_json(about, holder(command))
        yield
    finally:
        about.unlink(missing_ok=True)
        lock.release()


@contextmanager
def writing(root: RootLike, *splits: str, command: str = "") -> Iterator[None]:
    """Hold the write lock of each split of ``root`` (in name order) for the block; refuse at once if
    another process holds one of them."""
    location = StoreLocation.of(root)
    with ExitStack() as stack:
        for split in sorted(set(splits)):
            stack.enter_context(_local_lock(location, split, command, wait=0))
        yield


@contextmanager
def writing_manifest(root: RootLike, command: str = "") -> Iterator[None]:
    """Hold the store's manifest lock, waiting up to ``MANIFEST_WAIT`` seconds for another writer's."""
    with _local_lock(StoreLocation.of(root), MANIFEST_LOCK, command, wait=MANIFEST_WAIT):
        yield
