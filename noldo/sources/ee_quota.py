"""One Earth Engine quota for the whole build: requests in flight and requests per second, across a cluster.

Earth Engine limits a Cloud project, not a process: 40 concurrent interactive requests and 100
requests per second by default (README, "Earth Engine"). :class:`Quota` holds both limits for
every request the seam sends: within one process with a semaphore and a sliding-window rate
limiter; on a dask cluster with a ``distributed.Semaphore`` shared by every worker (the in-flight
limit) and a static share of the rate per worker process.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class RateLimiter:
    """At most ``count`` requests in any sliding window of ``window`` seconds (thread-safe)."""

    def __init__(self, count: int, window: float) -> None:
        self.count, self.window = count, window
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    @classmethod
    def share(cls, rate: float, processes: int) -> RateLimiter:
        """This process's share of ``rate`` requests/s when ``processes`` processes send at once: the sum of
        the shares never exceeds ``rate`` in any one-second window."""
        processes = max(1, processes)
        if rate >= processes:
            return cls(math.floor(rate / processes), 1.0)
        return cls(1, math.ceil(processes / rate))

    def wait(self) -> None:
        """Block until one more request fits the window, then record it."""
        while True:
            with self._lock:
                now = time.monotonic()
                while self._sent and now - self._sent[0] >= self.window:
                    self._sent.popleft()
                if len(self._sent) < self.count:
                    self._sent.append(now)
                    return
                pause = self.window - (now - self._sent[0])
            time.sleep(pause + 1e-3)


class Quota:
    """The in-flight and rate limits of one project for this process (see the module docstring).

    Args:
        concurrency: requests in flight for the whole build.
        rate: requests per second for the whole build.
        processes: dask worker processes that share the quota (0: this process alone).
        name: the quota's name on the cluster (one per project).
    """

    def __init__(self, concurrency: int, rate: float, processes: int = 0, name: str = "noldo-ee") -> None:
        self.rate = RateLimiter.share(rate, processes or 1)
        if processes:
            from distributed import Semaphore

            self._slots = Semaphore(max_leases=concurrency, name=name)
        else:
            self._slots = threading.BoundedSemaphore(concurrency)

    @contextmanager
    def request(self) -> Iterator[None]:
        """Hold one request slot for the duration of the block; the request is sent once the rate allows."""
        self._slots.acquire()
        try:
            self.rate.wait()
            yield
        finally:
            self._slots.release()
