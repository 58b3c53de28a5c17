"""A read-through cache of object-store assets on local disk: a bounded directory, least
recently used first out by bytes. Entries are written atomically and verified on every hit by
the store, so a corrupt entry costs one refetch, never a wrong byte. Processes may share it."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from pathlib import Path

from ._files import read_regular
from .errors import RawmmError


class ReadCache:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._root = os.path.realpath(directory)
            # Sizes of the entries, oldest use first (dict order), from what is on disk.
            entries = [e for e in os.scandir(self._root) if e.is_file() and not e.name.startswith(".")]
            listed = sorted((e.stat().st_mtime, e.name, e.stat().st_size) for e in entries)
        except OSError as e:
            raise RawmmError(f"cannot use the cache directory {directory}: {e}") from None
        self._sizes = {name: size for _, name, size in listed}
        self._total = sum(self._sizes.values())

    def _path(self, name: str) -> str:
        return os.path.join(self._root, name)

    def get(self, name: str, max_bytes: int) -> bytes | None:
        try:
            data = read_regular(self._path(name), max_bytes, [self._root])
        except RawmmError:
            return None
        with contextlib.suppress(OSError):
            os.utime(self._path(name))  # recently used, for other processes' eviction too
        with self._lock:
            self._total += len(data) - self._sizes.pop(name, 0)
            self._sizes[name] = len(data)  # now the most recently used
        return data

    def put(self, name: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            if name in self._sizes:
                return
        tmp = self._path(f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "xb") as f:
                f.write(data)
            os.replace(tmp, self._path(name))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return  # a cache that cannot write is only slower
        with self._lock:
            self._sizes[name] = len(data)
            self._total += len(data)
            while self._total > self.max_bytes and self._sizes:
                old = next(iter(self._sizes))
                self._total -= self._sizes.pop(old)
                with contextlib.suppress(OSError):
                    os.unlink(self._path(old))

    def drop(self, name: str) -> None:
        with self._lock:
            self._total -= self._sizes.pop(name, 0)
        with contextlib.suppress(OSError):
            os.unlink(self._path(name))
