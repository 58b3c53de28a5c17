"""The asset store: ingress, atomic idempotent writes, verified reads, security rules."""

from __future__ import annotations

import base64
import io
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from images import encode, make_image
from rawmm import (
    AssetNotFoundError,
    ImageDecodeError,
    IntegrityError,
    LimitExceededError,
    RawmmError,
    RefFormatError,
    UnsafePathError,
)
from rawmm.hashing import fingerprint_bytes, pixel_fingerprint
from rawmm.store import AssetStore

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a73000000124944415478da63f8cf"
    "c0c000c20cff8100001fee05fbf1abba770000000049454e44ae426082"
)
H = "f531b9e47004fccda30d996ca0bf046cd4f94241ab04843cb055cbc72bec0810"


@pytest.fixture
def store(tmp_path: Path) -> AssetStore:
    return AssetStore(tmp_path / "run")


def test_put_read_find(store: AssetStore) -> None:
    a = store.put(PNG)
    assert (a.asset_id, a.mm_hash, a.size) == (f"{H}.png", H, 75)
    assert a.path == store.images_dir / a.asset_id and a.uri == a.path.as_uri()
    assert oct(a.path.stat().st_mode & 0o777) == "0o444"
    assert store.read(a.asset_id) == PNG and store.read(a.uri) == PNG
    assert store.find(H) == a and store.find("0" * 64) is None
    mtime = a.path.stat().st_mtime
    time.sleep(0.01)
    again = store.put(PNG)  # idempotent: nothing rewritten, mtime refreshed
    assert again == a and a.path.stat().st_mtime > mtime
    assert store.verify() == []


def test_every_source_kind(store: AssetStore, tmp_path: Path) -> None:
    im = make_image("RGBA", 9, 7, "noise", 1)
    a = store.put(im)
    assert a.asset_id.endswith(".png") and pixel_fingerprint(store.read(a.asset_id)) == pixel_fingerprint(im)
    assert store.put(np.asarray(im)).mm_hash == a.mm_hash  # the same raster encodes the same
    assert store.put(np.asarray(im)[:, ::2]).size > 0  # non-contiguous arrays are copied
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert store.put(data_url).mm_hash == H
    jpeg = encode(make_image("RGB", 16, 16), "JPEG")
    f = store.images_dir.parent / "x.jpg"
    store.images_dir.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(jpeg)
    with pytest.raises(UnsafePathError):
        store.put(f)  # outside the allowed roots (default: the images directory)
    wide = AssetStore(store.images_dir.parent.parent / "run", allowed_roots=[tmp_path])
    assert wide.put(str(f)).asset_id.endswith(".jpg") and wide.put(f.as_uri()).size == len(jpeg)
    assert store.put(b"just bytes").asset_id.endswith(".img")
    for mode in ("1", "L", "LA", "P", "P+tRNS", "I;16", "CMYK", "I", "F", "RGB+tRNS", "L+tRNS", "PA"):
        im = make_image(mode, 5, 4, "noise", 3)
        stored = store.read(store.put(im).asset_id)
        assert Image.open(io.BytesIO(stored)).size == (5, 4), mode
    for bad in (Image.new("HSV", (2, 2)), np.zeros((2, 2, 5), np.uint8), np.zeros((2, 2), np.float32), 3.5):
        with pytest.raises(ImageDecodeError):
            store.put(bad)
    for bad in ("data:text/plain;base64,aGk=", "data:image/png;base64,@@@@", "data:image/png,rawtext"):
        with pytest.raises(RefFormatError):
            store.put(bad)
    with pytest.raises(UnsafePathError):
        store.put("https://example.com/a.png")


def test_caps(tmp_path: Path) -> None:
    small = AssetStore(tmp_path / "s", max_bytes=100)
    with pytest.raises(LimitExceededError):
        small.put(b"x" * 101)
    with pytest.raises(LimitExceededError):
        small.put("data:image/png;base64," + base64.b64encode(b"x" * 200).decode())
    big = AssetStore(tmp_path / "s")
    a = big.put(b"y" * 200)
    with pytest.raises(LimitExceededError):
        small.read(a.asset_id)


def test_read_security(store: AssetStore, tmp_path: Path) -> None:
    a = store.put(PNG)
    for bad in ("../secret", "/etc/passwd", ".hidden", "a/b.png", "a%2fb", "", "x" * 300):
        with pytest.raises(UnsafePathError):
            store.read(bad)
    outside = tmp_path / "outside.png"
    outside.write_bytes(PNG)
    with pytest.raises(UnsafePathError):
        store.read(outside.as_uri())
    for bad in ("file://host" + str(outside), outside.as_uri() + "?q=1", "http://x/y.png"):
        with pytest.raises(UnsafePathError):
            store.read(bad)
    link = store.images_dir / f"{'a' * 64}.png"
    link.symlink_to(outside)
    with pytest.raises(UnsafePathError):
        store.read(link.name)  # a symlink leading out of the store
    with pytest.raises(AssetNotFoundError) as info:
        store.read(f"{'b' * 64}.png")
    assert isinstance(info.value, FileNotFoundError)
    (store.images_dir / "foreign.png").write_bytes(PNG)
    with pytest.raises(RefFormatError):
        store.read("foreign.png")  # a foreign id needs expected_hash
    assert store.read("foreign.png", expected_hash=H) == PNG
    assert (
        store.read(a.asset_id, expected_hash="3d27b4ed2fdfdb12b533f2ddf6e113f5") == PNG
    )  # legacy sha256[:32]
    # containment is by path components: run_1 does not contain run_10
    run1, run10 = tmp_path / "x" / "run_1", tmp_path / "x" / "run_10"
    run10.mkdir(parents=True)
    (run10 / "a.png").write_bytes(PNG)
    with pytest.raises(UnsafePathError):
        AssetStore(run1, images_subdir="").read((run10 / "a.png").as_uri(), expected_hash=H)


def test_tampered_asset(store: AssetStore) -> None:
    a = store.put(PNG)
    os.chmod(a.path, 0o644)
    data = bytearray(PNG)
    data[-5] ^= 0xFF
    a.path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as info:
        store.read(a.asset_id)
    assert info.value.expected == H and info.value.actual == fingerprint_bytes(bytes(data))
    assert any("does not match" in p for p in store.verify())
    store.put(PNG)  # a corrupt copy is replaced atomically
    assert store.read(a.asset_id) == PNG


def test_verify_and_sweep(store: AssetStore) -> None:
    store.put(PNG)
    d = store.images_dir
    (d / "foreign.png").write_bytes(PNG)
    (d / f"{'c' * 64}.jpg").write_bytes(PNG)  # extension does not match content
    old = d / f".{H}.png.1.2.deadbeef.tmp"
    old.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    young = d / f".{H}.png.1.3.cafebabe.tmp"
    young.write_bytes(b"in flight")
    (d / "sub").mkdir()
    problems = store.verify()
    assert len(problems) == 4, problems
    assert store.sweep_temp() == 1 and not old.exists() and young.exists()
    assert store.sweep_temp(older_than_s=0) == 1


def _writer(args: tuple[str, int]) -> list[str]:
    root, seed = args
    store = AssetStore(root)
    rng = np.random.default_rng(seed % 3)  # three distinct contents, written by many processes
    out = []
    for i in range(20):
        data = rng.integers(0, 256, 200_000 + i, dtype=np.uint8).tobytes()
        out.append(store.put(data).asset_id)
    return out


def _observer(root: str, stop: str, ready: str) -> int:
    """Reads every final name while writers run: each must already be complete and verified."""
    store = AssetStore(root)
    Path(ready).touch()
    seen = 0
    deadline = time.time() + 60
    while not os.path.exists(stop) and time.time() < deadline:
        if store.images_dir.is_dir():
            for name in os.listdir(store.images_dir):
                if not name.startswith("."):
                    store.read(name)  # raises IntegrityError on a partial file
                    seen += 1
    return seen


def test_concurrent_writers(tmp_path: Path) -> None:
    root = str(tmp_path / "run")
    ctx = multiprocessing.get_context("spawn")
    stop, ready = str(tmp_path / "stop"), tmp_path / "ready"
    with ctx.Pool(5) as pool:
        watcher = pool.apply_async(_observer, (root, stop, str(ready)))
        deadline = time.time() + 60  # the writers start once the observer watches
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.01)
        results = pool.map(_writer, [(root, s) for s in range(8)])
        Path(stop).touch()
        assert watcher.get(timeout=90) > 0
    store = AssetStore(root)
    names = {n for r in results for n in r}
    assert len(names) == 60
    assert store.verify() == []
    assert sorted(os.listdir(store.images_dir)) == sorted(names)  # no temp file left behind
    for name in names:
        store.read(name)


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("VF_RENDERER_IMAGE_OFFLOAD_DIR", "PRIME_RL_RUN_DIR", "RUN_ID", "RAWMM_MAX_ASSET_BYTES"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RawmmError, match="VF_RENDERER_IMAGE_OFFLOAD_DIR"):
        AssetStore.from_env()
    monkeypatch.setenv("PRIME_RL_RUN_DIR", str(tmp_path / "run_xyz"))
    s = AssetStore.from_env()
    assert s.images_dir == (tmp_path / "run_xyz" / "assets" / "images").resolve() and s.run_id == "xyz"
    offload = tmp_path / "o" / "run_abc" / "assets" / "images"
    monkeypatch.setenv("VF_RENDERER_IMAGE_OFFLOAD_DIR", str(offload))
    monkeypatch.setenv("RAWMM_MAX_ASSET_BYTES", "1234")
    s = AssetStore.from_env()
    assert s.images_dir == offload.resolve() and s.max_bytes == 1234
    assert AssetStore.from_env(max_bytes=99).max_bytes == 99  # options win
    monkeypatch.delenv("VF_RENDERER_IMAGE_OFFLOAD_DIR")
    monkeypatch.delenv("PRIME_RL_RUN_DIR")
    monkeypatch.setenv("RUN_ID", "run_abc")
    s = AssetStore.from_env()
    assert str(s.images_dir) == os.path.realpath("/data/outputs/run_abc/assets/images") and s.run_id == "abc"
    assert not Path("/data/outputs/run_abc").exists()  # created on the first write, never on a read
    monkeypatch.setenv("RUN_ID", "bad id!")
    with pytest.raises(RefFormatError):
        AssetStore.from_env()


def test_from_env_rejects_bad_caps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PRIME_RL_RUN_DIR", str(tmp_path / "run_x"))
    monkeypatch.setenv("RAWMM_MAX_ASSET_BYTES", "lots")
    with pytest.raises(RawmmError, match="RAWMM_MAX_ASSET_BYTES"):
        AssetStore.from_env()
