"""transformers 5.24.0's image-processor test mixin (vendored in tests/hf_mixin/) on the Inkling
image processor, written the way transformers' own model test modules are, and run on
transformers' class and on rawmm's (`rawmm.hf.InklingImageProcessor`): rawmm's class must pass
every test transformers' class passes. Inkling's output is tiles of every image concatenated,
`(Σ tiles, 2, p, p, 3)`, so the call tests count tiles instead of stacking images."""

from __future__ import annotations

import sys
import unittest
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the vendored mixin
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/ (conftest helpers)

from conftest import require_torch_module

require_torch_module()

from patch_rows import ClassesTester, PatchRowCallTests, image_hw
from PIL import Image
from test_image_processing_common import ImageProcessingTestMixin


def transformers_classes() -> dict[str, type]:
    from transformers.models.inkling.image_processing_inkling import InklingImageProcessor

    return {"torchvision": InklingImageProcessor}


def rawmm_classes() -> dict[str, type]:
    import rawmm.hf

    return {"torchvision": rawmm.hf.InklingImageProcessor}


class InklingTester(ClassesTester):
    """Tiles of 16 pixels, so the mixin's 30–400 pixel images make many, with a partial row and
    the extra column."""

    def __init__(self, parent: Any, classes: dict[str, type], **kwargs: Any) -> None:
        kwargs.setdefault("size", {"height": 16, "width": 16})
        kwargs.setdefault("do_normalize", True)
        kwargs.setdefault("image_mean", [0.48145466, 0.4578275, 0.40821073])
        kwargs.setdefault("image_std", [0.26862954, 0.26130258, 0.27577711])
        kwargs.setdefault("do_convert_rgb", True)
        super().__init__(parent, classes, **kwargs)

    def tiles(self, image: Any) -> int:
        h, w = image_hw(image)
        p = self.size["height"]
        return int(-(-h // p) * (w // p + 1))

    def expected_output_image_shape(self, images: list[Any]) -> tuple[int, ...]:
        p = self.size["height"]
        return sum(self.tiles(im) for im in images), 2, p, p, 3


class _InklingImageProcessingTests(PatchRowCallTests, ImageProcessingTestMixin):
    classes: Any = None

    def setUp(self) -> None:
        # Seeded: transformers' and rawmm's runs see the same images.
        np.random.seed(0)
        self.image_processor_tester = InklingTester(self, type(self).classes())

    @property
    def image_processor_dict(self) -> dict[str, Any]:
        return self.image_processor_tester.prepare_image_processor_dict()  # type: ignore[no-any-return]

    def check_sizes(self, batch: Any, images: list[Any]) -> None:
        self.assertEqual(batch.num_patches.tolist(), [self.image_processor_tester.tiles(im) for im in images])

    @unittest.skip("tiles are built from 3 channels: a 4-channel image has no Inkling layout")
    def test_call_numpy_4_channels(self) -> None:
        pass

    def test_tiles_pad_with_minus_one_before_normalising(self) -> None:
        image = Image.fromarray(np.full((20, 20, 3), 255, np.uint8))
        for cls in self.image_processing_classes.values():
            out = cls(**self.image_processor_dict)(image, return_tensors="np")
            tiles = out["pixel_values"]
            self.assertEqual(tiles.shape, (4, 2, 16, 16, 3))  # 2 rows of 20//16 + 1 columns
            self.assertTrue(np.array_equal(tiles[:, 0], tiles[:, 1]))  # the temporal copy
            mean, std = np.float32(0.48145466) * np.float32(255), np.float32(0.26862954) * np.float32(255)
            self.assertEqual(tiles[3, 0, 15, 15, 0], (np.float32(-1.0) - mean) / std)


class TestTransformersInklingImageProcessing(_InklingImageProcessingTests, unittest.TestCase):
    classes = staticmethod(transformers_classes)


class TestRawmmInklingImageProcessing(_InklingImageProcessingTests, unittest.TestCase):
    classes = staticmethod(rawmm_classes)
