"""The content-addressed asset store (refs.md §2, §6).

Every image is stored once as its exact bytes under `<mm_hash><ext>`; writes are atomic and
idempotent, every read is verified. File-system access goes through `LocalBackend`, the one
small interface a remote object-store backend would implement.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import os
import posixpath
import re
import secrets
import stat
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from . import _core
from ._files import descriptor_path, open_error, read_regular
from .errors import (
    AssetNotFoundError,
    ImageDecodeError,
    LimitExceededError,
    RawmmError,
    RefFormatError,
    UnsafePathError,
    show,
)
from .hashing import fingerprint_bytes, verify
from .refs import check_file_uri, file_uri, normalize_run_id

__all__ = ["Asset", "AssetStore", "LocalBackend", "decode_data_url"]

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_MAX_PIXELS = 178_956_970
EXTENSIONS = ("png", "jpg", "webp", "gif", "bmp", "tiff", "img")
_READ_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")
_RAWMM_ID = re.compile(r"([0-9a-f]{64})\.(png|jpg|webp|gif|bmp|tiff|img)")
_DATA_URL = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,")
_TEMP = re.compile(r"\..+\.tmp")


def extension_of(data: bytes) -> str:
    """From the leading bytes only (refs.md §2.3)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    return "img"


def decode_data_url(url: str, *, max_bytes: int) -> bytes:
    """`data:image/<subtype>;base64,<data>` only; the encoded length is capped before decoding."""
    match = _DATA_URL.match(url)
    if not match:
        raise RefFormatError("only data:image/<subtype>;base64,<data> URLs are accepted")
    encoded = url[match.end() :]
    if len(encoded) > 4 * -(-max_bytes // 3):
        raise LimitExceededError(f"data: URL longer than the {max_bytes}-byte cap allows")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:  # ValueError: characters outside ASCII
        raise RefFormatError(f"data: URL is not standard base64: {e}") from None


def array_to_image(arr: np.ndarray) -> Image.Image:
    """uint8 HxW(x1) → L, x2 → LA, x3 → RGB, x4 → RGBA; uint16 HxW → I;16 (refs.md §2.4)."""
    if arr.dtype == np.uint16 and arr.ndim == 2:
        a = np.ascontiguousarray(arr, dtype="<u2")
        return Image.frombytes("I;16", (a.shape[1], a.shape[0]), a.tobytes())
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and not 1 <= arr.shape[2] <= 4):
        raise ImageDecodeError(f"cannot store an array of dtype {arr.dtype} and shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    mode = "L" if arr.ndim == 2 else {2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    return Image.fromarray(np.ascontiguousarray(arr), mode)


_CONVERT = {"RGBX": "RGB", "RGBa": "RGBA", "La": "LA", "PA": "RGBA", "CMYK": "RGB", "I": "RGB", "F": "RGB"}


def encode_png(im: Image.Image) -> bytes:
    """Lossless PNG of an in-memory image with rawmm's pinned Rust encoder (refs.md §2.4)."""
    if im.mode.startswith("I;16") and im.mode != "I;16":
        im = im.convert("I;16")
    elif im.mode in _CONVERT:
        im = im.convert(_CONVERT[im.mode])
    elif im.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        raise ImageDecodeError(f"cannot store mode {im.mode!r}")
    w, h = im.size
    if w == 0 or h == 0:
        raise ImageDecodeError("cannot store an empty image")
    palette = trns = None
    key = im.info.get("transparency")
    if im.mode == "1":
        data = im.tobytes("raw", "1")
    elif im.mode == "I;16":
        data = np.asarray(im).astype(">u2").tobytes()
    else:
        data = im.tobytes()
    if im.mode == "P":
        palette = bytes(im.getpalette("RGB") or [])
        if isinstance(key, bytes):
            trns = key
        elif isinstance(key, int):
            trns = bytes([255] * key + [0])
    elif im.mode == "L" and isinstance(key, int):
        trns = key.to_bytes(2, "big")
    elif im.mode == "RGB" and isinstance(key, tuple):
        trns = b"".join(int(v).to_bytes(2, "big") for v in key)
    return _core.encode_png(im.mode, w, h, data, palette, trns)


@dataclass(frozen=True, slots=True)
class Asset:
    asset_id: str
    mm_hash: str
    uri: str
    path: Path
    size: int


class Backend(Protocol):
    """Storage access for one images directory; names are already validated."""

    def read(self, name: str, max_bytes: int) -> bytes: ...
    def write(self, name: str, data: bytes, mm_hash: str) -> None: ...
    def names(self) -> Iterator[str]: ...
    def sweep(self, older_than_s: float) -> int: ...


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
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
        self._last_sweep = 0.0

    def _dir_fd(self, create: bool) -> int:
        where = str(self.images_dir)
        try:
            try:
                fd = os.open(where, _DIR_FLAGS)
            except FileNotFoundError:
                if not create:
                    raise
                try:  # the directory is created on the first write, never on a read
                    self.images_dir.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise _write_error(e, where) from None
                fd = os.open(where, _DIR_FLAGS)
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP):  # a symlink or a file in its place
                raise UnsafePathError("the store directory is not a directory", where) from None
            raise open_error(e, where) from None
        if descriptor_path(fd, where) != where:
            os.close(fd)
            raise UnsafePathError("the store directory was replaced", where)
        return fd

    def read(self, name: str, max_bytes: int) -> bytes:
        # Asset symlinks that stay inside the store are followed (refs.md §6 rule 2); the
        # containment is checked on the descriptor opened.
        where = str(self.images_dir)
        return read_regular(os.path.join(where, name), max_bytes, [where])

    def write(self, name: str, data: bytes, mm_hash: str) -> None:
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

    def names(self) -> Iterator[str]:
        try:
            yield from sorted(os.listdir(self.images_dir))
        except (FileNotFoundError, NotADirectoryError):
            return

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


class AssetStore:
    """Content-addressed image store. The constructor's defaults are constants; only
    `from_env` reads the environment."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        images_subdir: str = "assets/images",
        allowed_roots: Sequence[str | os.PathLike[str]] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        allow_http: bool = False,
        run_id: str | None = None,
    ) -> None:
        root_path = Path(os.path.realpath(root))
        self.images_dir = Path(os.path.realpath(root_path / images_subdir)) if images_subdir else root_path
        self.allowed_roots = [Path(os.path.realpath(r)) for r in (allowed_roots or [self.images_dir])]
        self._roots = [str(r) for r in self.allowed_roots]
        self.max_bytes = int(max_bytes)
        self.max_pixels = int(max_pixels)
        self.allow_http = allow_http
        self.run_id = None if run_id is None else normalize_run_id(run_id)
        self.backend: Backend = LocalBackend(self.images_dir)
        self._dir = str(self.images_dir)

    def __repr__(self) -> str:
        return f"AssetStore({str(self.images_dir)!r})"

    @staticmethod
    def env_caps() -> dict[str, int]:
        """`max_bytes` / `max_pixels` from RAWMM_MAX_ASSET_BYTES / RAWMM_MAX_IMAGE_PIXELS, where set;
        a value that is not an integer is a `RawmmError`, never silently ignored."""
        caps = {}
        for var, key in (("RAWMM_MAX_ASSET_BYTES", "max_bytes"), ("RAWMM_MAX_IMAGE_PIXELS", "max_pixels")):
            value = os.environ.get(var)
            if value:
                try:
                    caps[key] = int(value)
                except ValueError:
                    raise RawmmError(f"{var} must be an integer, got {value!r}") from None
        return caps

    @classmethod
    def from_env(cls, *, run_id: str | None = None, **options: Any) -> AssetStore:
        """Upstream's location rules (refs.md §2.1) and the RAWMM_MAX_* caps; `options` win."""
        env = {k: v for k, v in os.environ.items() if v}
        options = {**cls.env_caps(), **options}
        offload, run_dir = env.get("VF_RENDERER_IMAGE_OFFLOAD_DIR"), env.get("PRIME_RL_RUN_DIR")
        rid = run_id or env.get("RUN_ID")
        if offload:
            m = re.search(r"run_([A-Za-z0-9_.-]+)/assets/images/?$", offload)
            ref_run = rid or (Path(run_dir).name if run_dir else None) or (m.group(1) if m else "explicit")
            return cls(offload, images_subdir="", run_id=ref_run, **options)
        if run_dir:
            return cls(run_dir, run_id=rid or Path(run_dir).name, **options)
        if rid:
            norm = normalize_run_id(rid)
            return cls(f"/data/outputs/run_{norm}", run_id=norm, **options)
        raise RawmmError(
            "no asset store location: set VF_RENDERER_IMAGE_OFFLOAD_DIR, PRIME_RL_RUN_DIR or RUN_ID"
        )

    # -- writing ---------------------------------------------------------------------------

    def put(self, source: Any) -> Asset:
        """Stores bytes, a PIL image, a numpy array, a data: URL or a file under the allowed
        roots, as its exact bytes (in-memory images as lossless PNG)."""
        data = self.source_bytes(source)
        mm_hash = fingerprint_bytes(data)
        name = f"{mm_hash}.{extension_of(data)}"
        self.backend.write(name, data, mm_hash)
        return self._asset(name, mm_hash, len(data))

    def source_bytes(self, source: Any) -> bytes:
        if isinstance(source, bytes | bytearray | memoryview):
            data = bytes(source)
        elif isinstance(source, Image.Image):
            data = encode_png(source)
        elif isinstance(source, np.ndarray):
            data = encode_png(array_to_image(source))
        elif isinstance(source, str) and source.startswith("data:"):
            data = decode_data_url(source, max_bytes=self.max_bytes)
        elif isinstance(source, str) and source.startswith(("http://", "https://")):
            data = self._fetch(source)
        elif isinstance(source, str | os.PathLike):
            data = self.read_allowed(source)
        else:
            raise ImageDecodeError(f"cannot store a {type(source).__name__}")
        if len(data) > self.max_bytes:
            raise LimitExceededError(f"{len(data)} bytes exceed the cap of {self.max_bytes}")
        return data

    def _fetch(self, url: str) -> bytes:
        if not self.allow_http:
            raise UnsafePathError(f"http(s) sources need allow_http=True: {url}", url)
        with urllib.request.urlopen(url, timeout=30) as resp:
            data: bytes = resp.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise LimitExceededError(f"{url}: more than {self.max_bytes} bytes")
        return data

    # -- reading ---------------------------------------------------------------------------

    def _path_of(self, path_or_uri: str | os.PathLike[str]) -> str:
        """The file path a source path or `file://` URI names (not yet checked)."""
        if isinstance(path_or_uri, str) and path_or_uri.startswith("file://"):
            try:
                return check_file_uri(path_or_uri)
            except RefFormatError as e:
                raise UnsafePathError(str(e), path_or_uri) from None
        if not isinstance(path_or_uri, str | os.PathLike):
            raise UnsafePathError(f"not a path: {show(path_or_uri)}")
        return os.fspath(path_or_uri)

    def read_allowed(self, path_or_uri: str | os.PathLike[str]) -> bytes:
        """The bytes of a regular file under the allowed roots, read once, capped. The roots
        are checked on the file actually opened, so a symlink swapped in after any earlier
        check cannot slip through."""
        return read_regular(self._path_of(path_or_uri), self.max_bytes, self._roots)

    def read(self, asset_id_or_uri: str, *, expected_hash: str | None = None) -> bytes:
        """Verified bytes of an asset id or a `file://` URI under the allowed roots."""
        if not isinstance(asset_id_or_uri, str):
            raise UnsafePathError(f"not an asset id or URI: {show(asset_id_or_uri)}")
        if asset_id_or_uri.startswith("file://"):
            path = self._path_of(asset_id_or_uri)
            name = posixpath.basename(path)
            data = read_regular(path, self.max_bytes, self._roots)
        else:
            name = asset_id_or_uri
            if not _READ_ID.fullmatch(name):
                raise UnsafePathError(f"invalid asset id {name!r}", name)
            data = self.backend.read(name, self.max_bytes)
        if expected_hash is None:
            match = _RAWMM_ID.fullmatch(name)
            if match is None:
                raise RefFormatError(f"{name!r} is not a rawmm asset id; pass expected_hash to verify it")
            expected_hash = match.group(1)
        verify(data, expected_hash)
        return data

    def find(self, mm_hash: str) -> Asset | None:
        """The asset stored under this 64-hex hash, probing every extension."""
        if not isinstance(mm_hash, str) or not re.fullmatch(r"[0-9a-f]{64}", mm_hash):
            return None
        for ext in EXTENSIONS:
            name = f"{mm_hash}.{ext}"
            try:
                st = os.stat(self.images_dir / name)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                return self._asset(name, mm_hash, st.st_size)
        return None

    def _asset(self, name: str, mm_hash: str, size: int) -> Asset:
        path = os.path.join(self._dir, name)
        return Asset(asset_id=name, mm_hash=mm_hash, uri=file_uri(path), path=Path(path), size=size)

    # -- maintenance -----------------------------------------------------------------------

    def verify(self) -> list[str]:
        """One message per problem found; empty when healthy. Entries that vanish meanwhile
        (writers' temp files) are skipped; unreadable files are reported."""
        if not self.images_dir.is_dir() and os.path.lexists(self.images_dir):
            return [f"{self.images_dir}: not a directory"]
        problems = []
        now = time.time()
        for name in self.backend.names():
            path = self.images_dir / name
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            except OSError as e:
                problems.append(f"{name}: cannot stat: {e.strerror}")
                continue
            if stat.S_ISLNK(st.st_mode):
                problems.append(f"{name}: symlink")
            elif not stat.S_ISREG(st.st_mode):
                problems.append(f"{name}: not a regular file")
            elif _TEMP.fullmatch(name):
                if now - st.st_mtime > TEMP_MAX_AGE_S:
                    problems.append(f"{name}: orphaned temp file")
            elif (match := _RAWMM_ID.fullmatch(name)) is None:
                problems.append(f"{name}: foreign name, cannot verify")
            else:
                try:
                    data = read_regular(path, max(self.max_bytes, st.st_size), [self.images_dir])
                except AssetNotFoundError:
                    continue
                except RawmmError as e:
                    problems.append(f"{name}: {e}")
                    continue
                if fingerprint_bytes(data) != match.group(1):
                    problems.append(f"{name}: content does not match its hash")
                elif extension_of(data) != match.group(2):
                    problems.append(f"{name}: extension does not match its content")
        return problems

    def sweep_temp(self, older_than_s: float = TEMP_MAX_AGE_S) -> int:
        """Removes orphaned temp files of interrupted writes; returns how many. Writes also do
        this on their own every few minutes."""
        return self.backend.sweep(older_than_s)
