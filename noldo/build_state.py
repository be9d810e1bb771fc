"""What a build remembers between runs: finished (sample, array) units and rejected candidates.

Both live in the build's state directory (``ROOT/.noldo/<split>/``, see :mod:`noldo.build`); a sample's
unit is cached until its shard is written, so a killed build refetches nothing it had finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from noldo.files import atomic_write_bytes


class UnitCache:
    """Finished samples of candidates whose shard is not written yet: one file per sample (``<index>.unit``) with
    every array the source made for it, their provenance and the plan's.

    A unit file is a JSON header (names, dtypes, shapes, provenance; its length in the first 8 bytes) followed
    by the raw array bytes: nothing in it executes code, and loading it copies nothing.
    """

    def __init__(self, directory: Path, arrays: tuple[str, ...]) -> None:
        self.dir, self.arrays = directory, arrays
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, index: int) -> Path:
        return self.dir / f"{index:07d}.unit"

    def missing(self, index: int) -> tuple[str, ...]:
        """The arrays of a candidate still to fetch: all of them, or none once its unit is saved."""
        return () if self.complete(index) else self.arrays

    def complete(self, index: int) -> bool:
        return self.path(index).exists()

    def save(self, index: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Mapping[str, Any]]) -> None:
        """Keep a candidate's arrays (each with its provenance ``meta[name]``) and its plan ``meta["plan"]``."""
        blobs = [np.ascontiguousarray(arrays[name]) for name in self.arrays]
        header = json.dumps({"plan": meta["plan"], "arrays": [
            {"name": name, "dtype": blob.dtype.str, "shape": list(blob.shape), "meta": meta.get(name, {})}
            for name, blob in zip(self.arrays, blobs, strict=True)]}).encode()
        atomic_write_bytes(self.path(index), b"".join([len(header).to_bytes(8, "little"), header,
                                                       *(blob.tobytes() for blob in blobs)]))

    def _header(self, f) -> dict[str, Any]:
        return json.loads(f.read(int.from_bytes(f.read(8), "little")))

    def load(self, index: int, name: str) -> tuple[np.ndarray, dict[str, Any]]:
        """One array of a unit and its provenance, reading only its bytes."""
        with open(self.path(index), "rb") as f:
            header = self._header(f)
            body = f.tell()
            for entry in header["arrays"]:
                dtype, count = np.dtype(entry["dtype"]), int(np.prod(entry["shape"]))
                if entry["name"] == name:
                    f.seek(body)
                    return np.frombuffer(f.read(count * dtype.itemsize), dtype).reshape(entry["shape"]), entry["meta"]
                body += count * dtype.itemsize
        raise KeyError(f"unit {index} has no {name}")

    def meta(self, index: int) -> dict[str, Any]:
        """The index columns of a candidate: its plan's provenance, then every array's."""
        with open(self.path(index), "rb") as f:
            header = self._header(f)
        meta = dict(header["plan"])
        for entry in header["arrays"]:
            meta |= entry["meta"]
        return meta

    def drop(self, index: int) -> None:
        self.path(index).unlink(missing_ok=True)


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
