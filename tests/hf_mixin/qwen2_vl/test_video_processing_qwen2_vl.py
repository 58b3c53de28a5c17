"""transformers 5.24.0's video-processor test mixin (`tests/test_video_processing_common.py`,
vendored verbatim from the sdist into tests/hf_mixin/) on the Qwen2-VL and Qwen3-VL video
processors, run on transformers' classes and on rawmm's: rawmm's classes must pass every test
transformers' classes pass. Qwen packs videos into patch rows, so the shape checks are Qwen's,
as in transformers' own model test modules."""

from __future__ import annotations

import math
import sys
import unittest
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the vendored mixin
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/ (conftest helpers)

from conftest import require_torch_module

require_torch_module()

from PIL import Image
from test_video_processing_common import VideoProcessingTestMixin, prepare_video_inputs
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize
from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as video_smart_resize


class QwenVideoProcessingTester:
    def __init__(self, parent: Any, qwen3: bool, **kwargs: Any) -> None:
        self.parent, self.qwen3 = parent, qwen3
        self.batch_size, self.num_frames, self.num_channels = 5, 8, 3
        self.min_resolution, self.max_resolution = 32, 80
        self.patch_size = 16 if qwen3 else 14
        self.temporal_patch_size, self.merge_size = 2, 2
        self.min_pixels, self.max_pixels = 32 * 32, 64 * 64 * 8
        self.image_mean, self.image_std = (
            ([0.5] * 3, [0.5] * 3) if qwen3 else (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
        )
        self.__dict__.update(kwargs)

    def prepare_video_processor_dict(self) -> dict[str, Any]:
        return {
            "do_resize": True,
            "size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
            "do_normalize": True,
            "image_mean": self.image_mean,
            "image_std": self.image_std,
            "do_convert_rgb": True,
            "patch_size": self.patch_size,
            "temporal_patch_size": self.temporal_patch_size,
            "merge_size": self.merge_size,
            "do_sample_frames": False,
        }

    def expected_output_video_shape(self, videos: list[Any]) -> list[int]:
        rows = 0
        factor = self.patch_size * self.merge_size
        for video in videos:
            if isinstance(video[0], Image.Image):
                frames, (w, h) = len(video), video[0].size
            elif isinstance(video, np.ndarray) or isinstance(video[0], np.ndarray):
                frames, (h, w) = len(video), np.asarray(video[0]).shape[:2]
            else:  # torch (T, C, H, W)
                frames, (h, w) = video.shape[0], tuple(video.shape[-2:])
            if self.qwen3:
                rh, rw = video_smart_resize(
                    frames,
                    h,
                    w,
                    temporal_factor=self.temporal_patch_size,
                    factor=factor,
                    min_pixels=self.min_pixels,
                    max_pixels=self.max_pixels,
                )
            else:
                rh, rw = smart_resize(
                    h, w, factor=factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels
                )
            rows += (
                math.ceil(frames / self.temporal_patch_size)
                * (rh // self.patch_size)
                * (rw // self.patch_size)
            )
        return [rows, self.num_channels * self.temporal_patch_size * self.patch_size**2]

    def prepare_video_inputs(self, equal_resolution: bool = False, return_tensors: str = "pil") -> list[Any]:
        return prepare_video_inputs(
            batch_size=self.batch_size,
            num_frames=self.num_frames,
            num_channels=self.num_channels,
            min_resolution=self.min_resolution,
            max_resolution=self.max_resolution,
            equal_resolution=equal_resolution,
            return_tensors=return_tensors,
        )


class _QwenVideoProcessingTests(VideoProcessingTestMixin):
    qwen3 = False
    owner = "transformers"

    @property
    def fast_video_processing_class(self) -> type:  # type: ignore[override]
        import transformers

        import rawmm.hf

        name = "Qwen3VLVideoProcessor" if self.qwen3 else "Qwen2VLVideoProcessor"
        return getattr(transformers if self.owner == "transformers" else rawmm.hf, name)  # type: ignore[no-any-return]

    def setUp(self) -> None:
        super().setUp()
        np.random.seed(0)  # the mixin's random videos: the same for both owners
        self.video_processor_tester = QwenVideoProcessingTester(self, self.qwen3)

    @property
    def video_processor_dict(self) -> dict[str, Any]:
        return self.video_processor_tester.prepare_video_processor_dict()

    def assert_expected_videos_shape(self, encoded: Any, expected: Any, batch_size: int) -> None:
        self.assertEqual(list(encoded.shape), list(expected))

    # Shapes are patch rows: the mixin's (batch, frames, C, H, W) forms are replaced by Qwen's.
    def test_call_sample_frames(self) -> None:
        for cls in self.video_processor_list:
            proc = cls(**self.video_processor_dict)
            tester = self.video_processor_tester
            videos = tester.prepare_video_inputs(equal_resolution=False, return_tensors="torch")
            proc.do_sample_frames = False
            out = proc(videos[0], return_tensors="pt", num_frames=4, fps=None)
            self.assertEqual(int(out["video_grid_thw"][0][0]), math.ceil(tester.num_frames / 2))
            proc.do_sample_frames = True
            out = proc(videos[0], return_tensors="pt", num_frames=4, fps=None)
            self.assertEqual(int(out["video_grid_thw"][0][0]), 2)  # 4 sampled frames in pairs

    def test_video_processor_from_dict_with_kwargs(self) -> None:
        tester = self.video_processor_tester
        proc = self.fast_video_processing_class.from_dict(self.video_processor_dict)
        self.assertEqual(proc.size["shortest_edge"], tester.min_pixels)
        self.assertEqual(proc.size["longest_edge"], tester.max_pixels)
        size = {"shortest_edge": 3136, "longest_edge": 50176}
        proc = self.fast_video_processing_class.from_dict(self.video_processor_dict, size=size)
        self.assertEqual((proc.size["shortest_edge"], proc.size["longest_edge"]), (3136, 50176))

    def test_call_numpy_4_channels(self) -> None:
        for cls in self.video_processor_list:
            proc = cls(**self.video_processor_dict)
            tester = self.video_processor_tester
            tester.num_channels = 4
            videos = tester.prepare_video_inputs(equal_resolution=False, return_tensors="pil")
            kw = {
                "return_tensors": "pt",
                "input_data_format": "channels_last",
                "image_mean": 0.0,
                "image_std": 1.0,
            }
            tester.num_channels = 3  # the processor converts the 4-channel frames to RGB
            expected = tester.expected_output_video_shape(videos[:1])
            self.assertEqual(list(proc(videos[0], **kw)[self.input_name].shape), expected)


class TestTransformersQwen2VLVideoProcessing(_QwenVideoProcessingTests, unittest.TestCase):
    qwen3, owner = False, "transformers"


class TestRawmmQwen2VLVideoProcessing(_QwenVideoProcessingTests, unittest.TestCase):
    qwen3, owner = False, "rawmm"


class TestTransformersQwen3VLVideoProcessing(_QwenVideoProcessingTests, unittest.TestCase):
    qwen3, owner = True, "transformers"


class TestRawmmQwen3VLVideoProcessing(_QwenVideoProcessingTests, unittest.TestCase):
    qwen3, owner = True, "rawmm"
