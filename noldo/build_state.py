"""What a build remembers between runs: finished (sample, array) units and rejected candidates.

Both live in the build's state directory (``ROOT/.noldo/<split>/``, see :mod:`noldo.build`); a sample's
unit is cached until its shard is written, so a killed build refetches nothing it had finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
        self._layouts: dict[int, _UnitLayout] = {}  # what each unit file holds, kept until it is dropped

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
        header = {"plan": meta["plan"], "arrays": [
            {"name": name, "dtype": blob.dtype.str, "shape": list(blob.shape), "meta": meta.get(name, {})}
            for name, blob in zip(self.arrays, blobs, strict=True)]}
        text = json.dumps(header).encode()
        atomic_write_bytes(self.path(index), [len(text).to_bytes(8, "little"), text,
                                               *(blob.reshape(-1).view(np.uint8) for blob in blobs)])
        self._layouts[index] = _UnitLayout.of(header, 8 + len(text))

    def _layout(self, index: int) -> _UnitLayout:
        """Where a unit's arrays lie in its file (its header is read once, then kept until :meth:`drop`)."""
        layout = self._layouts.get(index)
        if layout is None:
            with open(self.path(index), "rb") as f:
                size = int.from_bytes(f.read(8), "little")
                layout = self._layouts[index] = _UnitLayout.of(json.loads(f.read(size)), 8 + size)
        return layout

    def shape(self, index: int, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """The shape and dtype of one array of a unit."""
        arrays = self._layout(index).arrays
        if name not in arrays:
            raise KeyError(f"unit {index} has no {name}")
        _, dtype, shape, _ = arrays[name]
        return shape, dtype

    def read_into(self, index: int, name: str, out: np.ndarray) -> None:
        """Read one array of a unit, and only its bytes, into ``out`` (C-contiguous, of its shape and dtype)."""
        offset, dtype, shape, _ = self._layout(index).arrays[name]
        if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
            raise ValueError(f"unit {index}: {name} is {dtype}{list(shape)}, not {out.dtype}{list(out.shape)}")
        with open(self.path(index), "rb") as f:
            f.seek(offset)
            if f.readinto(out.reshape(-1).view(np.uint8)) != out.nbytes:
                raise ValueError(f"unit {index} is truncated")  # units are written whole (atomically): a bug

    def meta(self, index: int) -> dict[str, Any]:
        """The index columns of a candidate: its plan's provenance, then every array's."""
        layout = self._layout(index)
        meta = dict(layout.plan)
        for *_, array_meta in layout.arrays.values():
            meta |= array_meta
        return meta

    def drop(self, index: int) -> None:
        self.path(index).unlink(missing_ok=True)
        self._layouts.pop(index, None)


@dataclass(frozen=True)
class _UnitLayout:
    """A unit file's header: the plan's provenance, and each array's (offset, dtype, shape, provenance)."""

    plan: dict[str, Any]
    arrays: dict[str, tuple[int, np.dtype, tuple[int, ...], dict[str, Any]]]

    @classmethod
    def of(cls, header: dict[str, Any], body: int) -> _UnitLayout:
        arrays = {}
        for entry in header["arrays"]:
            dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
            arrays[entry["name"]] = (body, dtype, shape, entry["meta"])
            body += dtype.itemsize * int(np.prod(shape))
        return cls(header["plan"], arrays)


class StackedUnits(Mapping):
    """The arrays of one shard, stacked from the unit cache one array at a time (bounded memory),
    plus fixed ``extra`` arrays (the georeference of a new split)."""

    def __init__(self, cache: UnitCache, members: list[int], extra: Mapping[str, np.ndarray]) -> None:
        self.cache, self.members, self.extra = cache, members, extra

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.extra:
            return self.extra[name]
        shape, dtype = self.cache.shape(self.members[0], name)
        stacked = np.empty((len(self.members), *shape), dtype)
        for k, index in enumerate(self.members):  # each unit's bytes read straight into its row
            self.cache.read_into(index, name, stacked[k])
        return stacked

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
