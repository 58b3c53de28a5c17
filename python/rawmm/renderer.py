"""What a renderer needs to emit descriptors instead of pixels (refs.md §5.1): placeholder
token ids and counts per image, the item envelope and the ref.

With the `renderers` package: pass `GridProcessor(layout)` as `processor=` to a renderer
(`Qwen3VLRenderer`, `Qwen35Renderer`, or `KimiK25Renderer` with a Kimi layout); it supplies
the grid and token count from the image size alone (oriented by its EXIF tag when the layout
applies EXIF, as `describe` and vLLM do), so the prompt's placeholders are exact while no pixel
is processed. Then
`attach_refs(rendered.multi_modal_data, messages, adapter, store)` swaps each image's
processor output for its envelope, and the renderer's pixel hash for rawmm's `mm_hash`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .adapters import Adapter, Descriptor, _image_parts, _part_source
from .errors import LayoutError, RefFormatError
from .families import Tokenizer, family
from .layout import Layout
from .pixels import oriented_size
from .store import AssetStore

__all__ = ["GridProcessor", "RendererImage", "attach_refs", "describe_for_renderer"]


@dataclass(frozen=True, slots=True)
class RendererImage:
    """Everything a renderer emits for one image."""

    descriptor: Descriptor
    placeholder_token_ids: list[int]
    placeholder_length: int
    item: dict[str, Any]
    ref: str


def describe_for_renderer(
    adapter: Adapter,
    source: Any,
    *,
    store: AssetStore | None = None,
    tokenizer: Tokenizer | None = None,
    run_id: str | None = None,
) -> RendererImage:
    d = adapter.describe(source, store=store)
    layout = adapter.layout
    return RendererImage(
        descriptor=d,
        placeholder_token_ids=layout.placeholder_token_ids(d.image_layout, tokenizer=tokenizer),
        placeholder_length=layout.placeholder_length(d.image_layout),
        item=adapter.item(d),
        ref=adapter.ref(d, run_id=run_id).to_string(),
    )


class _GridImageProcessor:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        k = layout.knobs
        self.patch_size = k["patch_size"]
        self.merge_size = k.get("merge_size", k.get("merge_kernel_size"))
        self.temporal_patch_size = k.get("temporal_patch_size")
        self.image_mean, self.image_std = k["image_mean"], k["image_std"]

    def _layout_of(self, im: Any) -> Any:
        if isinstance(im, Mapping):  # a Kimi media dict
            im = im["image"]
        if isinstance(im, np.ndarray):
            w, h = im.shape[1], im.shape[0]
        elif self.layout.knobs["exif_policy"] == "apply":
            # Renderers hand over the image as stored; `describe`, `materialize` and vLLM's own
            # loader apply its EXIF orientation.
            w, h = oriented_size(im)
        else:
            w, h = im.size
        return self.layout.image(w, h)

    def __call__(self, images: Any, return_tensors: str | None = "np", **_: Any) -> dict[str, Any]:
        images = images if isinstance(images, list | tuple) else [images]
        grids = np.array([list(self._layout_of(im).grid_thw) for im in images], dtype=np.int64)
        # No pixels: the descriptor route never ships them. Every other key is the family
        # processor's (Kimi: `grid_thws`, layout.md §5; Gemma 4: position ids, token counts).
        out = family(self.layout.family).grid_outputs(self.layout, grids)
        out["pixel_values"] = np.zeros((0, 0), np.float32)
        return out

    # Kimi K2.5's interface (what renderers' KimiK25Renderer calls): media dicts in.
    preprocess = __call__

    def media_tokens_calculator(self, media: Any) -> int:
        return int(self._layout_of(media).num_tokens)


class GridProcessor:
    """A `processor=` for renderers that computes grids only (see the module docstring)."""

    def __init__(self, layout: Layout) -> None:
        self.image_processor = _GridImageProcessor(layout)


def attach_refs(
    multi_modal_data: Any,
    messages: Sequence[Mapping[str, Any]],
    adapter: Adapter,
    store: AssetStore | None = None,
    *,
    run_id: str | None = None,
    modality: str = "image",
) -> dict[str, Any]:
    """A new multi_modal_data dict whose items are ref-carrying envelopes, whose hashes are
    rawmm's `mm_hash`, plus `refs` (the `mmraw:v2` strings for the request's kwargs_data) and
    `num_tokens` (each image's token count once expanded).
    Images are matched to the message parts in order; grids and placeholder lengths must agree."""
    get = (
        multi_modal_data.get
        if isinstance(multi_modal_data, Mapping)
        else lambda k: getattr(multi_modal_data, k)
    )
    items = list((get("mm_items") or {}).get(modality, []))
    holders = list((get("mm_placeholders") or {}).get(modality, []))
    parts = _image_parts(messages)
    if not (len(items) == len(holders) == len(parts)):
        raise RefFormatError(
            f"{len(parts)} image parts but {len(items)} items and {len(holders)} placeholders were rendered"
        )
    fm = adapter.feature_modality
    envelopes, hashes, refs, placeholders, tokens = [], [], [], [], []
    for i, (item, holder, part) in enumerate(zip(items, holders, parts, strict=True)):
        d = adapter.describe(_part_source(part), store=store)
        grid = family(adapter.layout.family).rendered_grid(item)
        if grid is not None and grid != d.grid_thw:
            raise LayoutError(
                f"image {i}: rendered grid {list(grid)} differs from the described {list(d.grid_thw)} "
                "(a renderer that ignores EXIF needs a layout with exif_policy='ignore')"
            )
        length = holder["length"] if isinstance(holder, Mapping) else holder.length
        offset = holder["offset"] if isinstance(holder, Mapping) else holder.offset
        if length != adapter.layout.placeholder_length(d.image_layout):
            raise LayoutError(f"image {i}: placeholder length {length} differs from {d.num_tokens} tokens")
        envelopes.append(adapter.item(d))
        hashes.append(d.mm_hash)
        refs.append(adapter.ref(d, run_id=run_id).to_string())
        placeholders.append({"offset": offset, "length": length})
        tokens.append(d.num_tokens)
    return {
        "mm_items": {fm: envelopes},
        "mm_hashes": {fm: hashes},
        "mm_placeholders": {fm: placeholders},
        "refs": {fm: refs},
        "num_tokens": {fm: tokens},
    }
