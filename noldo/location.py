"""Where a store lives: every command reaches the files of a store ``ROOT`` through :class:`StoreLocation`.

Today a location is a local directory (or a ``file://`` URL); object stores come as another backend
behind the same methods, without touching the commands. Paths inside a store are POSIX-style,
relative to ``ROOT`` (``nol.zarr/s2/c/0/0/0/0/0``, ``nol.parquet``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from noldo.errors import NoldoError
from noldo.files import atomic_write_bytes, remove_partials, sha256_file

_URL = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>.*)$")


class StoreLocation:
    """A store ``ROOT``: a local directory (or ``file://`` URL).

    Example:
        >>> loc = StoreLocation("demo-data")
        >>> loc.exists("nol.zarr/zarr.json")  # doctest: +SKIP
        True
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        text = os.fspath(root)
        if match := _URL.match(text):
            if match["scheme"].lower() != "file":
                raise NoldoError(f"{text}: {match['scheme']}:// locations are not supported yet; give a local "
                                 "directory")
            text = "/" + match["rest"].lstrip("/")
        self.path = Path(text).expanduser()

    @classmethod
    def of(cls, root: str | os.PathLike[str] | StoreLocation) -> StoreLocation:
        """``root`` as a location (a location is returned as it is)."""
        return root if isinstance(root, StoreLocation) else cls(root)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"StoreLocation({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreLocation) and self.path.resolve() == other.path.resolve()

    def __hash__(self) -> int:
        return hash(self.path.resolve())

    def _local(self, rel: str) -> Path:
        return self.path / rel if rel else self.path

    def state_dir(self, *parts: str) -> Path:
        """A local directory for build state below ``ROOT/.noldo`` (not part of the published store)."""
        return self.path.joinpath(".noldo", *parts)

    # --- reading ----------------------------------------------------------------------------------
    def is_store_dir(self) -> bool:
        """True if ROOT is a directory (a store or the place for one); False if it is missing."""
        if self.path.exists() and not self.path.is_dir():
            raise NoldoError(f"{self.path} exists and is not a directory")
        return self.path.is_dir()

    def exists(self, rel: str = "") -> bool:
        return self._local(rel).exists()

    def is_file(self, rel: str) -> bool:
        return self._local(rel).is_file()

    def read_bytes(self, rel: str) -> bytes:
        return self._local(rel).read_bytes()

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def read_parquet(self, rel: str, columns: list[str] | None = None) -> pd.DataFrame:
        """A Parquet file as a DataFrame, decoded from an Arrow buffer of its bytes."""
        return pq.read_table(pa.BufferReader(self.read_bytes(rel)), columns=columns).to_pandas()

    def size(self, rel: str) -> int:
        return self._local(rel).stat().st_size

    def sha256(self, rel: str, progress: Callable[[int], Any] | None = None) -> str:
        return sha256_file(self._local(rel), progress)

    def children(self, rel: str = "") -> list[str]:
        """Names of the entries directly below ``rel``, sorted."""
        folder = self._local(rel)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def files(self, rel: str = "") -> Iterator[str]:
        """Every file below ``rel`` (relative to ROOT, POSIX style), sorted."""
        folder = self._local(rel)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                yield path.relative_to(self.path).as_posix()

    def zarr_store(self, rel: str, read_only: bool = True) -> zarr.abc.store.Store:
        """The zarr store of a group below ROOT."""
        return zarr.storage.LocalStore(self._local(rel), read_only=read_only)

    # --- writing ----------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a file atomically: readers see the old content or the whole new one."""
        atomic_write_bytes(self._local(rel), data)

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, (json.dumps(obj, indent=2) + "\n").encode())

    def rename(self, rel: str, target: str) -> None:
        """Move a file or folder below ROOT (a staged group becomes visible at once)."""
        self._local(rel).rename(self._local(target))

    def remove(self, rel: str) -> None:
        """Delete a file or a folder below ROOT; nothing if it is not there."""
        path = self._local(rel)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def remove_partials(self, rel: str) -> int:
        """Delete leftovers of interrupted atomic writes below ``rel``; returns how many."""
        return remove_partials(self._local(rel))


#: What every API accepts as a store ROOT: a path, a ``file://`` URL or a location.
RootLike = str | os.PathLike | StoreLocation
