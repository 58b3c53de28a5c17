"""The one way rawmm opens a file it reads: without blocking, regular files only, and, where it
must lie under given roots, reached by a walk whose every step is a descriptor (refs.md §6 rules
2, 3, 5).

Containment is decided on identities, never on text an attacker can name: the walk starts at
`/` and opens one component at a time relative to the directory descriptor before it, with the
kernel following no symlink. Symlinks are read and resolved here instead, so the path it returns
is the chain of directory entries the descriptor was actually reached through. A name such as
`<store> (deleted)` beside the store is a different entry, and a symlink swapped in between two
steps fails the no-follow open instead of being followed."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from .errors import AssetNotFoundError, LimitExceededError, RawmmError, UnsafePathError

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | _CLOEXEC | getattr(os, "O_NOCTTY", 0)
# O_PATH (Linux): a directory may be walked through with search permission alone.
_WALK_FLAGS = (getattr(os, "O_PATH", 0) or os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: Symlinks resolved in one walk (the kernel's own limit).
_MAX_LINKS = 40


def inside(path: str, root: str | os.PathLike[str]) -> bool:
    """Containment of a physical path in a root by path components, not string prefix
    (`/x/run_1` does not contain `/x/run_10/a`)."""
    r = os.fspath(root)
    return path == r or path.startswith(r if r.endswith("/") else r + "/")


def open_error(e: BaseException, path: str) -> RawmmError:
    """The typed error for an OSError (or an unencodable name) met opening `path`."""
    if isinstance(e, RawmmError):
        return e
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


def walk(path: str, flags: int, *, follow: bool = True) -> tuple[int, str]:
    """Opens the absolute `path` with `flags` (plus O_NOFOLLOW) by the descriptor walk above.
    Returns the descriptor and the physical path it was reached through. `follow=False`: any
    symlink on the way is an `UnsafePathError`. Raises OSError as `os.open` does."""
    pending = path.split("/")[::-1]  # components still to walk, next one last
    chain: list[str] = []
    links = 0
    cur = os.open("/", _WALK_FLAGS)
    try:
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":  # the physical parent, as the kernel resolves it
                parent = os.open("..", _WALK_FLAGS, dir_fd=cur)
                os.close(cur)
                cur = parent
                chain = chain[:-1]
                continue
            if stat.S_ISLNK(os.lstat(name, dir_fd=cur).st_mode):  # resolved here, never by open
                links += 1
                if not follow or links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, "symlink", path)
                try:
                    target = os.readlink(name, dir_fd=cur)
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    pending.append(name)  # replaced by a non-link since the lstat: look again
                    continue
                if target.startswith("/"):
                    root = os.open("/", _WALK_FLAGS)
                    os.close(cur)
                    cur, chain = root, []
                pending.extend(reversed(target.split("/")))
                continue
            last = all(c in ("", ".") for c in pending)
            try:
                nxt = os.open(name, (flags if last else _WALK_FLAGS) | os.O_NOFOLLOW, dir_fd=cur)
            except OSError as e:
                # A symlink swapped in since the lstat (ELOOP; ENOTDIR for a directory step):
                # look again, within the symlink budget.
                links += 1
                if (
                    e.errno not in (errno.ELOOP, errno.ENOTDIR)
                    or links > _MAX_LINKS
                    or not _is_link(name, cur)
                ):
                    raise
                pending.append(name)
                continue
            os.close(cur)
            cur = nxt
            chain.append(name)
            if last:
                return cur, "/" + "/".join(chain)
        # The path ends at a directory reached through `..` or is `/`: reopen it with `flags`.
        fd = os.open(".", flags, dir_fd=cur)
        os.close(cur)
        return fd, "/" + "/".join(chain)
    except BaseException:
        os.close(cur)
        raise


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def open_regular(
    path: str | os.PathLike[str], max_bytes: int, roots: Sequence[str | os.PathLike[str]] | None = None
) -> int:
    """A read-only descriptor of a regular file of at most `max_bytes`, physically inside one
    of `roots` (real paths; any path when None). The caller closes it."""
    name = os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path)
    if "\0" in name:
        raise UnsafePathError("NUL in path", name)
    try:
        if roots is None:
            fd = os.open(name, _READ_FLAGS)
        else:
            # Joined, not normalised: `..` after a symlink is the kernel's (and the walk's) call.
            fd, real = walk(os.path.join(os.getcwd(), name), _READ_FLAGS)
            if not any(inside(real, root) for root in roots):
                os.close(fd)
                raise UnsafePathError("outside the allowed roots", name)
    except (OSError, UnicodeError, ValueError) as e:
        raise open_error(e, name) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError("not a regular file", name)
        if st.st_size > max_bytes:
            raise LimitExceededError(f"{name}: {st.st_size} bytes exceed the cap of {max_bytes}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_directory(path: str) -> int:
    """A read-only descriptor of the directory at the real path `path`, reached with no symlink
    anywhere on the way (so it is that directory, not one a symlink swapped in leads to)."""
    try:
        fd, real = walk(path, _DIR_FLAGS, follow=False)
    except OSError as e:
        if e.errno in (errno.ENOTDIR, errno.ELOOP):  # a symlink or a file on the way
            raise UnsafePathError("the store directory is not a directory", path) from None
        raise open_error(e, path) from None
    if real != path:  # reached through `..`: not the directory named
        os.close(fd)
        raise UnsafePathError("the store directory was replaced", path)
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
