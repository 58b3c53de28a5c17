"""GLM-4.1V, GLM-4.5V and GLM-4.6V: `Glm4vImageProcessor` / `Glm46VImageProcessor`
(torchvision) and their `...Pil` twins in transformers 5.24. Qwen2-VL's patches and
normalisation with GLM's own `smart_resize` (a short side scaled up to the factor first; an
image counts as `temporal_patch_size` frames against the pixel bounds). The Rust side is
`rust/core/src/families/glm4v.rs`. Video layouts (`Glm4vVideoProcessor`'s sampling and
timestamped frames) are not supported yet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from .._presets import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ..errors import LayoutError
from ._base import Tokenizer
from .qwen import QwenVL, qwen_knobs, read_image_config

if TYPE_CHECKING:
    from .._core import LayoutCore

# (begin_of_image, image, end_of_image): `Glm4vConfig` / `Glm46VConfig` image token ids.
GLM_IDS = (151339, 151343, 151340)
# preprocessor_config.json `size` of the released checkpoints: {shortest_edge, longest_edge}
# = (12544, 9633792) in zai-org/GLM-4.6V-Flash (Glm46VImageProcessor) and in
# zai-org/AutoGLM-Phone-9B (GLM-4.1V architecture, Glm4vImageProcessor).
GLM_PIXELS = (12544, 9633792)


class Glm4v(QwenVL):
    """Qwen's payload, placeholder length and grid bound (GLM bounds `T·h̄·w̄` by the same
    pixel limits, T ≥ 1, and its short-side scale-up keeps the aspect ratio at most 200); GLM's
    own presets, tokens and configs, and no video yet."""

    name = "glm4v"
    presets: ClassVar[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
        "glm4v": (qwen_knobs(14, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, *GLM_PIXELS), {}),
        "glm46v": (qwen_knobs(14, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, *GLM_PIXELS), {}),
    }
    # GLM-4.5V is `glm4v_moe` and runs `Glm4vImageProcessor`.
    model_types: ClassVar[dict[str, str]] = {"glm4v": "glm4v", "glm4v_moe": "glm4v", "glm46v": "glm46v"}
    processor_types: ClassVar[dict[str, str]] = {
        "Glm4vImageProcessor": "glm4v",
        "Glm4vImageProcessorPil": "glm4v",
        "Glm46VImageProcessor": "glm46v",
        "Glm46VImageProcessorPil": "glm46v",
    }

    def read_config(
        self,
        cfg: dict[str, Any],
        preset: Mapping[str, Any],
        preset_video: Mapping[str, Any],
        video_cfg: Mapping[str, Any] | None,
        backend: str | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # A folder's video config describes the video processor, whose layouts rawmm refuses.
        return read_image_config(cfg, preset, backend), dict(preset_video)

    def video(
        self, core: LayoutCore, model: str, video: Mapping[str, Any], n: int, w: int, h: int, fps: float
    ) -> dict[str, Any]:
        raise LayoutError(f"{model} video layouts are not supported yet")

    def placeholder_text(self, model: str, n: int) -> str:
        return f"<|begin_of_image|>{'<|image|>' * n}<|end_of_image|>"

    def placeholder_token_ids(self, model: str, n: int, tokenizer: Tokenizer | None) -> list[int]:
        begin, image, end = GLM_IDS
        return [begin, *([image] * n), end]

    def image_pad_token_id(self, model: str) -> int:
        return GLM_IDS[1]


GLM4V = Glm4v()
