"""Reused shared-memory batches for ``loader: device`` workers (README "Performance", "Pretraining loader").

PyTorch's collate stacks a worker's batch into fresh shared memory, so every batch costs the kernel new pages
twice (written in the worker, mapped in the main process), and each of its arrays crosses as a file descriptor
fetched from the worker over a socket: on the 2-core development machine, more than the loader's own work. A
worker here collates the large raw arrays into one of :data:`SLOTS` shared-memory batches that it allocates
once and reuses. Each buffer crosses to the main process once, with the first batch written into it; later
batches cross as (worker, slot, length), and the main process hands out views of the buffers it keeps.

Contract: a slot is written again only after :func:`benchmark.device_batch.device_batch` has finished its batch
and released it (:meth:`RingTicket.release`); while every slot is still held, a worker collates into fresh shared
memory as PyTorch does. So no consumer, prefetch depth or holding pattern sees a batch change under it; one that
never finishes batches gets PyTorch's behaviour. The main process keeps a worker's buffers mapped until a new
worker replaces an ended one or the process ends: ``SLOTS`` batches per worker (about 2.6 MB per 256-px sample).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import torch

from noldo.errors import NoldoError

#: Shared-memory batches per worker: with the DataLoader's default prefetch of 2, the one being finished and
#: one to spare.
SLOTS = 4
#: The raw arrays of a ``loader: device`` item that go into the ring; the rest is collated as usual.
RING_ARRAYS = ("s1", "s2", "labels", "truth")
WRITTEN, RELEASED = 0, 1  # the rows of a ring's shared generations: written by the worker, released by the main


class RingTicket:
    """The slot a batch was written into and its generation; left alone by Lightning's device transfer."""

    def __init__(self, generations: torch.Tensor, slot: int, generation: int) -> None:
        self.generations, self.slot, self.generation = generations, slot, generation

    def release(self) -> None:
        """The batch is finished: its worker may write the slot again. Raises if it already has (the batch was
        released before, and is being read again)."""
        if int(self.generations[WRITTEN, self.slot]) != self.generation:
            raise NoldoError("a loader: device batch was read again after it was finished, and its worker has "
                             "reused its memory: finish each batch once")
        self.generations[RELEASED, self.slot] = self.generation


class BatchRing:
    """One worker's :data:`SLOTS` shared-memory batches, allocated on first use, reused once released."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.slots, self.written, self.worker = slots, 0, os.getpid()
        self.buffers: list[dict[str, torch.Tensor]] = [{} for _ in range(slots)]
        self.generations = torch.zeros((2, slots), dtype=torch.int64).share_memory_()
        self.shipped: set[tuple[int, str]] = set()

    def collate(self, items: list[dict[str, Any]], keys: list[str]) -> dict[str, Any] | None:
        """``keys`` of ``items`` stacked into a free slot, and its :class:`RingTicket` as ``ring``, as the worker
        sends them (the main process unpickles tensors and a ticket); None while no slot is free."""
        written, released = self.generations.tolist()
        slot = next((s for s in range(self.slots) if released[s] == written[s]), None)
        if slot is None:
            return None
        generation = self.written + 1
        self.written += 1
        self.generations[WRITTEN, slot] = generation
        buffers, batch = self.buffers[slot], {}
        try:
            for key in keys:
                first = items[0][key]
                buffer = buffers.get(key)
                if buffer is None or buffer.shape[1:] != first.shape or buffer.dtype != first.dtype \
                        or len(buffer) < len(items):
                    buffer = torch.empty((len(items), *first.shape), dtype=first.dtype).share_memory_()
                    buffers[key] = buffer
                    self.shipped.discard((slot, key))
                torch.stack([item[key] for item in items], out=buffer[:len(items)])
        except BaseException:
            self.generations[RELEASED, slot] = generation  # nothing was sent: the slot is free again
            raise
        for key in keys:  # only once every array is written: a failed collate ships nothing
            batch[key] = _Shipment(_view, (self.worker, slot, key, len(items), self._ship(slot, key, buffers[key])))
        ticket = (self.worker, slot, generation, self._ship(-1, "generations", self.generations))
        return batch | {"ring": _Shipment(_ticket, ticket)}

    def _ship(self, slot: int, key: str, buffer: torch.Tensor) -> torch.Tensor | None:
        """The buffer if the main process does not have it yet, else None."""
        if (slot, key) in self.shipped:
            return None
        self.shipped.add((slot, key))
        return buffer


class _Shipment:
    """A worker's stand-in for a ring tensor or ticket: unpickled in the main process as ``rebuild(*args)``."""

    def __init__(self, rebuild: Callable[..., Any], args: tuple) -> None:
        self.rebuild, self.args = rebuild, args

    def __reduce__(self) -> tuple:
        return self.rebuild, self.args


#: In the main process, the buffers each worker has shipped, by pid and (slot, key); kept mapped, they cost no
#: page mapping per batch.
_received: dict[int, dict[tuple[int, str], torch.Tensor]] = {}
_received_lock = threading.Lock()  # batches are unpickled in the main thread or a pin-memory thread


def _receive(worker: int, slot: int, key: str, shipped: torch.Tensor | None) -> torch.Tensor:
    with _received_lock:
        if worker not in _received:  # a new worker: forget the ended ones
            for pid in [pid for pid in _received if not _alive(pid)]:
                del _received[pid]
            _received[worker] = {}
        if shipped is not None:
            _received[worker][slot, key] = shipped
        return _received[worker][slot, key]


def _view(worker: int, slot: int, key: str, length: int, shipped: torch.Tensor | None) -> torch.Tensor:
    return _receive(worker, slot, key, shipped)[:length]


def _ticket(worker: int, slot: int, generation: int, shipped: torch.Tensor | None) -> RingTicket:
    return RingTicket(_receive(worker, -1, "generations", shipped), slot, generation)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists (POSIX; the loaders spawn on Linux)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


_worker_ring: BatchRing | None = None


def worker_ring() -> BatchRing | None:
    """This DataLoader worker's ring (made on first use); None outside a worker, where batches need no transport."""
    global _worker_ring
    if torch.utils.data.get_worker_info() is None:
        return None
    if _worker_ring is None:
        _worker_ring = BatchRing()
    return _worker_ring
