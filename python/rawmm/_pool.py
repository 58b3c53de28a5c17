"""Batch buffers shared by every Materializer in the process (and `pixel_values` outputs of
`pixels.POOLED_BYTES` or more).

Writing a batch into newly mapped memory makes the kernel fault in and zero every page first
(0.1 s for 792 MB with free huge pages, 1.6 s without). One pool, whichever Materializer asks,
lets a Materializer built per batch (or per DataLoader worker) reuse memory as a kept one does.
A buffer is handed out again only once nothing refers to it: every array the Materializer
returns, and every view of one (a torch tensor from `torch.from_numpy` included), holds a
reference to its buffer.

Bounded: at most `MAX_BUFFERS` buffers and `RAWMM_BUFFER_POOL_GB` (default 8) GiB are kept; past
either, the least recently taken buffer is forgotten (its memory goes once its users drop it).
Released when idle: a buffer not taken for `RAWMM_BUFFER_POOL_IDLE_S` (default 30) seconds is
forgotten by a daemon thread that runs only while the pool holds buffers.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time

import numpy as np

from .errors import RawmmError

#: A few Materializers' worth (each: the batches its trainer holds and the one being filled);
#: the byte bound is the one that matters for large batches.
MAX_BUFFERS = 8


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RawmmError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise RawmmError(f"{name} must not be negative, got {raw!r}")
    return value


class _Buffer:
    __slots__ = ("array", "taken")

    def __init__(self, array: np.ndarray, taken: float) -> None:
        self.array = array
        self.taken = taken


class BufferPool:
    def __init__(self, max_bytes: int, idle_s: float, max_buffers: int = MAX_BUFFERS) -> None:
        self.max_bytes = max_bytes
        self.idle_s = idle_s
        self.max_buffers = max_buffers
        self._buffers: list[_Buffer] = []
        self._lock = threading.Lock()
        self._reaper: threading.Thread | None = None

    @classmethod
    def from_env(cls) -> BufferPool:
        gb = _env_float("RAWMM_BUFFER_POOL_GB", 8.0)
        return cls(int(gb * (1 << 30)), _env_float("RAWMM_BUFFER_POOL_IDLE_S", 30.0))

    def take(self, shape: tuple[int, ...], dtype: type[np.generic]) -> np.ndarray:
        """An array of `shape` and `dtype`, in a free kept buffer of at most twice its size if
        there is one, else in a new buffer the pool keeps."""
        n = int(np.prod(shape))
        now = time.monotonic()
        with self._lock:
            for b in self._buffers:
                # Free when only the pool and this call refer to it.
                if b.array.dtype == dtype and n <= b.array.size <= 2 * n and sys.getrefcount(b.array) == 2:
                    b.taken = now
                    return b.array[:n].reshape(shape)
            array = np.empty(n, dtype)
            if array.nbytes > self.max_bytes:
                return array.reshape(shape)  # larger than the whole pool: not kept
            self._buffers.append(_Buffer(array, now))
            self._buffers.sort(key=lambda b: b.taken)
            while len(self._buffers) > self.max_buffers or self.nbytes > self.max_bytes:
                self._buffers.pop(0)
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="rawmm-buffer-pool", daemon=True)
                self._reaper.start()
            return array.reshape(shape)

    @property
    def nbytes(self) -> int:
        return sum(b.array.nbytes for b in self._buffers)

    def __len__(self) -> int:
        return len(self._buffers)

    def clear(self) -> None:
        with self._lock:
            self._buffers.clear()

    def _reap(self) -> None:
        while True:
            time.sleep(max(0.01, self.idle_s / 4))
            with self._lock:
                cutoff = time.monotonic() - self.idle_s
                self._buffers = [b for b in self._buffers if b.taken > cutoff]
                if not self._buffers:
                    self._reaper = None
                    return


@functools.cache
def pool() -> BufferPool:
    """The process's pool, sized from the environment when first used."""
    return BufferPool.from_env()
