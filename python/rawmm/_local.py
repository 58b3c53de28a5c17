"""Assets as files in one local directory: atomic, idempotent writes by rename (refs.md §2.5)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import _core
from ._files import open_directory, open_error, read_regular
from ._uris import file_uri
from .errors import AssetNotFoundError, RawmmError, UnsafePathError

_TEMP = re.compile(r"\..+\.tmp")
#: Temp files older than this are orphans of killed writers (a live write takes seconds).
TEMP_MAX_AGE_S = 3600.0
#: How often writes sweep orphans as part of normal operation.
_SWEEP_EVERY_S = 600.0


def _write_error(e: OSError, name: str) -> RawmmError:
    if e.errno in (errno.EACCES, errno.EPERM):
        return UnsafePathError(f"no permission to write asset {name}: {e.strerror}", name)
    return RawmmError(f"cannot write asset {name}: {e.strerror or e}")


class LocalBackend:
    """Assets as read-only files in one directory, written by atomic rename. Writes go through
    a descriptor of the directory checked to be the store's own, and reads check the descriptor
    of the file opened, so replacing the directory (or an asset) by a symlink later cannot
    redirect a read or a write."""

    def __init__(self, images_dir: Path) -> None:
        self.images_dir = images_dir
        self.location = str(images_dir)
        self._last_sweep = 0.0

    def _dir_fd(self, create: bool) -> int:
        where = self.location
        if create and not os.path.lexists(where):
            try:  # the directory is created on the first write, never on a read
                self.images_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise _write_error(e, where) from None
        return open_directory(where)

    def read(self, name: str, max_bytes: int) -> bytes:
        # Asset symlinks that stay inside the store are followed (refs.md §6 rule 2); the walk
        # decides containment.
        return read_regular(os.path.join(self.location, name), max_bytes, [self.location])

    def uri(self, name: str) -> str:
        return file_uri(os.path.join(self.location, name))

    def path(self, name: str) -> Path | None:
        return self.images_dir / name

    def read_uri(self, uri: str, max_bytes: int, roots: Sequence[str]) -> bytes:
        raise UnsafePathError("object-store URIs are outside a local store's allowed roots", uri)

    def size(self, name: str) -> int | None:
        try:
            st = os.stat(os.path.join(self.location, name))
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def write(self, name: str, data: bytes) -> None:
        dfd = self._dir_fd(create=True)
        try:
            if not self._existing_valid(dfd, name, data):
                self._write_new(dfd, name, data)
            now = time.monotonic()
            if not self._last_sweep or now - self._last_sweep > _SWEEP_EVERY_S:
                self._last_sweep = now
                self._sweep(dfd, TEMP_MAX_AGE_S)
        finally:
            os.close(dfd)

    def _existing_valid(self, dfd: int, name: str, data: bytes) -> bool:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise open_error(e, name) from None
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError("existing asset is not a regular file", name)
        if st.st_size != len(data):
            return False
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
        except OSError:
            return False  # unreadable: replaced atomically
        try:
            # `data` hashes to the name, so equal bytes are a verified copy (cheaper than hashing).
            if not _core.same_contents(fd, data):
                return False  # corrupt: replaced atomically
        except OSError:
            return False
        finally:
            os.close(fd)
        # The mtime feeds external TTL sweepers; best effort, since another user's asset or a
        # read-only store still holds a valid asset.
        with contextlib.suppress(OSError):
            os.utime(name, dir_fd=dfd, follow_symlinks=False)
        return True

    def _write_new(self, dfd: int, name: str, data: bytes) -> None:
        tmp = f".{name}.{os.getpid()}.{threading.get_ident()}.{secrets.token_hex(4)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o444, dir_fd=dfd)
        except OSError as e:
            raise _write_error(e, name) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            if isinstance(e, OSError):
                raise _write_error(e, name) from None
            raise
        with contextlib.suppress(OSError):  # best effort: make the rename durable
            os.fsync(dfd)

    def entries(self) -> Iterator[tuple[str, str | None]]:
        """Every directory entry, with a problem for those that cannot be assets; entries that
        vanish meanwhile (a writer's temp renamed) are skipped, live temps too."""
        try:
            names = sorted(os.listdir(self.images_dir))
        except (FileNotFoundError, NotADirectoryError):
            return
        now = time.time()
        for name in names:
            try:
                st = os.lstat(os.path.join(self.location, name))
            except FileNotFoundError:
                continue
            except OSError as e:
                yield name, f"cannot stat: {e.strerror}"
                continue
            if stat.S_ISLNK(st.st_mode):
                yield name, "symlink"
            elif not stat.S_ISREG(st.st_mode):
                yield name, "not a regular file"
            elif _TEMP.fullmatch(name):
                if now - st.st_mtime > TEMP_MAX_AGE_S:
                    yield name, "orphaned temp file"
            else:
                yield name, None

    def sweep(self, older_than_s: float) -> int:
        try:
            dfd = self._dir_fd(create=False)
        except AssetNotFoundError:
            return 0
        try:
            return self._sweep(dfd, older_than_s)
        finally:
            os.close(dfd)

    def _sweep(self, dfd: int, older_than_s: float) -> int:
        """Removes regular temp files unmodified for `older_than_s`: a writer renames or unlinks
        its temp within seconds, so only orphans of killed writers get that old."""
        removed = 0
        now = time.time()
        for name in os.listdir(dfd):
            if not _TEMP.fullmatch(name):
                continue
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and now - st.st_mtime > older_than_s:
                    os.unlink(name, dir_fd=dfd)
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as e:
                raise _write_error(e, name) from None
        return removed
