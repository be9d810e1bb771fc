"""Small file helpers: atomic writes and streaming sha256."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".partial"
HASH_BLOCK = 4 << 20


def atomic_write_bytes(path: Path, data: bytes | Iterable[Any]) -> None:
    """Write ``data`` (bytes, or bytes-like parts written one after the other, not joined) to ``path`` so that
    readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            for part in (data,) if isinstance(data, bytes) else data:
                f.write(part)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def hash_file(path: Path, digest: Any = None, progress: Callable[[int], Any] | None = None) -> Any:
    """Feed a file to a hashlib ``digest`` (a new sha256 by default) in blocks; returns the digest.

    ``progress(n)`` is called with each block's size.
    """
    with open(path, "rb") as f:
        return hash_stream(f, digest, progress)


def hash_stream(f: Any, digest: Any = None, progress: Callable[[int], Any] | None = None) -> Any:
    """Feed an open binary file (local or remote) to a ``digest`` (a new sha256 by default) in blocks."""
    digest = hashlib.sha256() if digest is None else digest
    while block := f.read(HASH_BLOCK):
        digest.update(block)
        if progress is not None:
            progress(len(block))
    return digest


def sha256_file(path: Path, progress: Callable[[int], Any] | None = None) -> str:
    """Hex sha256 of a file."""
    return hash_file(path, progress=progress).hexdigest()


def remove_partials(directory: Path) -> int:
    """Delete leftovers of interrupted atomic writes below ``directory``; returns how many."""
    count = 0
    for tmp in directory.rglob(f"*{PARTIAL_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count
