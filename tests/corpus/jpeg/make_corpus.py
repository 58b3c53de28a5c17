"""Writes the JPEG corpus (committed; rerun only to regenerate it):

    python tests/corpus/jpeg/make_corpus.py target/release/build/turbojpeg-sys-*/out/bin/cjpeg

libjpeg-turbo's own `cjpeg` (built by turbojpeg-sys with rawmm) writes what Pillow's encoder
cannot: every sampling factor libjpeg accepts, RGB and grey colour spaces, arithmetic coding,
lossless and 12-bit files, restart intervals in rows and blocks, progressive scans. Pillow adds
CMYK (Adobe-inverted), EXIF orientations and optimised tables; the damaged files are cuts and
byte flips of good ones. `tests/test_jpeg.py` decodes every file with rawmm and with Pillow 13.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent


def photo(width: int, height: int, seed: int) -> Image.Image:
    """Smooth gradients, hard edges and grain: every DCT frequency gets energy."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([128 + 100 * np.sin(x / 7 + c) * np.cos(y / 11 - c) for c in range(3)], -1)
    rgb[(x.astype(int) // 13 + y.astype(int) // 17) % 2 == 0] *= 0.5
    rgb += rng.normal(0, 12, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def main(cjpeg: str) -> None:
    src = photo(77, 53, 1)  # odd sizes: partial MCUs on both edges
    ppm, pgm = HERE / "src.ppm", HERE / "src.pgm"
    src.save(ppm)
    src.convert("L").save(pgm)
    runs = {
        **{
            f"sample-{s.replace(',', '_')}": ["-sample", s]
            for s in ("1x1", "2x1", "1x2", "2x2", "4x1", "4x2", "1x4", "3x1", "2x2,2x1,1x2", "1x1,2x2,2x2")
        },
        "progressive-420": ["-progressive"],
        "progressive-444": ["-progressive", "-sample", "1x1"],
        "restart-rows": ["-restart", "1"],
        "restart-blocks": ["-restart", "3B", "-sample", "2x1"],
        "arithmetic": ["-arithmetic"],
        "arithmetic-progressive": ["-arithmetic", "-progressive"],
        "rgb": ["-rgb"],
        "rgb-progressive": ["-rgb", "-progressive"],
        "lossless": ["-lossless", "1"],
        "precision12": ["-precision", "12"],
        "quality-100": ["-quality", "100", "-sample", "1x1"],
        "quality-5": ["-quality", "5"],
        "smooth": ["-smooth", "30"],
        "dct-float": ["-dct", "float"],
    }
    for name, args in runs.items():
        (HERE / f"{name}.jpg").write_bytes(subprocess.check_output([cjpeg, *args, str(ppm)]))
    for name, args in {
        "grey": [],
        "grey-progressive": ["-progressive"],
        "grey-arithmetic": ["-arithmetic"],
    }.items():
        (HERE / f"{name}.jpg").write_bytes(subprocess.check_output([cjpeg, *args, str(pgm)]))
    ppm.unlink()
    pgm.unlink()

    def save(name: str, im: Image.Image, **kw: object) -> bytes:
        buf = io.BytesIO()
        im.save(buf, "JPEG", **kw)
        (HERE / f"{name}.jpg").write_bytes(buf.getvalue())
        return buf.getvalue()

    save("cmyk", src.convert("CMYK"))
    save("optimized", src, optimize=True, quality=85)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[274] = orientation
        save(f"exif-{orientation}", photo(40, 24, orientation), exif=exif.tobytes())
    good = save("ref-422", photo(64, 48, 9), subsampling=1)
    (HERE / "damaged-truncated-half.jpg").write_bytes(good[: len(good) // 2])
    (HERE / "damaged-no-eoi.jpg").write_bytes(good[:-2])
    (HERE / "damaged-header-only.jpg").write_bytes(good[: good.index(b"\xff\xda") + 20])
    flipped = bytearray(good)
    flipped[len(good) * 2 // 3] ^= 0xFF
    (HERE / "damaged-flipped-byte.jpg").write_bytes(bytes(flipped))
    (HERE / "damaged-trailing-junk.jpg").write_bytes(good + b"junk after EOI")
    prog = (HERE / "progressive-420.jpg").read_bytes()
    (HERE / "damaged-progressive-cut.jpg").write_bytes(prog[: len(prog) * 3 // 4])


if __name__ == "__main__":
    main(sys.argv[1])
