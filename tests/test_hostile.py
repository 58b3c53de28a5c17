"""Issue 9: hostile input, races and faults. Each test names the class it keeps fixed."""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from images import encode, make_image
from rawmm import (
    AssetStore,
    ImageDecodeError,
    Layout,
    LayoutError,
    LimitExceededError,
    Materializer,
    RawmmError,
    RawMMRef,
    RefFormatError,
    UnsafePathError,
    adapter_for,
)
from rawmm.refs import parse_raw_mm_item

LAYOUT = Layout.preset("qwen2_5_vl")
ADAPTER = adapter_for(LAYOUT)
IS_ROOT = os.geteuid() == 0


def _ref(mm_hash: str, asset_id: str, grid: list[int] | None = None) -> RawMMRef:
    """A Qwen2.5-VL ref to an asset, with a given (or an arbitrary) grid."""
    payload = {"image_grid_thw": [grid or [1, 2, 2]]}
    return RawMMRef("r", "qwen_vl", LAYOUT.fingerprint, "image", mm_hash, asset_id, payload)


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records every `Image.open`: a check that must refuse before Pillow sees the bytes."""
    opened: list[int] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    return opened


def _run_with_timeout(fn: Any, seconds: float = 5.0) -> Any:
    """fn() in a thread; fails the test if it has not returned within `seconds` (blocked)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "the call blocked"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# -- §2 symlink swap (TOCTOU) --------------------------------------------------------------------


def test_symlink_swap_never_returns_bytes_outside_the_store(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "run")
    inside = encode(make_image("RGB", 20, 16, "noise", 1))
    asset = store.put(inside)
    secret = tmp_path / "secret.png"
    secret.write_bytes(encode(make_image("RGB", 20, 16, "noise", 2)))
    final = asset.path
    stop = threading.Event()

    def swapper() -> None:
        link = final.with_name(".swap.link")
        copy = final.with_name(".swap.copy")
        copy.write_bytes(inside)
        while not stop.is_set():
            link.unlink(missing_ok=True)
            link.symlink_to(secret)
            os.replace(link, final)  # now a symlink out of the store
            copy.write_bytes(inside)
            os.replace(copy, final)  # and back

    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    outcomes: dict[str, int] = {}
    try:
        for _ in range(3000):
            for call in (
                lambda: store.read(asset.asset_id),
                lambda: store.read(asset.uri),
                lambda: store.read(asset.asset_id, expected_hash=asset.mm_hash),
            ):
                try:
                    data = call()
                except RawmmError as e:
                    outcomes[type(e).__name__] = outcomes.get(type(e).__name__, 0) + 1
                else:
                    assert data == inside
                    outcomes["ok"] = outcomes.get("ok", 0) + 1
    finally:
        stop.set()
        t.join()
    assert outcomes.get("ok", 0) > 0 and set(outcomes) <= {"ok", "UnsafePathError", "AssetNotFoundError"}


def test_store_directory_replaced_by_a_symlink(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "run")
    store.put(encode(make_image("RGB", 8, 8, "noise", 1)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.rename(store.images_dir, tmp_path / "moved")
    store.images_dir.symlink_to(elsewhere)
    with pytest.raises(UnsafePathError):
        store.put(encode(make_image("RGB", 8, 8, "noise", 2)))
    assert list(elsewhere.iterdir()) == []


# -- §3 FIFOs and other non-regular files ---------------------------------------------------------


def test_fifos_never_block(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "run", allowed_roots=[tmp_path])
    store.images_dir.mkdir(parents=True)
    name = "a" * 64 + ".png"
    os.mkfifo(store.images_dir / name)
    src = tmp_path / "source.png"
    os.mkfifo(src)
    ref = _ref("a" * 64, name)
    for call in (
        lambda: store.read(name),
        lambda: store.read((store.images_dir / name).as_uri()),
        lambda: ADAPTER.materialize(ref, store=store),
        lambda: ADAPTER.describe(src, store=store),
        lambda: store.put(src),
        lambda: LAYOUT.pixel_values(str(src)),
    ):
        with pytest.raises(UnsafePathError, match="not a regular file"):
            _run_with_timeout(call)
    assert any("not a regular file" in p for p in store.verify())
    cli = [sys.executable, "-m", "rawmm.cli", "describe", "--model", "qwen2_5_vl", "--store", str(tmp_path)]
    proc = subprocess.run([*cli, str(src)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "not a regular file" in proc.stdout + proc.stderr


# -- §4 exceptions that are not RawmmError --------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "mmraw:v1:r:" + "a" * 16 + ":image:" + "a" * 64 + ":x.png:1x" + "9" * 5000 + "x1",
        'mmraw:{"family":"qwen_vl","modality":"image","mm_hash":"' + "a" * 64 + '","payload":'
        '{"image_grid_thw":[[1,' + "9" * 5000 + ',1]]},"raw_image_uri":"file:///a.png"}',
        'mmraw:{"family":"qwen_vl","modality":"image","mm_hash":"' + "a" * 64 + '","payload":'
        '{"image_grid_thw":[[1,2,2]]},"raw_image_uri":"file://[/' + "a" * 64 + '.png"}',
        'mmraw:{"family":"qwen_vl","modality":"image","mm_hash":"' + "a" * 64 + '","payload":'
        '{"image_grid_thw":[[1,2,2]]},"raw_image_uri":"file://\uff21/' + "a" * 64 + '.png"}',
        'mmraw:{"family":null,"modality":"image","mm_hash":"' + "a" * 64 + '","payload":'
        '{"image_grid_thw":[[1,2,2]]},"raw_image_uri":"file:///' + "a" * 64 + '.png"}',
        'mmraw:{"family":"qwen_vl","fingerprint":null,"modality":"image","mm_hash":"' + "a" * 64 + '",'
        '"payload":{"image_grid_thw":[[1,2,2]]},"raw_image_uri":"file:///' + "a" * 64 + '.png"}',
    ],
)
def test_hostile_refs_raise_ref_errors(text: str) -> None:
    with pytest.raises(RawmmError):
        ADAPTER.materialize(RawMMRef.parse(text), store=AssetStore("/nonexistent"))


@pytest.mark.parametrize(
    "uri_path",
    ["/", "/" + "a" * 300 + ".png", "/etc/passwd/x.png", "/\udcff.png", "/proc/self/fd/0"],
)
def test_hostile_uris_raise_typed_errors(tmp_path: Path, uri_path: str) -> None:
    store = AssetStore(tmp_path / "run", allowed_roots=["/"])
    with pytest.raises(RawmmError):
        store.read("file://" + uri_path, expected_hash="a" * 64)


def test_non_ascii_data_urls_are_ref_errors(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "run")
    for url in ("data:image/png;base64,iVBOR\u00e9w0=", "data:image/png;base64,\uff21\uff21\uff21\uff21"):
        with pytest.raises(RefFormatError, match="base64"):
            store.put(url)
        with pytest.raises(RefFormatError, match="base64"):
            RawMMRef.parse(
                "mmraw:"
                + json.dumps(
                    {
                        "family": "qwen_vl",
                        "modality": "image",
                        "mm_hash": "a" * 64,
                        "payload": {"image_grid_thw": [[1, 2, 2]]},
                        "raw_image_data": url,
                    }
                )
            )


def test_deep_and_cyclic_payloads(tmp_path: Path) -> None:
    deep: dict[str, Any] = {"image_grid_thw": [[1, 2, 2]]}
    node = deep
    for _ in range(500):
        node["x"] = {}
        node = node["x"]
    cyclic: dict[str, Any] = {"image_grid_thw": [[1, 2, 2]]}
    cyclic["self"] = cyclic
    for payload in (deep, cyclic):
        item = {
            "kind": "prime_raw_mm_item",
            "version": 1,
            "modality": "image",
            "family": "qwen_vl",
            "layout_fingerprint": LAYOUT.fingerprint,
            "payload": payload,
        }
        with pytest.raises(LimitExceededError):
            parse_raw_mm_item(item)
        with pytest.raises(LimitExceededError):
            RawMMRef("r", "qwen_vl", LAYOUT.fingerprint, "image", "a" * 64, "a" * 64 + ".png", payload)


def test_materializer_hostile_batches(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "run")
    with Materializer(ADAPTER, store, processor_id="p") as m:
        with pytest.raises(RefFormatError):
            m.materialize([])
        with pytest.raises(RefFormatError):
            m.materialize("mmraw:v2:...")  # type: ignore[arg-type]
        huge = RawMMRef.parse(
            "mmraw:"
            + json.dumps(
                {
                    "family": "qwen_vl",
                    "modality": "image",
                    "mm_hash": "a" * 64,
                    "payload": {"image_grid_thw": [[1, 2**40, 2**40]]},
                    "raw_image_uri": "file:///" + "a" * 64 + ".png",
                }
            )
        )
        with pytest.raises(LayoutError):
            m.materialize([huge])
        good = "mmraw:v2:r:qwen_vl:" + LAYOUT.fingerprint + ":image:" + "a" * 64 + ":" + "a" * 64 + ".png:"
        with pytest.raises(RawmmError):
            m.materialize([good + "e30"], outer=[("image",)])  # type: ignore[list-item]


def test_pillow_errors_are_decode_errors(tmp_path: Path) -> None:
    # A TIFF whose strip offsets are a string: Pillow raises TypeError deep in its plugin.
    tif = io.BytesIO()
    make_image("RGB", 5, 5, "noise", 1).save(tif, "TIFF")
    data = bytearray(tif.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[ifd : ifd + 2])[0]
    for i in range(count):
        e = ifd + 2 + 12 * i
        if struct.unpack("<H", data[e : e + 2])[0] == 273:  # StripOffsets
            data[e + 2 : e + 4] = struct.pack("<H", 2)  # ASCII
    with pytest.raises(TypeError):
        Image.open(io.BytesIO(bytes(data))).load()
    with pytest.raises(ImageDecodeError, match="TypeError"):
        LAYOUT.pixel_values(bytes(data))
    store = AssetStore(tmp_path / "run")
    asset = store.put(bytes(data))
    grid = list(LAYOUT.image(5, 5).grid_thw)
    ref = _ref(asset.mm_hash, asset.asset_id, grid)
    with pytest.raises(ImageDecodeError, match="TypeError"):
        ADAPTER.materialize(ref, store=store)


# -- §5 describe repairs ---------------------------------------------------------------------------


def test_describe_repairs_a_corrupt_asset(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "run")
    data = encode(make_image("RGB", 30, 20, "noise", 3))
    d = ADAPTER.describe(data, store=store)
    path = store.images_dir / d.asset_id
    path.chmod(0o644)
    path.write_bytes(bytes(len(data)))  # same size, wrong bytes
    with pytest.raises(RawmmError):
        ADAPTER.materialize(ADAPTER.ref(d, run_id="r"), store=store)
    ADAPTER.describe(data, store=store)
    assert path.read_bytes() == data
    ADAPTER.materialize(ADAPTER.ref(d, run_id="r"), store=store)


# -- §6 check before decoding ----------------------------------------------------------------------


def _animated_webp_declaring(width: int, height: int) -> bytes:
    im = make_image("RGBA", 16, 16, "noise", 1)
    buf = io.BytesIO()
    im.save(buf, "WEBP", save_all=True, append_images=[im.rotate(90)], lossless=True)
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"VP8X"
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


def test_layout_refused_before_pillow_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _animated_webp_declaring(2_537_726, 60)
    store = AssetStore(tmp_path / "run")
    opened = _count_opens(monkeypatch)
    with pytest.raises(LayoutError):
        LAYOUT.pixel_values(bomb)
    with pytest.raises(LayoutError):
        ADAPTER.describe(bomb, store=store)
    asset = store.put(bomb)
    ref = _ref(asset.mm_hash, asset.asset_id)
    with pytest.raises(LayoutError):
        ADAPTER.materialize(ref, store=store)
    assert opened == []


def test_png_too_short_for_its_size_is_refused_before_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 64x64 PNG whose header claims 4000x4000: fewer bytes than deflate's best ratio allows.
    png = encode(make_image("RGB", 64, 64, "noise", 1))
    ihdr = b"IHDR" + struct.pack(">II", 4000, 4000) + png[24:29]
    data = png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]
    with pytest.raises(OSError, match="truncated"), Image.open(io.BytesIO(data)) as im:
        im.load()  # Pillow fails as well, after allocating the image and decoding
    opened = _count_opens(monkeypatch)
    with pytest.raises(ImageDecodeError, match="truncated"):
        LAYOUT.pixel_values(data)
    assert opened == []


def test_truncated_jpegs_behave_as_in_pillow() -> None:
    # libjpeg fills some truncated JPEGs instead of failing, so no length bound may refuse
    # them: rawmm gives Pillow's pixels, or fails where Pillow fails.
    small = encode(make_image("RGB", 16, 16, "noise", 1), "JPEG", progressive=True)
    sof = small.index(b"\xff\xc2")
    jpeg = encode(make_image("RGB", 300, 200, "noise", 1), "JPEG", progressive=True)
    outcomes = set()
    for data in (small[: sof + 5] + struct.pack(">HH", 600, 900) + small[sof + 9 :], jpeg[: len(jpeg) // 3]):
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                reference = LAYOUT.pixel_values(im.convert("RGB")).pixel_values
        except OSError:
            outcomes.add("fails")
            with pytest.raises(ImageDecodeError, match="truncated"):
                LAYOUT.pixel_values(data)
        else:
            outcomes.add("decodes")
            np.testing.assert_array_equal(LAYOUT.pixel_values(data).pixel_values, reference)
    assert outcomes == {"fails", "decodes"}


def test_pixel_cap_and_byte_cap_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB claimed, nothing read
    with pytest.raises(LimitExceededError):
        LAYOUT.pixel_values(str(big))
    jpeg = encode(make_image("RGB", 64, 64, "noise", 1), "JPEG")
    sof = jpeg.index(b"\xff\xc0")
    bomb = jpeg[: sof + 5] + struct.pack(">HH", 13376, 13376) + jpeg[sof + 9 :]
    store = AssetStore(tmp_path / "run", max_pixels=50_000_000)
    with pytest.raises(LimitExceededError):
        ADAPTER.describe(bomb, store=store)
    asset = store.put(bomb)
    ref = _ref(asset.mm_hash, asset.asset_id)
    with pytest.raises(LimitExceededError):
        ADAPTER.materialize(ref, store=store)


# -- §7 store maintenance under load and faults -----------------------------------------------------


def test_verify_and_sweep_race_writers(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "run")
    (store.images_dir).mkdir(parents=True)
    (store.images_dir / ".x.png.1.2.deadbeef.tmp").mkdir()  # a directory named like a temp file
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                store.put(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        except BaseException as e:
            errors.append(e)

    def maintainer() -> None:
        try:
            while not stop.is_set():
                problems = store.verify()
                assert not [p for p in problems if "hash" in p or "temp" in p], problems
                store.sweep_temp()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    threads.append(threading.Thread(target=maintainer))
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []


def _kill_child(store_dir: Path) -> None:
    code = (
        "import sys, numpy as np; from rawmm import AssetStore\n"
        f"s = AssetStore({str(store_dir)!r}, images_subdir='')\n"
        "rng = np.random.default_rng(int(sys.argv[1]))\n"
        "print('go', flush=True)\n"
        "while True: s.put(rng.integers(0, 256, 4 << 20, dtype=np.uint8).tobytes())\n"
    )
    for seed in range(8):
        p = subprocess.Popen([sys.executable, "-c", code, str(seed)], stdout=subprocess.PIPE)
        assert p.stdout is not None
        p.stdout.readline()
        time.sleep(0.05 + 0.03 * seed)
        p.send_signal(signal.SIGKILL)
        p.wait()


def test_kill_9_during_put_leaves_no_partial_asset(tmp_path: Path) -> None:
    store = AssetStore(tmp_path, images_subdir="")
    _kill_child(tmp_path)
    problems = store.verify()
    assert not [p for p in problems if "hash" in p], problems
    temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    old = time.time() - 2 * 3600
    for t in temps:
        os.utime(t, (old, old))
    # A fresh writer sweeps the orphans as part of normal operation.
    AssetStore(tmp_path, images_subdir="").put(b"\x89PNG\r\n\x1a\nnot really")
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert store.verify() == []


def _child(code: str, *, fsize: int) -> subprocess.CompletedProcess[str]:
    def setup() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, preexec_fn=setup
    )


def test_full_disk_keeps_the_store_clean(tmp_path: Path) -> None:
    code = (
        "import os; from rawmm import AssetStore, RawmmError\n"
        f"s = AssetStore({str(tmp_path)!r}, images_subdir='')\n"
        "try:\n    s.put(os.urandom(1 << 20))\nexcept RawmmError as e:\n    print(type(e).__name__, e)\n"
    )
    proc = _child(code, fsize=64 << 10)  # a file-size limit: writes past 64 KiB fail with EFBIG
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("RawmmError cannot write asset"), proc.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not IS_ROOT, reason="needs root to act as another user")
def test_other_users_assets_and_read_only_stores() -> None:
    base = Path(tempfile.mkdtemp(prefix="rawmm-users-"))
    try:
        base.chmod(0o755)
        store = AssetStore(base / "run")
        data = encode(make_image("RGB", 12, 9, "noise", 5))
        asset = store.put(data)  # root's asset, in a directory others cannot write
        private = store.put(encode(make_image("RGB", 12, 9, "noise", 7)))
        private.path.chmod(0o400)  # unreadable for others
        for p in (base / "run", base / "run" / "assets", store.images_dir):
            p.chmod(0o755)
        os.setegid(65534)
        os.seteuid(65534)
        try:
            other = AssetStore(base / "run")
            assert other.put(data) == asset  # idempotent, though the mtime cannot be touched
            assert ADAPTER.describe(data, store=other).asset_id == asset.asset_id
            with pytest.raises(UnsafePathError, match="no permission to write"):
                other.put(encode(make_image("RGB", 12, 9, "noise", 6)))
            assert other.read(asset.asset_id) == data
            (problem,) = other.verify()
            assert problem.startswith(f"{private.asset_id}: ") and "permission denied" in problem
        finally:
            os.seteuid(0)
            os.setegid(0)
    finally:
        shutil.rmtree(base)
