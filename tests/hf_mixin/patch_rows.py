"""The call tests of the image-processor mixin for processors whose output is patch rows of every
image concatenated, not (batch, C, H, W) (Qwen2-VL, GLM-V, Inkling, NemotronH Omni):
transformers' own test modules for those models override them the same way. The tester's
`expected_output_image_shape` gives the rows, `check_sizes` the per-image size output."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from test_image_processing_common import ImageProcessingTester


def image_hw(image: Any) -> tuple[int, int]:
    """(height, width) of a mixin input: a PIL image, an (H, W, C) array or a (C, H, W) tensor."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    if isinstance(image, np.ndarray):
        return image.shape[0], image.shape[1]
    return image.shape[-2], image.shape[-1]  # torch, channels first


class ClassesTester(ImageProcessingTester):
    """A tester of the given processor classes (transformers' or rawmm's), not the ones the
    mixin finds from the test module's folder name."""

    def __init__(self, parent: Any, classes: dict[str, type], **kwargs: Any) -> None:
        self._classes = classes
        super().__init__(parent, **kwargs)

    def _get_image_processing_classes(self) -> dict[str, type]:
        return dict(self._classes)


class PatchRowTester(ClassesTester):
    """A tester whose expected output is patch rows: (Σ grid_h·grid_w, C·T·p²), each image
    sized by the model's `resized(h, w)`."""

    def resized(self, h: int, w: int) -> tuple[int, int]:
        raise NotImplementedError

    def expected_output_image_shape(self, images: list[Any]) -> tuple[int, ...]:
        rows = 0
        for image in images:
            rh, rw = self.resized(*image_hw(image))
            rows += (rh // self.patch_size) * (rw // self.patch_size)
        return rows, self.num_channels * self.temporal_patch_size * self.patch_size**2


class PatchRowCallTests:
    """Mixed in before `ImageProcessingTestMixin`, whose call tests these replace."""

    image_processor_tester: Any
    image_processing_classes: dict[str, type]
    image_processor_dict: dict[str, Any]
    assertEqual: Any

    def _check_calls(self, **prepare: Any) -> None:
        tester = self.image_processor_tester
        for cls in self.image_processing_classes.values():
            proc = cls(**self.image_processor_dict)
            images = tester.prepare_image_inputs(equal_resolution=False, **prepare)
            one = proc(images[0], return_tensors="pt")
            self.assertEqual(tuple(one.pixel_values.shape), tester.expected_output_image_shape([images[0]]))
            batch = proc(images, return_tensors="pt")
            self.assertEqual(tuple(batch.pixel_values.shape), tester.expected_output_image_shape(images))
            self.check_sizes(batch, images)

    def check_sizes(self, batch: Any, images: list[Any]) -> None:
        """The batch's per-image size output (Qwen2-VL, GLM-V: one grid row per image)."""
        self.assertEqual(tuple(batch.image_grid_thw.shape), (len(images), 3))

    def test_call_pil(self) -> None:
        self._check_calls()

    def test_call_numpy(self) -> None:
        self._check_calls(numpify=True)

    def test_call_pytorch(self) -> None:
        self._check_calls(torchify=True)

    def test_call_numpy_4_channels(self) -> None:
        """The mixin's 4-channel test (no RGB conversion, 4-value mean/std) with patch rows."""
        tester = self.image_processor_tester
        kw = {
            "do_convert_rgb": False,
            "return_tensors": "pt",
            "input_data_format": "channels_last",
            "image_mean": [0.0, 0.0, 0.0, 0.0],
            "image_std": [1.0, 1.0, 1.0, 1.0],
        }
        for cls in self.image_processing_classes.values():
            proc = cls(**self.image_processor_dict)
            tester.num_channels = 4
            images = tester.prepare_image_inputs(equal_resolution=False, numpify=True)
            self.assertEqual(
                tuple(proc(images[0], **kw).pixel_values.shape),
                tester.expected_output_image_shape(images[:1]),
            )
            self.assertEqual(
                tuple(proc(images, **kw).pixel_values.shape), tester.expected_output_image_shape(images)
            )
