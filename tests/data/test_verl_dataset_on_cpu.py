"""Built parquet files through verl 0.9.1's own dataset, agent-loop image path and Qwen2.5-VL processor."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet

MIN_PIXELS, MAX_PIXELS = 28 * 28 * 8, 28 * 28 * 12


@pytest.fixture(scope="module")
def verl_model(tiny_vl_dir):
    from verl.utils import hf_processor, hf_tokenizer

    return hf_tokenizer(str(tiny_vl_dir)), hf_processor(str(tiny_vl_dir))


def data_config(tmp_path, **overrides):
    values = {
        "prompt_key": "prompt",
        "image_key": "images",
        "max_prompt_length": 1024,
        "filter_overlong_prompts": True,  # runs the processor on every row at load time
        # in-process: datasets forks a pool even for one worker, and a fork after torch has started its
        # thread pool can deadlock the child on this 2-core machine
        "filter_overlong_prompts_workers": None,
        "truncation": "error",
        "cache_dir": str(tmp_path / "verl-cache"),
    }
    return OmegaConf.create({**values, **overrides})


def large_jpeg(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(width).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def process(dataset_cls, item, config):
    return asyncio.run(dataset_cls.process_multi_modal_info(item["raw_prompt"], image_patch_size=14, config=config))


def test_mixed_build_through_rlhf_dataset_agent_loop_path_and_the_model(
    cub_root, pets_root, cars_root, tmp_path, verl_model, tiny_vl_dir
):
    import torch
    from transformers import AutoModelForImageTextToText
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    tokenizer, processor = verl_model
    specs = [
        SourceSpec("cub200", cub_root, "train"),
        SourceSpec("oxford_pets", pets_root, "test"),  # holds a PNG with alpha inside a .jpg
        SourceSpec("stanford_cars", cars_root, "test"),
    ]
    out = build_parquet(specs, tmp_path / "mixed.parquet", BuildOptions(progress=False)).parquet
    config = data_config(tmp_path)
    dataset = create_rl_dataset([str(out)], config, tokenizer, processor)
    assert type(dataset) is RLHFDataset
    assert len(dataset) == 8  # the overlong filter dropped nothing (it also drops rows that fail to process)

    items = [dataset[i] for i in range(len(dataset))]
    assert [item["index"] for item in items] == list(range(8))
    pets = items[3]
    assert pets["data_source"] == "oxford_pets" and pets["extra_info"]["parents"] == ["cat"]
    assert items[6]["extra_info"]["parents"] == ["Ram C/V", "Ram"]
    batch = collate_fn(items)
    assert list(batch["data_source"][:4]) == ["cub200", "cub200", "cub200", "oxford_pets"]
    assert batch["reward_model"][4]["ground_truth"] == "american bulldog"

    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen2_5_vl", processor=processor)
    model = AutoModelForImageTextToText.from_pretrained(str(tiny_vl_dir))
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for item in (items[0], pets, items[6]):
        content = item["raw_prompt"][0]["content"]
        assert [part["type"] for part in content] == ["image", "text"]
        images, videos, audios = process(RLHFDataset, item, config)
        assert len(images) == 1 and videos is None and audios is None and images[0].mode == "RGB"
        mm_inputs: dict = {}
        prompt_ids = builder.build_initial_tokens(item["raw_prompt"], images=images, mm_inputs_out=mm_inputs)
        grid = mm_inputs["image_grid_thw"]
        assert mm_inputs["pixel_values"].shape == (int(grid.prod()), 3 * 2 * 14 * 14)
        assert prompt_ids.count(image_pad) == int(grid.prod()) // 4  # 2 x 2 patches merge into one token
        with torch.no_grad():
            logits = model(
                input_ids=torch.tensor([prompt_ids]),
                pixel_values=mm_inputs["pixel_values"],
                image_grid_thw=grid,
            ).logits
        assert logits.shape == (1, len(prompt_ids), model.config.text_config.vocab_size)
        assert torch.isfinite(logits).all()


def test_per_image_min_and_max_pixels_are_honoured(cub_root, tmp_path, verl_model):
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer import build_multimodal_processor_inputs

    big = cub_root / "CUB_200_2011" / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0082_524.jpg"
    big.write_bytes(large_jpeg(600, 400))  # image 3; images 2 and 5 stay 40 x 30
    tokenizer, processor = verl_model
    config = data_config(tmp_path)
    sizes = {}
    for name, options in (
        ("bounded", BuildOptions(progress=False, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)),
        ("free", BuildOptions(progress=False)),
    ):
        out = build_parquet(SourceSpec("cub200", cub_root, "train"), tmp_path / f"{name}.parquet", options).parquet
        dataset = create_rl_dataset([str(out)], config, tokenizer, processor)
        sizes[name] = {}
        for position in range(len(dataset)):
            item = dataset[position]
            (image,), _, _ = process(RLHFDataset, item, config)
            sizes[name][item["extra_info"]["image_id"]] = image.size
            # the trainer-side processor call (the one verl's overlong filter makes) accepts the resized image
            text = processor.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)
            inputs = build_multimodal_processor_inputs(processor, text=[text], images=[image])
            assert inputs["image_grid_thw"].shape == (1, 3)
    for image_id, (width, height) in sizes["bounded"].items():
        assert MIN_PIXELS <= width * height <= MAX_PIXELS, (image_id, width, height)
        assert width % 28 == 0 and height % 28 == 0
    # without bounds qwen_vl_utils keeps the large image near its own size and the small ones small
    assert sizes["free"]["3"][0] * sizes["free"]["3"][1] > MAX_PIXELS
    assert sizes["free"]["2"][0] * sizes["free"]["2"][1] < MIN_PIXELS


def test_tiny_checkpoint_loads_with_transformers_auto_classes(tiny_vl_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from speciarl_verl.offline_fixtures.tiny_qwen_vl import TINY_MAX_PIXELS, TINY_MIN_PIXELS

    processor = AutoProcessor.from_pretrained(str(tiny_vl_dir))
    model = AutoModelForImageTextToText.from_pretrained(str(tiny_vl_dir))
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    size = processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (TINY_MIN_PIXELS, TINY_MAX_PIXELS)
    assert sum(p.numel() for p in model.parameters()) < 500_000
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
