"""transformers 5.24.0's image-processor test mixin (vendored in tests/hf_mixin/) on the Gemma 4
image processors, written the way transformers' own model test modules are, and run on
transformers' classes and on rawmm's (`rawmm.hf.Gemma4ImageProcessor`, `...Pil`): rawmm's
classes must pass every test transformers' classes pass. Tests that transformers' classes
themselves fail here are marked, with the reason, for both."""

from __future__ import annotations

import itertools
import sys
import unittest
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the vendored mixin
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/ (conftest helpers)

from conftest import require_torch_module

require_torch_module()

from patch_rows import ClassesTester
from PIL import Image
from test_image_processing_common import ImageProcessingTestMixin
from transformers.models.gemma4.image_processing_pil_gemma4 import get_aspect_ratio_preserving_size


def transformers_classes() -> dict[str, type]:
    from transformers.models.gemma4.image_processing_gemma4 import Gemma4ImageProcessor
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    return {"torchvision": Gemma4ImageProcessor, "pil": Gemma4ImageProcessorPil}


def rawmm_classes() -> dict[str, type]:
    import rawmm.hf

    return {"torchvision": rawmm.hf.Gemma4ImageProcessor, "pil": rawmm.hf.Gemma4ImageProcessorPil}


class Gemma4Tester(ClassesTester):
    """Small patches and budget so the mixin's random images get resized both ways; the
    expected output is per image: (max_patches, p²·3) rows, padding included."""

    def __init__(self, parent: Any, classes: dict[str, type], **kwargs: Any) -> None:
        kwargs.setdefault("do_resize", True)
        kwargs.setdefault("do_normalize", False)
        kwargs.setdefault("image_mean", [0.0, 0.0, 0.0])
        kwargs.setdefault("image_std", [1.0, 1.0, 1.0])
        kwargs.setdefault("do_convert_rgb", True)
        kwargs.setdefault("patch_size", 8)
        kwargs.setdefault("max_soft_tokens", 140)
        kwargs.setdefault("pooling_kernel_size", 2)
        super().__init__(parent, classes, **kwargs)

    def expected_output_image_shape(self, images: Any = None) -> tuple[int, int]:
        return self.max_soft_tokens * self.pooling_kernel_size**2, 3 * self.patch_size**2


class _Gemma4ImageProcessingTests(ImageProcessingTestMixin):
    classes: Any = None

    def setUp(self) -> None:
        # The mixin draws its images from numpy's global generator: seeded, transformers' and
        # rawmm's runs see the same images, so their outcomes can be compared.
        np.random.seed(0)
        self.image_processor_tester = Gemma4Tester(self, type(self).classes())

    @property
    def image_processor_dict(self) -> dict[str, Any]:
        return self.image_processor_tester.prepare_image_processor_dict()  # type: ignore[no-any-return]

    @unittest.skip("patches are built from 3 channels: a 4-channel image has no Gemma 4 layout")
    def test_call_numpy_4_channels(self) -> None:
        pass

    def test_properties_and_defaults(self) -> None:
        for cls in self.image_processing_classes.values():
            proc = cls(**self.image_processor_dict)
            for name in ("do_resize", "do_normalize", "image_mean", "image_std", "patch_size"):
                self.assertTrue(hasattr(proc, name))
            self.assertEqual((proc.max_soft_tokens, proc.pooling_kernel_size), (140, 2))
            default = cls()
            self.assertEqual(
                (default.patch_size, default.max_soft_tokens, default.pooling_kernel_size), (16, 280, 3)
            )
            self.assertFalse(default.do_normalize)
            self.assertEqual(int(default.resample), 3)
            self.assertEqual(cls.from_dict(self.image_processor_dict, patch_size=12).patch_size, 12)

    def test_resized_sides_are_multiples_of_the_pooled_patch(self) -> None:
        for h, w in [(1, 1), (5, 100), (2785, 34), (400, 30), (30, 400)]:
            th, tw = get_aspect_ratio_preserving_size(
                height=h, width=w, patch_size=8, max_patches=560, pooling_kernel_size=2
            )
            self.assertEqual((th % 16, tw % 16), (0, 0))
            self.assertLessEqual(th * tw, 560 * 64)

    def test_positions_and_padding(self) -> None:
        image = Image.fromarray(np.random.randint(1, 255, (90, 130, 3), dtype=np.uint8))
        for cls in self.image_processing_classes.values():
            out = cls(**self.image_processor_dict)(image, return_tensors="np")
            pos, values = out["image_position_ids"][0], out["pixel_values"][0]
            real = pos[:, 0] >= 0
            n = int(real.sum())
            self.assertTrue(real[:n].all() and not real[n:].any())  # real rows first
            self.assertEqual(n, out["num_soft_tokens_per_image"][0] * 4)
            self.assertTrue((pos[~real] == -1).all() and (values[~real] == 0).all())
            self.assertTrue((values[real] > 0).any())

    def test_every_budget(self) -> None:
        image = Image.fromarray(np.random.randint(0, 255, (200, 300, 3), dtype=np.uint8))
        for cls, soft in itertools.product(self.image_processing_classes.values(), (70, 140, 280, 560, 1120)):
            out = cls(patch_size=16, max_soft_tokens=soft, pooling_kernel_size=3)(image, return_tensors="pt")
            self.assertEqual(tuple(out.pixel_values.shape), (1, soft * 9, 768))
            self.assertEqual(tuple(out.image_position_ids.shape), (1, soft * 9, 2))


class TestTransformersGemma4ImageProcessing(_Gemma4ImageProcessingTests, unittest.TestCase):
    classes = staticmethod(transformers_classes)


class TestRawmmGemma4ImageProcessing(_Gemma4ImageProcessingTests, unittest.TestCase):
    classes = staticmethod(rawmm_classes)
