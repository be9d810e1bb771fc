"""What a build remembers between runs: finished (sample, array) units and rejected candidates.

Both live in the build's state directory (``ROOT/.noldo/<split>/``, see :mod:`noldo.build`); a unit
is cached until its shard is written, so a killed build refetches nothing it had finished.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from noldo.files import atomic_write_bytes, atomic_write_json


class UnitCache:
    """Finished (sample, array) units of candidates whose shard is not written yet."""

    def __init__(self, directory: Path, arrays: tuple[str, ...]) -> None:
        self.dir, self.arrays = directory, arrays
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, index: int, name: str) -> Path:
        return self.dir / f"{index:07d}.{name}.npz" if name != "plan" else self.dir / f"{index:07d}.plan.json"

    def missing(self, index: int) -> tuple[str, ...]:
        """The arrays of a candidate still to fetch."""
        return tuple(a for a in self.arrays if not self._path(index, a).exists())

    def complete(self, index: int) -> bool:
        return not self.missing(index) and self._path(index, "plan").exists()

    def save(self, index: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Mapping[str, Any]]) -> None:
        """Keep a candidate's arrays (each with its provenance ``meta[name]``) and its plan ``meta["plan"]``."""
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.savez(buffer, array=array, meta=np.array(json.dumps(meta.get(name, {}))))
            atomic_write_bytes(self._path(index, name), buffer.getvalue())
        atomic_write_json(self._path(index, "plan"), meta["plan"])

    def load(self, index: int, name: str) -> tuple[np.ndarray, dict[str, Any]]:
        with np.load(self._path(index, name)) as f:
            return f["array"], json.loads(str(f["meta"]))

    def meta(self, index: int) -> dict[str, Any]:
        """The index columns of a candidate: its plan's provenance, then every array's."""
        meta = json.loads(self._path(index, "plan").read_text())
        for name in self.arrays:
            meta |= self.load(index, name)[1]
        return meta

    def drop(self, index: int) -> None:
        for name in (*self.arrays, "plan"):
            self._path(index, name).unlink(missing_ok=True)


class StackedUnits(Mapping):
    """The arrays of one shard, stacked from the unit cache one array at a time (bounded memory),
    plus fixed ``extra`` arrays (the georeference of a new split)."""

    def __init__(self, cache: UnitCache, members: list[int], extra: Mapping[str, np.ndarray]) -> None:
        self.cache, self.members, self.extra = cache, members, extra

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.extra:
            return self.extra[name]
        return np.stack([self.cache.load(i, name)[0] for i in self.members])

    def __iter__(self) -> Iterator[str]:
        return iter((*self.cache.arrays, *self.extra))

    def __len__(self) -> int:
        return len(self.cache.arrays) + len(self.extra)


class RejectionLog:
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

    def add(self, candidate: int, sample: str, reason: str) -> None:
        self.reasons[candidate] = reason
        with open(self.path, "a") as f:
            f.write(json.dumps({"candidate": candidate, "sample": sample, "reason": reason}) + "\n")
