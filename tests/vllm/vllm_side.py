"""Runs inside the vLLM environment (`make vllm-env`), not rawmm's. Four commands:

python vllm_side.py IMAGES.npz OUT_PREFIX FAMILY...
    Builds a tiny Qwen-VL model folder (config, processor config, a small byte-level BPE
    tokenizer), creates vLLM's own multimodal processor for it with its defaults (so
    `mm_device_do_normalize` is on for Qwen-VL), runs the images through `processor.apply`,
    and normalises the raw patches with vLLM's in-model `FusedMMInputNorm` (its CPU path).
    FAMILY: qwen2_vl, qwen2_5_vl or qwen3_vl, each written to OUT_PREFIX<family>.npz.
    IMAGES.npz holds uint8 RGB arrays image0, image1...
python vllm_side.py model FAMILY DIR
    Writes that folder to DIR with random weights (seeded), for vLLM's server to serve.
python vllm_side.py timing DIR OUT.npz REPEAT IMAGE...
    vLLM's processor for the model in DIR (after its plugins load, so RAWMM_VLLM_PROCESSORS
    applies) on each image file: the patches (raw{i}, grid{i}), the median seconds of
    `processor.apply` per image over REPEAT calls, with a uuid (seconds{i}), and of the image processor's own
    call within it (image_seconds{i}), and the module of the image processor class vLLM uses
    (image_processor).
python vllm_side.py patches DIR OUT.npz URL...
    The patches vLLM's processor for the model in DIR builds from each URL fetched through
    the media connector named by VLLM_MEDIA_CONNECTOR (rawmm's: refs from RAWMM_STORE):
    raw{i} (uint8) and grid{i}.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

import numpy as np

SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    # What renderers' Qwen3-VL and Qwen3.5 renderers look up.
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] in ('image', 'image_url') %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# The hub preprocessor configs (image part) of each family.
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
QWEN2 = dict(patch_size=14, image_mean=CLIP_MEAN, image_std=CLIP_STD, min_pixels=3136, max_pixels=12845056)
QWEN3 = dict(
    patch_size=16,
    image_mean=[0.5] * 3,
    image_std=[0.5] * 3,
    size={"shortest_edge": 65536, "longest_edge": 16777216},
)
PROCESSORS = {"qwen2_vl": QWEN2, "qwen2_5_vl": QWEN2, "qwen3_vl": QWEN3}


def tokenizer(folder: Path) -> dict[str, int]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.save_pretrained(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "Qwen2TokenizerFast"
    # Qwen-VL's chat template, reduced to text and images (the chat-completions API needs one).
    config["chat_template"] = CHAT_TEMPLATE
    config["unk_token"] = (
        None  # as Qwen's own: transformers 5.24's Qwen2Tokenizer defaults it to <|endoftext|>
    )
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return {s: fast.convert_tokens_to_ids(s) for s in SPECIALS} | {"vocab_size": len(fast)}


def model_folder(family: str, folder: Path) -> dict[str, int]:
    ids = tokenizer(folder)
    vocab = ids["vocab_size"]
    text = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=16384,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]} if family != "qwen3_vl" else None,
        rope_theta=10000.0,
        torch_dtype="float32",
        eos_token_id=ids["<|im_end|>"],
    )
    common = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        torch_dtype="float32",
    )
    p = PROCESSORS[family]["patch_size"]
    small = dict(depth=1, hidden_size=32, intermediate_size=32, num_heads=2, out_hidden_size=64, patch_size=p)
    if family == "qwen2_vl":
        arch = "Qwen2VLForConditionalGeneration"
        vision = dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=p)
        proc, image_proc = "Qwen2VLProcessor", "Qwen2VLImageProcessor"
    elif family == "qwen2_5_vl":
        arch = "Qwen2_5_VLForConditionalGeneration"
        vision = small | dict(fullatt_block_indexes=[0], window_size=112)
        proc, image_proc = "Qwen2_5_VLProcessor", "Qwen2VLImageProcessor"
    else:
        arch = "Qwen3VLForConditionalGeneration"
        mrope = {"rope_type": "default", "mrope_section": [4, 6, 6], "mrope_interleaved": True}
        text |= dict(head_dim=32, rope_scaling=mrope)
        vision = small | dict(num_position_embeddings=64, deepstack_visual_indexes=[0])
        proc, image_proc = "Qwen3VLProcessor", "Qwen2VLImageProcessorFast"
    config = dict(architectures=[arch], model_type=family, text_config=text, vision_config=vision, **common)
    if family != "qwen3_vl":
        config |= {k: v for k, v in text.items() if k != "torch_dtype"}
    (folder / "config.json").write_text(json.dumps(config))
    pre = dict(
        image_processor_type=image_proc,
        processor_class=proc,
        do_resize=True,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        do_convert_rgb=True,
        merge_size=2,
        temporal_patch_size=2,
        **{k: v for k, v in PROCESSORS[family].items()},
    )
    (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    return ids


def weights(folder: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32)
    with torch.no_grad():  # larger than the default init, so that images move the logprobs visibly
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    model.save_pretrained(folder)


def patches(folder: str, out: str, urls: list[str]) -> None:
    import vllm.envs as envs
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.multimodal.media import MEDIA_CONNECTOR_REGISTRY
    from vllm.multimodal.processing.context import TimingContext
    from vllm.multimodal.processing.inputs import ProcessorInputs
    from vllm.plugins import load_general_plugins

    load_general_plugins()
    config = ModelConfig(model=folder, tokenizer=folder, dtype="float32", max_model_len=4096)
    processor = MULTIMODAL_REGISTRY.create_processor(config)
    tokenizer = processor.info.get_tokenizer()

    class Parser:  # what builds a connector in the server: an owner of the served model's config
        model_config = config

        def connector(self):
            return MEDIA_CONNECTOR_REGISTRY.load(envs.VLLM_MEDIA_CONNECTOR)

    connector = Parser().connector()
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    result = {}
    for i, url in enumerate(urls):
        image = connector.fetch_image(url)
        inputs = ProcessorInputs(prompt=[pad], mm_data_items=processor.info.parse_mm_data({"image": [image]}))
        kw = processor.apply(inputs, TimingContext())["mm_kwargs"]["image"][0]
        result[f"raw{i}"] = kw["pixel_values"].data.numpy()
        result[f"grid{i}"] = kw["image_grid_thw"].data.numpy()
    np.savez(out, **result)


def timing(folder: str, out: str, repeat: int, paths: list[str]) -> None:
    import statistics
    import time

    from PIL import Image
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.multimodal.processing.context import TimingContext
    from vllm.multimodal.processing.inputs import ProcessorInputs
    from vllm.plugins import load_general_plugins

    load_general_plugins()
    config = ModelConfig(model=folder, tokenizer=folder, dtype="float32", max_model_len=16384)
    processor = MULTIMODAL_REGISTRY.create_processor(config)
    pad = processor.info.get_tokenizer().convert_tokens_to_ids("<|image_pad|>")
    result: dict[str, object] = {
        "image_processor": type(processor.info.get_hf_processor().image_processor).__module__
    }
    for i, path in enumerate(paths):
        image = Image.open(path).convert("RGB")
        times = []
        for _ in range(repeat + 1):  # the first call is a warm-up
            items = processor.info.parse_mm_data({"image": [image]})
            # With a uuid, as rawmm's client sends: vLLM then does not hash the pixels.
            inputs = ProcessorInputs(prompt=[pad], mm_data_items=items, mm_uuid_items={"image": ["timing"]})
            t0 = time.perf_counter()
            kw = processor.apply(inputs, TimingContext())["mm_kwargs"]["image"][0]
            times.append(time.perf_counter() - t0)
        result[f"raw{i}"] = kw["pixel_values"].data.numpy()
        result[f"grid{i}"] = kw["image_grid_thw"].data.numpy()
        result[f"seconds{i}"] = statistics.median(times[1:])
        # The image processor's own call within that, with the options vLLM passes.
        image_processor = processor.info.get_hf_processor().image_processor
        options = config.multimodal_config.merge_mm_processor_kwargs({})
        times = []
        for _ in range(repeat + 1):
            t0 = time.perf_counter()
            image_processor(images=[image], return_tensors="pt", **options)
            times.append(time.perf_counter() - t0)
        result[f"image_seconds{i}"] = statistics.median(times[1:])
    np.savez(out, **result)


def main() -> None:
    if sys.argv[1] == "timing":
        timing(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:])
        return
    if sys.argv[1] == "model":
        folder = Path(sys.argv[3])
        folder.mkdir(parents=True, exist_ok=True)
        model_folder(sys.argv[2], folder)
        weights(folder)
        return
    if sys.argv[1] == "patches":
        patches(sys.argv[2], sys.argv[3], sys.argv[4:])
        return
    images_path, out_prefix, families = sys.argv[1], sys.argv[2], sys.argv[3:]
    import torch
    from PIL import Image
    from vllm.config import ModelConfig, VllmConfig, set_current_vllm_config
    from vllm.model_executor.layers.fusion.mm_input_norm import FusedMMInputNorm, build_mm_input_norm
    from vllm.multimodal import MULTIMODAL_REGISTRY
    from vllm.multimodal.processing.context import TimingContext
    from vllm.multimodal.processing.inputs import ProcessorInputs

    arrays = dict(np.load(images_path))
    images = [Image.fromarray(arrays[f"image{i}"]) for i in range(len(arrays))]
    for family in families:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            ids = model_folder(family, folder)
            config = ModelConfig(
                model=str(folder), tokenizer=str(folder), dtype="float32", max_model_len=4096
            )
            assert config.multimodal_config.mm_device_do_normalize, "vLLM's default is on for Qwen-VL"
            processor = MULTIMODAL_REGISTRY.create_processor(config)
            # The model's own input norm, built as the model builds it, dispatched as on this CPU.
            with set_current_vllm_config(VllmConfig(model_config=config)):
                norm = build_mm_input_norm(config)
            assert isinstance(norm, FusedMMInputNorm), type(norm)
            out = {}
            for i, im in enumerate(images):
                prompt = [ids["<|vision_start|>"], ids["<|image_pad|>"], ids["<|vision_end|>"]]
                inputs = ProcessorInputs(
                    prompt=prompt, mm_data_items=processor.info.parse_mm_data({"image": [im]})
                )
                kw = processor.apply(inputs, TimingContext())["mm_kwargs"]["image"][0]
                pixels = kw["pixel_values"].data
                out[f"raw{i}"] = pixels.numpy()
                out[f"grid{i}"] = kw["image_grid_thw"].data.numpy()
                out[f"normalized{i}"] = norm(pixels, torch.float32).numpy()
        np.savez(f"{out_prefix}{family}.npz", **out)


if __name__ == "__main__":
    main()
