"""The one way rawmm opens a file it reads: without blocking, regular files only, checked on the
descriptor actually opened (refs.md §6 rules 2, 3, 5)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from .errors import AssetNotFoundError, LimitExceededError, RawmmError, UnsafePathError

# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)


def inside(path: str, root: str | os.PathLike[str]) -> bool:
    """Containment of a real path in a real root by path components, not string prefix
    (`/x/run_1` does not contain `/x/run_10/a`)."""
    r = os.fspath(root)
    return path == r or path.startswith(r if r.endswith("/") else r + "/")


def open_error(e: BaseException, path: str) -> RawmmError:
    """The typed error for an OSError (or an unencodable name) met opening `path`."""
    if isinstance(e, FileNotFoundError | NotADirectoryError):
        return AssetNotFoundError("no such file", path)
    if isinstance(e, UnicodeError | ValueError):
        return UnsafePathError("unusable path", path)
    code = getattr(e, "errno", None)
    if code == errno.ELOOP:
        return UnsafePathError("refusing to follow a symlink", path)
    if code in (errno.EACCES, errno.EPERM):
        return UnsafePathError("permission denied", path)
    if code in (errno.ENAMETOOLONG, errno.ENXIO, errno.EISDIR):
        return UnsafePathError(f"cannot open: {os.strerror(code)}", path)
    return RawmmError(f"cannot read {path}: {e}")


def descriptor_path(fd: int, fallback: str) -> str:
    """The real path of an open descriptor: its /proc link on Linux (so a symlink swapped in after
    any earlier check is seen), else the real path of the name opened."""
    try:
        link = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(fallback)
    return link.removesuffix(" (deleted)")


def open_regular(
    path: str | os.PathLike[str], max_bytes: int, roots: Sequence[str | os.PathLike[str]] | None = None
) -> int:
    """A read-only descriptor of a regular file of at most `max_bytes`, lying under one of `roots`
    (any path when None). The caller closes it."""
    name = os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path)
    if "\0" in name:
        raise UnsafePathError("NUL in path", name)
    try:
        fd = os.open(name, _READ_FLAGS)
    except (OSError, UnicodeError, ValueError) as e:
        raise open_error(e, name) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError("not a regular file", name)
        if roots is not None:
            real = descriptor_path(fd, name)
            if not any(inside(real, root) for root in roots):
                raise UnsafePathError("outside the allowed roots", name)
        if st.st_size > max_bytes:
            raise LimitExceededError(f"{name}: {st.st_size} bytes exceed the cap of {max_bytes}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_fd(fd: int, max_bytes: int, name: str) -> bytes:
    """All bytes of an open regular file (closing it); a file that grew past the cap since its
    stat still cannot pass."""
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(min(os.fstat(fd).st_size, max_bytes) + 1)
    except OSError as e:
        raise RawmmError(f"cannot read {name}: {e}") from None
    if len(data) > max_bytes:
        raise LimitExceededError(f"{name}: more than {max_bytes} bytes")
    return data


def read_regular(
    path: str | os.PathLike[str], max_bytes: int, roots: Sequence[str | os.PathLike[str]] | None = None
) -> bytes:
    return read_fd(open_regular(path, max_bytes, roots), max_bytes, os.fspath(path))
