"""Each model family against its transformers 5.24 processors, one thread, in the same run.

    python benches/bench_families.py      (also in `make bench`)

For every preset whose reference runs here (Qwen2.5-VL and Qwen3-VL: `Qwen2VLImageProcessor`
and its PIL twin; GLM-4.1V and GLM-4.6V: `Glm4vImageProcessor`, `Glm46VImageProcessor` and
their PIL twins; Gemma 4: `Gemma4ImageProcessor` and `Gemma4ImageProcessorPil`; Inkling:
`InklingImageProcessor` and NemotronH Omni: `NemotronH_Omni_Reasoning_V3ImageProcessor`,
torchvision only), a 1024x1024
photo and a 1280x720 screenshot, PIL image in, the processor's whole dict out (float32
`pixel_values`; Gemma 4's position ids and token counts too): median times
(`_common.interleaved_medians`) of the reference (torch.set_num_threads(1)) and of rawmm
(threads=1), the ratio, and whether every output is bit-identical.
"""

from __future__ import annotations

import os
import sys

import numpy as np

import rawmm
from _common import interleaved_medians, photo, screenshot

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from conftest import qwen_reference
from rawmm.families import family
from test_gemma4 import reference as gemma_reference
from test_glm4v import reference as glm_reference
from test_inkling import reference as inkling_reference
from test_nemotron import reference as nemotron_reference

MODELS = {
    "qwen2_5_vl": qwen_reference,
    "qwen3_vl": qwen_reference,
    "glm4v": glm_reference,
    "glm46v": glm_reference,
    "gemma4": gemma_reference,
    "inkling": inkling_reference,
    "nemotron_h_omni": nemotron_reference,
}
#: Models whose transformers processor has no PIL twin.
TORCHVISION_ONLY = {"inkling", "nemotron_h_omni"}
IMAGES = {"1024x1024 photo": photo(1024, 1024), "1280x720 screenshot": screenshot(1280, 720)}
REPEAT = int(os.environ.get("RAWMM_BENCH_REPEAT", "5"))


def outputs(layout: rawmm.Layout, im: object) -> dict[str, object]:
    """rawmm's version of the processor's dict, one thread."""
    pv = layout.pixel_values(im, threads=1)
    return family(layout.family).hf_outputs(layout, pv.pixel_values, pv.grid_thw)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    print("| model | image | backend | reference ms | rawmm ms | ratio | bit-exact |\n" + "|---" * 7 + "|")
    for model, make_reference in MODELS.items():
        for label, im in IMAGES.items():
            for backend in ("torchvision",) if model in TORCHVISION_ONLY else ("torchvision", "pil"):
                layout = rawmm.Layout.preset(model, backend=backend)
                ref = make_reference(layout)
                want = ref(images=[im], return_tensors="np")
                got = outputs(layout, im)
                exact = set(got) == set(want) and all(
                    np.array_equal(np.asarray(got[k]), np.asarray(want[k])) for k in want
                )
                exact = exact and np.array_equal(
                    want["pixel_values"].view(np.uint32), got["pixel_values"].view(np.uint32)
                )
                t = interleaved_medians(
                    {
                        "ref": lambda ref=ref, im=im: ref(images=[im], return_tensors="np"),
                        "rawmm": lambda layout=layout, im=im: outputs(layout, im),
                    },
                    REPEAT,
                )
                print(
                    f"| {model} | {label} | {backend} | {t['ref'] * 1e3:.1f} | {t['rawmm'] * 1e3:.1f} "
                    f"| {t['ref'] / t['rawmm']:.2f}x | {'yes' if exact else 'NO'} |"
                )


if __name__ == "__main__":
    main()
