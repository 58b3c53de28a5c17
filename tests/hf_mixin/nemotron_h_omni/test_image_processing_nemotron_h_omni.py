"""transformers 5.24.0's image-processor test mixin (vendored in tests/hf_mixin/) on the NemotronH
Omni image processor, written the way transformers' own model test modules are, and run on
transformers' class and on rawmm's (`rawmm.hf.NemotronH_Omni_Reasoning_V3ImageProcessor`): rawmm's
class must pass every test transformers' class passes. The output is patch rows of every image
concatenated, `(Σ grid_h·grid_w, 3·p²)`, so the call tests count rows."""

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
from test_image_processing_common import ImageProcessingTestMixin
from transformers.models.nemotron_h_omni.image_processing_nemotron_h_omni import get_patch_grid_size


def transformers_classes() -> dict[str, type]:
    from transformers.models.nemotron_h_omni.image_processing_nemotron_h_omni import (
        NemotronH_Omni_Reasoning_V3ImageProcessor,
    )

    return {"torchvision": NemotronH_Omni_Reasoning_V3ImageProcessor}


def rawmm_classes() -> dict[str, type]:
    import rawmm.hf

    return {"torchvision": rawmm.hf.NemotronH_Omni_Reasoning_V3ImageProcessor}


class NemotronTester(ClassesTester):
    """Small patches and budget so the mixin's 30–400 pixel images are resized both ways."""

    def __init__(self, parent: Any, classes: dict[str, type], **kwargs: Any) -> None:
        kwargs.setdefault("patch_size", 8)
        kwargs.setdefault("downsample_ratio", 0.5)
        kwargs.setdefault("min_num_patches", 64)
        kwargs.setdefault("max_num_patches", 576)
        kwargs.setdefault("max_model_len", 4096)
        kwargs.setdefault("do_normalize", True)
        kwargs.setdefault("image_mean", [0.48145466, 0.4578275, 0.40821073])
        kwargs.setdefault("image_std", [0.26862954, 0.26130258, 0.27577711])
        kwargs.setdefault("do_convert_rgb", True)
        super().__init__(parent, classes, **kwargs)

    def grid(self, image: Any) -> tuple[int, int]:
        h, w = image_hw(image)
        return get_patch_grid_size(
            int(h), int(w), self.patch_size, 2, self.min_num_patches, self.max_num_patches
        )

    def expected_output_image_shape(self, images: list[Any]) -> tuple[int, ...]:
        rows = sum(gh * gw for gh, gw in (self.grid(im) for im in images))
        return rows, 3 * self.patch_size**2


class _NemotronImageProcessingTests(PatchRowCallTests, ImageProcessingTestMixin):
    classes: Any = None

    def setUp(self) -> None:
        # Seeded: transformers' and rawmm's runs see the same images.
        np.random.seed(0)
        self.image_processor_tester = NemotronTester(self, type(self).classes())

    @property
    def image_processor_dict(self) -> dict[str, Any]:
        return self.image_processor_tester.prepare_image_processor_dict()  # type: ignore[no-any-return]

    def check_sizes(self, batch: Any, images: list[Any]) -> None:
        self.assertEqual(
            batch.image_grid_hw.tolist(), [list(self.image_processor_tester.grid(im)) for im in images]
        )

    @unittest.skip("patches are built from 3 channels: a 4-channel image has no NemotronH layout")
    def test_call_numpy_4_channels(self) -> None:
        pass

    def test_grid_is_a_multiple_of_the_merge_within_the_budget(self) -> None:
        for h, w in [(1, 1), (30, 400), (400, 30), (1000, 1000)]:
            gh, gw = get_patch_grid_size(h, w, 8, 2, 64, 576)
            self.assertEqual((gh % 2, gw % 2), (0, 0))
            self.assertLessEqual(gh * gw, 576)


class TestTransformersNemotronImageProcessing(_NemotronImageProcessingTests, unittest.TestCase):
    classes = staticmethod(transformers_classes)


class TestRawmmNemotronImageProcessing(_NemotronImageProcessingTests, unittest.TestCase):
    classes = staticmethod(rawmm_classes)
