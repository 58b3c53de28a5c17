"""Digests against the spec's vectors, the blake3 reference bindings and vLLM's golden file."""

from __future__ import annotations

import hashlib
import io

import blake3
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from conftest import golden
from images import encode, make_image
from rawmm import IntegrityError, RefFormatError
from rawmm.hashing import fingerprint_bytes, fingerprint_file, pixel_fingerprint, verify
from rawmm.interop import sglang_content_hash, sglang_mm_hash, vllm_mm_hash

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a73000000124944415478da63f8cf"
    "c0c000c20cff8100001fee05fbf1abba770000000049454e44ae426082"
)
MODEL = "Qwen/Qwen3-VL-8B-Instruct"


def test_spec_vectors() -> None:
    assert fingerprint_bytes(b"") == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert fingerprint_bytes(b"hello") == "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
    assert fingerprint_bytes(PNG) == "f531b9e47004fccda30d996ca0bf046cd4f94241ab04843cb055cbc72bec0810"
    verify(b"hello", "2cf24dba5fb0a30e26e83b2ac5b9e29e")
    assert hashlib.sha256(PNG).hexdigest()[:32] == "3d27b4ed2fdfdb12b533f2ddf6e113f5"
    verify(PNG, "3d27b4ed2fdfdb12b533f2ddf6e113f5")


@given(data=st.binary(max_size=5000), cut=st.integers(0, 5000))
def test_equals_blake3_reference_bindings(data: bytes, cut: int) -> None:
    assert fingerprint_bytes(data) == blake3.blake3(data).hexdigest()
    assert (
        fingerprint_bytes(bytearray(data)) == fingerprint_bytes(memoryview(data)) == fingerprint_bytes(data)
    )


@pytest.mark.parametrize("size", [0, 1, 2047, 2048, 1 << 20, (1 << 20) + 1, 3 << 20])
def test_thresholds_and_files(tmp_path, size: int) -> None:  # type: ignore[no-untyped-def]
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    want = blake3.blake3(data).hexdigest()
    assert fingerprint_bytes(data) == want
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert fingerprint_file(path) == want
    with pytest.raises(FileNotFoundError):
        fingerprint_file(tmp_path / "missing")


def test_any_contiguous_buffer_and_buffer_error() -> None:
    arr = np.arange(1000, dtype=np.float32)
    assert fingerprint_bytes(arr) == blake3.blake3(arr.tobytes()).hexdigest()
    with pytest.raises(BufferError):
        fingerprint_bytes(arr[::2])
    with pytest.raises(TypeError):
        fingerprint_bytes("text")  # type: ignore[arg-type]


def test_verify_errors() -> None:
    with pytest.raises(RefFormatError):
        verify(b"hello", "a" * 40)
    with pytest.raises(RefFormatError):
        verify(b"hello", "EA8F163DB38682925E4491C5E58D4BB3506EF8C14EB78A86E908C5624A67200F")
    tampered = bytearray(PNG)
    tampered[40] ^= 1
    with pytest.raises(IntegrityError) as info:
        verify(bytes(tampered), fingerprint_bytes(PNG))
    assert info.value.expected == fingerprint_bytes(PNG) and info.value.actual == fingerprint_bytes(
        bytes(tampered)
    )
    with pytest.raises(IntegrityError) as info:
        verify(b"hellp", "2cf24dba5fb0a30e26e83b2ac5b9e29e")
    assert len(info.value.actual) == 32


def test_pixel_fingerprints() -> None:
    rgb = "87d89db12421fd8b1c34ec79dc05640746651c233846b776fb8ba4a2c30fbc7a"
    assert pixel_fingerprint(PNG) == rgb
    im = Image.open(io.BytesIO(PNG))
    assert pixel_fingerprint(im) == rgb
    assert pixel_fingerprint(np.asarray(im)) == rgb
    assert pixel_fingerprint(np.array([[0x80]], np.uint8)) == (
        "82a0e551964976b04239cd26690fc6be7ca29bb7718d7a7bbdbaa8f0d5ae7fb5"
    )
    a = make_image("RGB", 7, 3, "noise", 1)
    b = Image.fromarray(np.asarray(a).reshape(3, 7, 3).transpose(1, 0, 2).copy())  # same bytes, 3×7
    assert pixel_fingerprint(a) != pixel_fingerprint(b)
    # an in-memory image and the PNG it is stored as share the fingerprint
    for mode in ("RGBA", "LA", "L", "P", "P+tRNS", "1", "I;16", "CMYK"):
        im = make_image(mode, 9, 5, "noise", 2)
        from rawmm.store import encode_png

        assert pixel_fingerprint(encode_png(im)) == pixel_fingerprint(im), mode


def test_vllm_golden_vectors() -> None:
    cases = golden("vllm_0_33_mm_hash.json")["cases"]
    assert len(cases) == 40
    for c in cases:
        if c["kind"] == "encoded_bytes":
            item = bytes.fromhex(c["bytes_hex"])
        else:
            item = Image.frombytes(c["mode"], (c["width"], c["height"]), bytes.fromhex(c["pixels_hex"]))
        assert vllm_mm_hash(item, model_id=c["model_id"], algorithm=c["algorithm"]) == c["mm_hash"], c


def test_vllm_examples_from_spec() -> None:
    grey = bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b550000000a4944415478da63680000"
        "00820081da45083b0000000049454e44ae426082"
    )
    assert (
        vllm_mm_hash(grey, model_id=MODEL)
        == "a174b2a87355b4eedc49952cd8b8c70044d55ad6b7581642cdb0febd9f6e39e1"
    )
    trns = bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000020000000108020000007b40e8dd0000000674524e5300010002000"
        "3c94babf50000000f49444154789c63e01291636462060001290043809aed540000000049454e44ae426082"
    )
    assert (
        vllm_mm_hash(trns, model_id=MODEL)
        == "8c7153855eea4452c92e08d1be6deb23a3531560f5c9757c67c8ad563af54f10"
    )
    assert (
        vllm_mm_hash(PNG, model_id=MODEL)
        == "e265c3598787786ad72ff6c0241856a868ff30f2f362d29657e83594d12c08d4"
    )
    pil = Image.open(io.BytesIO(PNG))
    assert (
        vllm_mm_hash(pil, model_id=MODEL)
        == "50ecd9d2e5f2690a876eecf8015692dbe56563b97781d4259ff4a9d9aa67fd28"
    )
    stream = b"".join(
        [
            len(b"image").to_bytes(8, "little") + b"image",
            b"\x03",
            len(b"image").to_bytes(8, "little") + b"image",
            b"\x03",
            (5).to_bytes(8, "little") + b"hello",
            (8).to_bytes(8, "little") + b"model_id",
            b"\x03",
            (1).to_bytes(8, "little") + b"m",
        ]
    )
    assert vllm_mm_hash(b"hello", model_id="m") == blake3.blake3(stream).hexdigest()
    assert vllm_mm_hash(b"hello", model_id="m", algorithm="sha512") == hashlib.sha512(stream).hexdigest()
    # unparsable or non-image bytes never raise; EXIF orientation alone keeps the bytes path
    assert len(vllm_mm_hash(b"\x89PNG garbage", model_id="m")) == 64
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg = encode(make_image("RGB", 8, 8), "JPEG", exif=exif.tobytes())
    plain = b"".join([stream[:28], len(jpeg).to_bytes(8, "little"), jpeg, stream[41:]])
    assert vllm_mm_hash(jpeg, model_id="m") == blake3.blake3(plain).hexdigest()
    with pytest.raises(ValueError):
        vllm_mm_hash(PNG, model_id="m", algorithm="md5")


def test_sglang() -> None:
    assert (
        sglang_content_hash(PNG) == "sha256:3d27b4ed2fdfdb12b533f2ddf6e113f5f6ad516b1acd9ebb3ed1de5476ec51c6"
    )
    assert sglang_mm_hash(fingerprint_bytes(PNG)) == "f531b9e47004fccd"
