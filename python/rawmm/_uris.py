"""Asset URIs (refs.md §6 rule 3): `file://` paths and object-store URIs, checked for shape
only; containment is the store's."""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any
from urllib.parse import quote_from_bytes, unquote, urlsplit

from .errors import RefFormatError

#: Object-store URI schemes (the engine's names: Amazon S3, Google Cloud Storage, Azure).
OBJECT_SCHEMES = ("s3", "gs", "az")
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_SEGMENT = re.compile(r"[A-Za-z0-9_=+@,-][A-Za-z0-9_.=+@,-]*")


def check_file_uri(uri: Any) -> str:
    """`file://` with an empty or localhost host, an absolute path, no query, fragment or NUL
    (refs.md §6 rule 3; containment is checked by the store). Returns the decoded path."""
    if not isinstance(uri, str) or not uri.startswith("file://"):
        raise RefFormatError(f"not a file:// URI: {uri!r}")
    try:
        parts = urlsplit(uri)
    except ValueError as e:  # "[" netlocs, netlocs NFKC would change
        raise RefFormatError(f"malformed file:// URI {uri!r}: {e}") from None
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment or "?" in uri or "#" in uri:
        raise RefFormatError(f"file:// URI must have no host, query or fragment: {uri!r}")
    if not path.startswith("/") or "\0" in path:
        raise RefFormatError(f"file:// URI must hold an absolute path: {uri!r}")
    return path


def is_object_uri(uri: Any) -> bool:
    return isinstance(uri, str) and uri.split("://", 1)[0] in OBJECT_SCHEMES and "://" in uri


def split_object_uri(uri: Any) -> tuple[str, str, str]:
    """`scheme://bucket/key` into its parts. Keys are literal (no percent-decoding), made of
    plain segments: no empty, `.` or `..` segment, no query, fragment, NUL or backslash."""
    if not is_object_uri(uri):
        raise RefFormatError(f"not an object-store URI ({', '.join(OBJECT_SCHEMES)}): {uri!r}")
    scheme, rest = uri.split("://", 1)
    bucket, _, key = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise RefFormatError(f"invalid bucket in {uri!r}")
    if key and not all(_SEGMENT.fullmatch(s) for s in key.split("/")):
        raise RefFormatError(f"invalid object key in {uri!r}")
    return scheme, bucket, key


def uri_basename(uri: str) -> str:
    if is_object_uri(uri):
        return posixpath.basename(split_object_uri(uri)[2])
    return posixpath.basename(check_file_uri(uri))


def file_uri(path: str | os.PathLike[str]) -> str:
    """Percent-encoded `file://` URI of an absolute path (as `Path.as_uri`)."""
    return "file://" + quote_from_bytes(os.fsencode(os.path.abspath(path)))
