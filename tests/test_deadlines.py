"""Issue 17 §5: worst-case time on a stalled object store.

A real TCP server on 127.0.0.1 accepts S3 requests and then stalls, either before answering or
after the headers, mid-body. A read fails (typed) within its deadline, a Materializer batch
within one deadline rather than one per object, and `close()` does not wait for reads never
begun. The deadline comes from `storage_options={"deadline": s}` or `rawmm --deadline s`."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from rawmm import AssetStore, Layout, Materializer, RawmmError, RawMMRef, adapter_for

LAYOUT = Layout.preset("qwen2_5_vl")
ADAPTER = adapter_for(LAYOUT)
DEADLINE = 2.0


class Stall:
    """Answers nothing ("head") or a 200 with a Content-Length and half the body ("body"),
    then holds the connection open until stopped."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        try:
            conn.recv(65536)
            if self.mode == "body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Type: image/png\r\n\r\n")
                conn.sendall(b"\x89PNG" + b"\0" * 1000)
        except OSError:
            return
        self.stop.wait(60)

    def close(self) -> None:
        self.stop.set()
        for c in self.conns:
            c.close()
        self.sock.close()

    def options(self, **extra: object) -> dict[str, object]:
        return {
            "endpoint": f"http://127.0.0.1:{self.port}",
            "access_key_id": "test",
            "secret_access_key": "test",
            "region": "us-east-1",
            "allow_http": True,
            **extra,
        }


@pytest.fixture(params=["head", "body"])
def stall(request: pytest.FixtureRequest) -> Iterator[Stall]:
    server = Stall(request.param)
    yield server
    server.close()


def _refs(n: int) -> list[str]:
    grid = list(LAYOUT.image(64, 64).grid_thw)
    return [
        RawMMRef(
            "r",
            "qwen_vl",
            LAYOUT.fingerprint,
            "image",
            f"{i:064x}",
            f"{i:064x}.png",
            {"image_grid_thw": [grid]},
        ).to_string()
        for i in range(1, n + 1)
    ]


def test_a_stalled_read_fails_within_its_deadline(stall: Stall) -> None:
    store = AssetStore("s3://bucket/run", storage_options=stall.options(deadline=DEADLINE))
    t = time.monotonic()
    with pytest.raises(RawmmError, match="object store error"):
        store.read("a" * 64 + ".png")
    assert time.monotonic() - t < 1.5 * DEADLINE


def test_a_stalled_batch_fails_within_one_deadline(stall: Stall) -> None:
    store = AssetStore("s3://bucket/run", storage_options=stall.options(deadline=DEADLINE))
    m = Materializer(ADAPTER, store, processor_id="p", threads=2, cache_bytes=0)  # reads 8 at a time
    t = time.monotonic()
    with pytest.raises(RawmmError):
        m.materialize(_refs(32))
    failed = time.monotonic() - t
    m.close()
    closed = time.monotonic() - t
    assert failed < 1.5 * DEADLINE, failed  # not one deadline per wave of reads
    assert closed < 2.5 * DEADLINE, closed  # the reads under way, none of those not begun


def test_the_cli_deadline_applies(stall: Stall, tmp_path: object) -> None:
    ref = _refs(1)[0]
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{stall.port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "PATH": "/usr/bin:/bin",
    }
    cmd = [
        sys.executable,
        "-m",
        "rawmm.cli",
        "--deadline",
        str(DEADLINE),
        "materialize",
        ref,
        "--model",
        "qwen2_5_vl",
        "--store",
        "s3://bucket/run",
        "-o",
        f"{tmp_path}/x.npz",
    ]
    t = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert time.monotonic() - t < 1.5 * DEADLINE + 5  # the interpreter's start-up included


def test_bad_deadlines_are_typed() -> None:
    for bad in (0, -1, "soon", float("nan")):
        with pytest.raises(RawmmError, match="deadline"):
            AssetStore("s3://bucket/run", storage_options={"deadline": bad, "allow_http": True})
