"""Checks shared by the per-family test modules (`test_gemma4.py`, `test_inkling.py`,
`test_nemotron.py`, `test_glm4v.py`): a processor's whole output dict compared bit for bit, a
video processor call on random frames, and the CLI's describe → materialize round trip."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from images import encode
from rawmm.cli import main


def assert_same_outputs(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Same keys; every array of the same dtype and shape and every bit equal (−0.0 too);
    lists (token counts) equal."""
    assert set(got) == set(want)
    for key in want:
        if isinstance(want[key], list):
            assert list(got[key]) == want[key], key
            continue
        g, w = np.ascontiguousarray(got[key]), np.ascontiguousarray(want[key])
        assert g.dtype == w.dtype and g.shape == w.shape, key
        assert np.array_equal(g.view(np.uint8), w.view(np.uint8)), key


def cli_round_trip(
    tmp_path: Path, model: str, im: Any, want: dict[str, Any], backend: str | None = None
) -> dict[str, Any]:
    """`rawmm describe` then `rawmm materialize` of `im` as a PNG: the .npz must hold `want`
    (the processor's dict); returns the describe line."""
    path = tmp_path / "a.png"
    path.write_bytes(encode(im, "PNG"))
    store, out = tmp_path / "run", tmp_path / "out.npz"
    common = ["--model", model, "--store", str(store), *(["--backend", backend] if backend else [])]
    res = CliRunner().invoke(main, ["describe", *common, str(path)])
    assert res.exit_code == 0, res.output
    line: dict[str, Any] = json.loads(res.output.strip().splitlines()[-1])
    res = CliRunner().invoke(main, ["materialize", line["ref"], *common, "-o", str(out)])
    assert res.exit_code == 0, res.output
    with np.load(out) as z:
        # np.savez stores lists (token counts) as arrays.
        saved = {k: np.asarray(v) if isinstance(v, list) else v for k, v in want.items()}
        assert_same_outputs({k: z[k] for k in z.files}, saved)
    return line


def video_call(n: int, w: int, h: int, fps: float, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """`n` random frames and the keywords of a transformers video processor call on them, with
    their metadata (source rate `fps`) returned back."""
    from transformers.video_utils import VideoMetadata

    frames = np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    meta = VideoMetadata(total_num_frames=n, fps=fps, width=w, height=h)
    # Frames as stored (HWC): transformers would otherwise guess the channel axis of tiny ones.
    return frames, {
        "videos": [frames],
        "return_tensors": "np",
        "video_metadata": [meta],
        "return_metadata": True,
        "input_data_format": "channels_last",
    }
