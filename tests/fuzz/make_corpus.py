"""Writes the fuzz harness's seed corpus (committed; rerun only to regenerate the seeds).

    python -m tests.fuzz.make_corpus

Images carry every way Pillow finds an orientation or a size that a plain header read misses:
EXIF and XMP in each format, PNG metadata after the image data, JPEG segments after SOF and junk
between them, GIF frames outside the logical screen, TIFF IFD quirks; and PngSuite files for
every PNG colour type, depth, palette and transparency the Rust PNG decoder converts, and
libjpeg-turbo's samplings and codings for the Rust JPEG decoder. Refs and envelopes cover
every ref form and both envelope forms.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

from PIL import Image, TiffImagePlugin

HERE = Path(__file__).parent / "corpus"


def _exif(orientation: int) -> bytes:
    e = Image.Exif()
    e[274] = orientation
    return e.tobytes()


def _exif_be(orientation: int) -> bytes:
    ifd = b"\x00\x01" + struct.pack(">HHIHH", 274, 3, 1, orientation, 0) + b"\0\0\0\0"
    return b"MM\x00*\x00\x00\x00\x08" + ifd


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_parts(im: Image.Image) -> tuple[bytes, list[bytes], bytes]:
    """(signature + IHDR, the other chunks before IEND, IEND)."""
    buf = io.BytesIO()
    im.save(buf, "PNG")
    data = buf.getvalue()
    at, chunks = 8, []
    while at < len(data):
        (n,) = struct.unpack(">I", data[at : at + 4])
        chunks.append(data[at : at + 12 + n])
        at += 12 + n
    return data[:8] + chunks[0], chunks[1:-1], chunks[-1]


def _xmp(orientation: int, attr: bool = True) -> bytes:
    inner = (
        f'tiff:Orientation="{orientation}"' if attr else f"><tiff:Orientation>{orientation}</tiff:Orientation"
    )
    return (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
        + inner.encode()
        + b"/></rdf:RDF></x:xmpmeta>"
    )


def images() -> dict[str, bytes]:
    base = Image.linear_gradient("L").resize((37, 23)).convert("RGB")
    head, body, end = _png_parts(base)
    out: dict[str, bytes] = {}
    ex6 = _exif(6)
    out["png_exif_before_idat"] = head + _chunk(b"eXIf", ex6) + b"".join(body) + end
    out["png_exif_after_idat"] = head + b"".join(body) + _chunk(b"eXIf", ex6) + end
    out["png_exif_prefixed"] = head + _chunk(b"eXIf", b"Exif\0\0" + ex6) + b"".join(body) + end
    out["png_two_exif"] = head + _chunk(b"eXIf", _exif(8)) + b"".join(body) + _chunk(b"eXIf", ex6) + end
    raw = f"\nexif\n{len(ex6):8}\n{ex6.hex()}\n".encode()
    out["png_raw_profile_text"] = (
        head + _chunk(b"tEXt", b"Raw profile type exif\0" + raw) + b"".join(body) + end
    )
    out["png_raw_profile_ztxt_after"] = (
        head + b"".join(body) + _chunk(b"zTXt", b"Raw profile type exif\0\0" + zlib.compress(raw)) + end
    )
    itxt = b"XML:com.adobe.xmp\0\0\0\0\0" + _xmp(5)
    out["png_xmp_itxt"] = head + _chunk(b"iTXt", itxt) + b"".join(body) + end
    out["png_xmp_itxt_after"] = head + b"".join(body) + _chunk(b"iTXt", itxt) + end
    out["png_exif_be"] = head + _chunk(b"eXIf", _exif_be(7)) + b"".join(body) + end
    out["png_orientation_9"] = head + _chunk(b"eXIf", _exif(9)) + b"".join(body) + end
    rgba = Image.new("RGBA", (19, 31), (10, 200, 30, 128))
    out["apng"] = _save(rgba, "PNG", save_all=True, append_images=[rgba.rotate(90)], exif=ex6)

    for o in (3, 6, 8):
        out[f"jpeg_exif_{o}"] = _save(base, "JPEG", exif=_exif(o))
    jpg = _save(base, "JPEG", quality=70)
    sof = jpg.index(b"\xff\xc0")
    app1 = b"\xff\xe1" + struct.pack(">H", 8 + len(ex6)) + b"Exif\0\0" + ex6
    app1_8 = b"\xff\xe1" + struct.pack(">H", 8 + len(ex6)) + b"Exif\0\0" + _exif(8)
    sos = jpg.index(b"\xff\xda")
    out["jpeg_exif_after_sof"] = jpg[:sos] + app1 + jpg[sos:]
    out["jpeg_two_exif"] = jpg[:sof] + app1_8 + app1 + jpg[sof:]
    out["jpeg_junk_between_markers"] = jpg[:sof] + b"\x00\x13junk" + jpg[sof:]
    xmp_app1 = b"http://ns.adobe.com/xap/1.0/\0" + _xmp(6, attr=False)
    out["jpeg_xmp"] = jpg[:sof] + b"\xff\xe1" + struct.pack(">H", 2 + len(xmp_app1)) + xmp_app1 + jpg[sof:]
    out["jpeg_progressive_cmyk"] = _save(base.convert("CMYK"), "JPEG", progressive=True)

    out["webp_lossless_exif"] = _save(base, "WEBP", lossless=True, exif=ex6)
    out["webp_lossy_xmp"] = _save(base, "WEBP", quality=50, xmp=_xmp(8))
    out["webp_animated"] = _save(rgba, "WEBP", save_all=True, append_images=[rgba.rotate(90)])

    pal = base.convert("P")
    out["gif"] = _save(pal, "GIF")
    gif = bytearray(_save(pal, "GIF"))
    gif[6:10] = struct.pack("<HH", 20, 10)  # logical screen smaller than the frame
    out["gif_frame_outside_screen"] = bytes(gif)
    gif2 = bytearray(_save(pal, "GIF"))
    desc = gif2.index(b"\x2c")
    gif2[desc + 1 : desc + 5] = struct.pack("<HH", 5, 7)  # frame offset pushes it past the screen
    out["gif_frame_offset"] = bytes(gif2)

    out["bmp"] = _save(base, "BMP")
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[274] = 6
    out["tiff_orientation"] = _save(base, "TIFF", tiffinfo=ifd)
    out["tiff_lzw"] = _save(base, "TIFF", compression="tiff_lzw")
    out["tiff_16bit"] = _save(Image.new("I;16", (9, 4), 300), "TIFF")
    # Every PNG colour type and depth the Rust decoder converts, interlaced and keyed ones too.
    for name in PNGSUITE:
        out[f"pngsuite_{name}"] = (PNG_CORPUS / f"pngsuite-{name}.png").read_bytes()
    # Every JPEG coding the Rust decoder takes: samplings, progressive, arithmetic, restarts.
    for name in JPEGS:
        out[f"jpeg_{name.replace('-', '_')}"] = (JPEG_CORPUS / f"{name}.jpg").read_bytes()
    return out


PNG_CORPUS = Path(__file__).parents[1] / "corpus" / "png"
JPEG_CORPUS = Path(__file__).parents[1] / "corpus" / "jpeg"
JPEGS = ["sample-4x2", "sample-2x2_2x1_1x2", "progressive-420", "arithmetic", "restart-blocks", "rgb", "grey"]
PNGSUITE = [
    "basn0g01", "basn0g02", "basn0g04", "basn0g16", "basi0g16", "basn2c16", "basn4a16", "basn6a16",
    "basi3p02", "s01n3p01", "tbbn0g04", "tbbn3p08", "tbgn2c16", "tbrn2c08",
]  # fmt: skip


def _save(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _grids() -> tuple[list[int], list[int]]:
    """The grids of the fuzz context's stored 30x20 asset (tests/fuzz/targets.py)."""
    from rawmm import Layout

    q = Layout.preset("qwen2_5_vl").image(30, 20).grid_thw
    k = Layout.preset("kimi_k25").image(30, 20).grid_thw
    return list(q), list(k)


def refs() -> dict[str, bytes]:
    from rawmm import Layout
    from rawmm.refs import b64u_encode, cjson

    q, k = _grids()
    qfp, kfp = Layout.preset("qwen2_5_vl").fingerprint, Layout.preset("kimi_k25").fingerprint
    qpay = b64u_encode(cjson({"image_grid_thw": [q]}).encode())
    glm = Layout.preset("glm46v")
    gfp, gpay = glm.fingerprint, b64u_encode(cjson({"image_grid_thw": [glm.image(30, 20).grid_thw]}).encode())
    gemma = Layout.preset("gemma4")
    lay = gemma.image(30, 20)
    gmpay = b64u_encode(cjson({"image_grid_thw": [lay.grid_thw], "num_soft_tokens": lay.num_tokens}).encode())
    out = {
        "v2": f"mmraw:v2:run1:qwen_vl:{qfp}:image:@HASH@:@HASH@.png:{qpay}",
        "v2_gemma4": f"mmraw:v2:run1:gemma4:{gemma.fingerprint}:image:@HASH@:@HASH@.png:{gmpay}",
        "v2_bait_symlink": f"mmraw:v2:run1:qwen_vl:{qfp}:image:@OUT_HASH@:@OUT_HASH@.png:{qpay}",
        "v1": f"mmraw:v1:run1:{qfp}:image:@HASH@:@HASH@.png:{'x'.join(map(str, q))}",
        "v2_glm": f"mmraw:v2:run1:glm4v:{gfp}:image:@HASH@:@HASH@.png:{gpay}",
        "json_uri": "mmraw:"
        + cjson(
            {
                "family": "qwen_vl",
                "modality": "image",
                "mm_hash": "@HASH@",
                "payload": {"image_grid_thw": [q]},
                "raw_image_uri": "file://@STORE@/@HASH@.png",
            }
        ),
        "json_bait_uri": "mmraw:"
        + cjson(
            {
                "family": "qwen_vl",
                "modality": "image",
                "mm_hash": "@OUT_HASH@",
                "payload": {"image_grid_thw": [q]},
                "raw_image_uri": "file://@STORE@/../outside/@OUT_HASH@.png",
            }
        ),
        "v3": "mmraw:v3:"
        + b64u_encode(
            cjson(
                {
                    "family": "kimi_k25",
                    "fingerprint": kfp,
                    "modality": "vision_chunk",
                    "mm_hash": "@HASH@",
                    "payload": {"grid_thws": [k], "num_media_tokens": 1},
                    "raw_image_id": "@HASH@.png",
                    "raw_uri": "file://@OUTSIDE@/@HASH@.png",
                }
            ).encode()
        ),
        "data": "mmraw:"
        + cjson(
            {
                "family": "qwen_vl",
                "modality": "image",
                "mm_hash": "@HASH@",
                "payload": {"image_grid_thw": [q]},
                "raw_image_data": "data:image/png;base64,iVBORw0KGgo=",
            }
        ),
    }
    return {k: v.encode() for k, v in out.items()}


def envelopes() -> dict[str, bytes]:
    from rawmm import Layout

    q, k = _grids()
    full = {
        "kind": "prime_raw_mm_item",
        "version": 1,
        "modality": "image",
        "family": "qwen_vl",
        "layout_fingerprint": Layout.preset("qwen2_5_vl").fingerprint,
        "payload": {"image_grid_thw": [q]},
        "raw_uri": "file://@STORE@/@HASH@.png",
        "raw_image_id": "@HASH@.png",
        "_prime_rl_image_ref": "raw_image",
    }
    bait = {**full, "raw_uri": "file://@OUTSIDE@/@OUT_HASH@.png", "raw_image_id": "@OUT_HASH@.png"}
    kimi = {
        **full,
        "family": "kimi_k25",
        "layout_fingerprint": Layout.preset("kimi_k25").fingerprint,
        "vllm_modality": "vision_chunk",
        "payload": {"grid_thws": [k], "num_media_tokens": 1},
    }
    pruned = {
        "kind": "prime_raw_mm_item",
        "family": "qwen_vl",
        "payload": {"image_grid_thw": [q]},
        "raw_image_uri": "file://@STORE@/@HASH@.png",
    }
    deep: dict[str, object] = {"x": 1}
    for _ in range(40):
        deep = {"x": deep}
    nested = {**full, "payload": {"image_grid_thw": [q], "deep": deep}}
    huge = {**full, "payload": {"image_grid_thw": [[1, 2**40, 10**50]]}}
    seeds = {"full": full, "bait": bait, "kimi": kimi, "pruned": pruned, "nested": nested, "huge": huge}
    return {name: json.dumps(v).encode() for name, v in seeds.items()}


def main() -> None:
    for target, seeds in (("images", images()), ("refs", refs()), ("envelopes", envelopes())):
        d = HERE / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (d / f"seed-{name}").write_bytes(data)
        print(f"{target}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
