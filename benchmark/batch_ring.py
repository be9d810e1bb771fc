"""Reused shared-memory batches for ``loader: device`` workers (README "Performance", "Pretraining loader").

PyTorch's collate stacks a worker's batch into fresh shared memory, so every batch costs the kernel new pages
twice (written in the worker, mapped in the main process): on the 2-core development machine, more than the
loader's own work. A worker here collates the large raw arrays into one of :data:`SLOTS` shared-memory batches
that it allocates once and reuses in turn; the main process receives them as it receives any shared tensor.

Contract: a batch is valid until its worker reuses the slot, which it does for its ``SLOTS``-th next batch.
The DataLoader asks a worker for a batch ``prefetch_factor`` (2) batches ahead of the one it hands out, and
Lightning fetches one batch ahead of the one it trains on, so a batch that is finished when it comes
(:func:`benchmark.device_batch.device_batch`, in ``on_after_batch_transfer``) is never overwritten. Each batch
carries a :class:`RingTicket`; the device path checks it after reading the batch and refuses, with a clear
error, a batch whose slot was reused while it was kept. Shared memory: ``SLOTS`` batches per worker (about
2.6 MB per 256-px sample), against the two or three a worker's batches occupy at a time without the ring.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from noldo.errors import NoldoError

#: Shared-memory batches per worker: the DataLoader's default prefetch of 2, the batch Lightning fetches ahead,
#: and the one being finished.
SLOTS = 4
#: The raw arrays of a ``loader: device`` item that go into the ring; the rest is collated as usual.
RING_ARRAYS = ("s1", "s2", "labels", "truth")


class RingTicket:
    """The slot a batch was written into and the slot's generation then; left alone by Lightning's device
    transfer (not a tensor)."""

    def __init__(self, stamps: torch.Tensor, slot: int, generation: int) -> None:
        self.stamps, self.slot, self.generation = stamps, slot, generation

    def check(self) -> None:
        """Raise if the worker has started to write this batch's slot again."""
        if int(self.stamps[self.slot]) != self.generation:
            raise NoldoError(f"a loader: device batch was overwritten by its worker before it was used: finish each "
                             f"batch as it comes (a worker reuses its memory for its {SLOTS}th next batch)")


class BatchRing:
    """One worker's :data:`SLOTS` shared-memory batches, allocated on first use and reused in turn. Each buffer
    crosses to the main process once, with the first batch written into it; later batches cross as the slot,
    the length and the generation, and the main process hands out views of the buffer it keeps."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.slots, self.written, self.worker = slots, 0, os.getpid()
        self.buffers: list[dict[str, torch.Tensor]] = [{} for _ in range(slots)]
        self.stamps = torch.zeros(slots, dtype=torch.int64).share_memory_()
        self.shipped: set[tuple[int, str]] = set()

    def collate(self, items: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
        """``keys`` of ``items`` stacked into the next slot, and the slot's :class:`RingTicket` as ``ring``; in
        the worker, what the main process unpickles as those tensors and that ticket."""
        slot, generation = self.written % self.slots, self.written + 1
        self.written += 1
        self.stamps[slot] = generation  # before writing: a reader checking after its read sees the reuse
        batch = {}
        for key in keys:
            first = items[0][key]
            buffer = self.buffers[slot].get(key)
            if buffer is None or buffer.shape[1:] != first.shape or buffer.dtype != first.dtype \
                    or len(buffer) < len(items):
                buffer = torch.empty((len(items), *first.shape), dtype=first.dtype).share_memory_()
                self.buffers[slot][key] = buffer
                self.shipped.discard((slot, key))
            torch.stack([item[key] for item in items], out=buffer[:len(items)])
            batch[key] = _Shipment(_view, (self.worker, slot, key, len(items), self._ship(slot, key, buffer)))
        ticket = (self.worker, slot, generation, self._ship(-1, "stamps", self.stamps))
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


#: In the main process, the buffers each live worker has shipped, by pid and (slot, key). Kept mapped, they
#: cost no page mapping per batch; a new worker drops those of the workers that have ended.
_received: dict[int, dict[tuple[int, str], torch.Tensor]] = {}


def _receive(worker: int, slot: int, key: str, shipped: torch.Tensor | None) -> torch.Tensor:
    if worker not in _received:
        for pid in [pid for pid in _received if not _alive(pid)]:
            del _received[pid]
        _received[worker] = {}
    if shipped is not None:
        _received[worker][slot, key] = shipped
    return _received[worker][slot, key]


def _view(worker: int, slot: int, key: str, length: int, shipped: torch.Tensor | None) -> torch.Tensor:
    return _receive(worker, slot, key, shipped)[:length]


def _ticket(worker: int, slot: int, generation: int, shipped: torch.Tensor | None) -> RingTicket:
    return RingTicket(_receive(worker, -1, "stamps", shipped), slot, generation)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
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
