"""Background work: a timer heap feeding a bounded thread pool (status changes, acks, webhook retries)."""
from __future__ import annotations

import contextlib
import heapq
import itertools
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


class Scheduler:
    """Runs callables after a delay on a worker pool; one timer thread, no busy waiting."""

    def __init__(self, workers: int = 16, name: str = "sim") -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=f"{name}-worker")
        self._timer = threading.Thread(target=self._run, name=f"{name}-timer", daemon=True)
        self._timer.start()

    def submit(self, fn: Callable[[], None]) -> None:
        """Run fn as soon as a worker is free."""
        if self._stopped:
            return
        with contextlib.suppress(RuntimeError):  # pool shut down during stop()
            self._pool.submit(self._safe, fn)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run fn after delay seconds."""
        if delay <= 0:
            self.submit(fn)
            return
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            self._cond.notify()

    def pending(self) -> int:
        """Number of timers not yet due."""
        return len(self._heap)

    def stop(self) -> None:
        """Stop the timer thread and the pool without waiting for queued work."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                due = []
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
            for fn in due:
                self.submit(fn)

    @staticmethod
    def _safe(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # a background job must never kill its worker
            print(f"simulator: background job failed: {exc!r}", file=sys.stderr, flush=True)
