"""Shared helpers for the benchmarks: medians over repeated runs, photo-like test images."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

T = TypeVar("T")


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_added(run: Callable[[], T]) -> tuple[int, T]:
    """The bytes of peak RSS `run()` adds in this process, and its result: the peak (VmHWM) is
    reset to the current RSS first. Meant for a fresh process, after one warm-up call."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status("VmRSS:")
    out = run()
    return _status("VmHWM:") - before, out


def run_peak_script(script: str, *args: str) -> dict[str, Any]:
    """Runs `script` in a fresh interpreter, as `python -c script BENCHES_DIR *args`, and returns
    the JSON object its last line prints. glibc thresholds are fixed, so every buffer of 64 KiB
    or more is its own mapping, returned on free: the peak counts each buffer instead of memory
    freed earlier and reused."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}
    cmd = [sys.executable, "-c", script, str(Path(__file__).parent), *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def median_s(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(
    fns: dict[str, Callable[[], object]], repeat: int, rounds: int = 3
) -> dict[str, float]:
    """Median seconds of each function over `rounds` rounds of `repeat` back-to-back runs, the
    functions taking turns round by round. Turns spread every function over the same stretch
    of time (a shared VM drifts over seconds); back-to-back runs after one untimed warm-up run
    measure each in its steady state rather than in the wake of the previous function (whose
    freed memory, for instance, changes what the next allocation costs)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A deterministic photo-like RGB image: smooth regions, edges, texture and grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            120 + 90 * np.sin(x / (width / 5.3)) * np.cos(y / (height / 3.1)),
            110 + 80 * np.cos(x / (width / 2.7) + y / (height / 4.9)),
            100 + 70 * np.sin((x + 2 * y) / (width / 3.7)),
        ],
        axis=-1,
    )
    im = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(10, max(11, width // 8)))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + r, y0 + r), fill=color)
    im = im.filter(ImageFilter.GaussianBlur(1.2))
    grain = rng.normal(0, 4, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(im) + grain, 0, 255).astype(np.uint8))


def screenshot(width: int, height: int, seed: int = 0) -> Image.Image:
    """A deterministic GUI-screenshot-like RGB image: flat panels, hard edges, text-like strokes."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (width, height), (243, 244, 246))
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, width, 36), fill=(32, 33, 36))
    draw.rectangle((0, 36, width // 6, height), fill=(250, 250, 251))
    for _ in range(60):  # panels and buttons
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(40, height))
        w, h = int(rng.integers(20, width // 3)), int(rng.integers(12, height // 6))
        color = tuple(int(c) for c in rng.integers(180, 256, 3))
        draw.rectangle((x0, y0, x0 + w, y0 + h), fill=color, outline=(200, 200, 205))
    for _ in range(900):  # "text": short dark strokes on a line grid
        x0, y0 = int(rng.integers(0, width - 8)), int(rng.integers(40, height - 10)) // 14 * 14
        draw.line((x0, y0, x0 + int(rng.integers(2, 9)), y0 + int(rng.integers(0, 9))), fill=(40, 40, 48))
    return im
