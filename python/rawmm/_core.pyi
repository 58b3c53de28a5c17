import os
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_SIDE",
    "ImageLayout",
    "LayoutCore",
    "decode_jpeg",
    "decode_png",
    "encode_png",
    "fingerprint_bytes",
    "fingerprint_file",
    "hash_chunks",
    "pixel_fingerprint",
    "read_header",
    "resize_bicubic",
    "same_contents",
]

MAX_SIDE: int

@final
class ImageLayout:
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def resized_width(self) -> int: ...
    @property
    def resized_height(self) -> int: ...
    @property
    def padded_width(self) -> int: ...
    @property
    def padded_height(self) -> int: ...
    @property
    def grid_thw(self) -> tuple[int, int, int]: ...
    @property
    def num_tokens(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class LayoutCore:
    def __new__(
        cls,
        family: str,
        *,
        image_mean: list[float],
        image_std: list[float],
        rescale_factor: float,
        resize_compat: str,
        exif_policy: str,
        alpha_policy: str,
        backend: str = "pil",
        do_normalize: bool = True,
        **geometry: int | None,
    ) -> LayoutCore: ...
    @property
    def family(self) -> str: ...
    @property
    def row_shape(self) -> list[int]: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def fingerprint_text(self) -> str: ...
    def image(self, width: int, height: int) -> ImageLayout: ...
    def images(self, sizes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
    def qwen_video(
        self,
        num_frames: int,
        width: int,
        height: int,
        fps: float,
        *,
        style: str,
        min_pixels: int,
        max_pixels: int,
        do_sample_frames: bool,
        sample_fps: float | None,
        min_frames: int,
        max_frames: int,
        cap_pixels_per_frame: bool,
        replace_triple: bool,
    ) -> dict[str, Any]: ...
    def glm_video(
        self, num_frames: int, width: int, height: int, min_pixels: int, max_pixels: int
    ) -> tuple[int, int, tuple[int, int, int], int]: ...
    def kimi_video(
        self,
        num_frames: int,
        width: int,
        height: int,
        fps: float,
        *,
        in_patch_limit_each_frame: int,
        sample_fps: float,
        temporal_merge_kernel_size: int,
    ) -> dict[str, Any]: ...
    def pixel_values(
        self,
        images: list[Any],
        *,
        dtype: str = "float32",
        threads: int | None = None,
        out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, npt.NDArray[np.int64], list[int]]: ...
    def normalize_table(self, arithmetic: str = "transformers") -> npt.NDArray[np.float32]: ...
    def normalize(
        self,
        values: npt.NDArray[np.uint8],
        *,
        out: npt.NDArray[np.float32] | None = None,
        threads: int | None = None,
        arithmetic: str = "transformers",
    ) -> npt.NDArray[np.float32]: ...
    def png_pixel_values(
        self,
        data: Any,
        mode: str,
        *,
        key: tuple[int, int, int] | None = None,
        alphas: bytes | None = None,
        dtype: str = "float32",
        threads: int | None = None,
        out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, npt.NDArray[np.int64], list[int]] | None: ...
    def jpeg_pixel_values(
        self,
        data: Any,
        size: tuple[int, int],
        mode: str,
        *,
        dtype: str = "float32",
        threads: int | None = None,
        out: np.ndarray | None = None,
    ) -> tuple[np.ndarray, npt.NDArray[np.int64], list[int]] | None: ...
    def frames_pixel_values(
        self,
        frames: list[Any],
        resized: tuple[int, int],
        padded: tuple[int, int],
        *,
        bfloat16: bool = False,
        threads: int | None = None,
    ) -> np.ndarray: ...

def read_header(data: bytes) -> tuple[str, int, int, int]: ...
def decode_png(
    data: Any,
    mode: str,
    *,
    key: tuple[int, int, int] | None = None,
    alphas: bytes | None = None,
    composite: bool = True,
    transpose: int | None = None,
) -> npt.NDArray[np.uint8] | None: ...
def decode_jpeg(
    data: Any,
    size: tuple[int, int],
    mode: str,
    *,
    transpose: int | None = None,
    threads: int | None = None,
    split: int | None = None,
) -> npt.NDArray[np.uint8] | None: ...
def same_contents(fd: int, data: Any) -> bool: ...
def resize_bicubic(
    array: npt.NDArray[np.uint8],
    width: int,
    height: int,
    resize_compat: str = "pillow13",
    threads: int | None = None,
    backend: str = "pil",
    filter: str = "bicubic",
) -> npt.NDArray[np.uint8]: ...
def fingerprint_bytes(data: Any) -> str: ...
def fingerprint_file(path: str | os.PathLike[str]) -> str: ...
def hash_chunks(chunks: list[Any]) -> str: ...
def pixel_fingerprint(mode: str, width: int, height: int, pixels: Any) -> str: ...
def encode_png(
    mode: str,
    width: int,
    height: int,
    data: Any,
    palette: bytes | None = None,
    trns: bytes | None = None,
) -> bytes: ...
