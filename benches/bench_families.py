"""Each model family against its transformers 5.24 processors, one thread, in the same run.

    python benches/bench_families.py      (also in `make bench`)

For every preset whose reference runs here (Qwen2.5-VL and Qwen3-VL: `Qwen2VLImageProcessor`
and its PIL twin; GLM-4.1V and GLM-4.6V: `Glm4vImageProcessor`, `Glm46VImageProcessor` and
their PIL twins), a 1024x1024 photo and a 1280x720 screenshot, PIL image in, float32 out:
median times (`_common.interleaved_medians`) of the reference (torch.set_num_threads(1)) and of
rawmm (threads=1), the ratio, and whether the outputs are bit-identical.
"""

from __future__ import annotations

import os
import sys

import numpy as np

import rawmm
from _common import interleaved_medians, photo, screenshot

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from conftest import qwen_reference
from test_glm4v import reference as glm_reference

MODELS = {
    "qwen2_5_vl": qwen_reference,
    "qwen3_vl": qwen_reference,
    "glm4v": glm_reference,
    "glm46v": glm_reference,
}
IMAGES = {"1024x1024 photo": photo(1024, 1024), "1280x720 screenshot": screenshot(1280, 720)}
REPEAT = int(os.environ.get("RAWMM_BENCH_REPEAT", "5"))


def main() -> None:
    import torch

    torch.set_num_threads(1)
    print("| model | image | backend | reference ms | rawmm ms | ratio | bit-exact |\n" + "|---" * 7 + "|")
    for model, make_reference in MODELS.items():
        for label, im in IMAGES.items():
            for backend in ("torchvision", "pil"):
                layout = rawmm.Layout.preset(model, backend=backend)
                ref = make_reference(layout)
                want = ref(images=[im], return_tensors="np")["pixel_values"]
                got = layout.pixel_values(im, threads=1).pixel_values
                exact = np.array_equal(want.view(np.uint32), got.view(np.uint32))
                t = interleaved_medians(
                    {
                        "ref": lambda ref=ref, im=im: ref(images=[im], return_tensors="np"),
                        "rawmm": lambda layout=layout, im=im: layout.pixel_values(im, threads=1),
                    },
                    REPEAT,
                )
                print(
                    f"| {model} | {label} | {backend} | {t['ref'] * 1e3:.1f} | {t['rawmm'] * 1e3:.1f} "
                    f"| {t['ref'] / t['rawmm']:.2f}x | {'yes' if exact else 'NO'} |"
                )


if __name__ == "__main__":
    main()
