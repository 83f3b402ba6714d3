"""The tiny policy and the synthetic parquets through verl 0.9.1's own loaders, dataset and agent-loop prompt path."""

from __future__ import annotations

import asyncio
import io

import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.cpu_debug.tiny_policy import encode_prompt
from speciarl_verl.cpu_debug.vision_tokens import mm_token_type_ids


def data_config(tmp_path):
    return OmegaConf.create(
        {
            "prompt_key": "prompt",
            "image_key": "images",
            "max_prompt_length": 256,
            "filter_overlong_prompts": True,  # runs the processor on every row at load time
            "filter_overlong_prompts_workers": None,  # in-process: no fork after torch started its threads
            "truncation": "error",
            "cache_dir": str(tmp_path / "verl-cache"),
        }
    )


@pytest.fixture(scope="module")
def verl_policy(tiny_policy_dir):
    from verl.utils import hf_processor, hf_tokenizer

    return hf_tokenizer(str(tiny_policy_dir)), hf_processor(str(tiny_policy_dir))


@pytest.mark.parametrize("split", ["train", "val", "test_ood"])
def test_synthetic_parquets_load_in_rlhf_dataset_with_the_hierarchy(split, synthetic_parquets, verl_policy, tmp_path):
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    tokenizer, processor = verl_policy
    dataset = create_rl_dataset([str(synthetic_parquets[split])], data_config(tmp_path), tokenizer, processor)
    assert type(dataset) is RLHFDataset
    assert len(dataset) == pq.read_metadata(synthetic_parquets[split]).num_rows
    items = [dataset[i] for i in range(len(dataset))]
    batch = collate_fn(items)
    assert set(batch["data_source"]) == {"synthetic_shapes"}
    for item in items:
        truth = item["reward_model"]["ground_truth"]
        assert list(item["extra_info"]["parents"]) == [truth.split(" ")[1], "shape"]
        assert [part["type"] for part in item["raw_prompt"][0]["content"]] == ["image", "text"]


def test_the_policy_sees_the_prompt_verl_agent_loop_builds_and_answers_it(
    synthetic_parquets, verl_policy, tiny_policy_dir, tmp_path
):
    """The supervision prompt is token for token the agent loop's; sampling from verl's ids gives parseable answers."""
    from transformers import AutoModelForImageTextToText
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    tokenizer, processor = verl_policy
    config = data_config(tmp_path)
    dataset = create_rl_dataset([str(synthetic_parquets["val"])], config, tokenizer, processor)
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen2_5_vl", processor=processor)
    model = AutoModelForImageTextToText.from_pretrained(str(tiny_policy_dir)).eval()
    rows = pq.read_table(synthetic_parquets["val"]).to_pylist()
    answers = []
    for position in range(4):
        item = dataset[position]
        images, _, _ = asyncio.run(
            RLHFDataset.process_multi_modal_info(item["raw_prompt"], image_patch_size=14, config=config)
        )
        mm_inputs: dict = {}
        prompt_ids = builder.build_initial_tokens(item["raw_prompt"], images=images, mm_inputs_out=mm_inputs)
        row = rows[position]
        original = Image.open(io.BytesIO(row["images"][0]["bytes"]))
        ours, pixel_values, grid = encode_prompt(processor, row["prompt"][0]["content"], original)
        assert ours.tolist() == list(prompt_ids)
        assert torch.equal(pixel_values, mm_inputs["pixel_values"]) and torch.equal(grid, mm_inputs["image_grid_thw"])
        torch.manual_seed(position)
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.tensor([prompt_ids] * 4),
                mm_token_type_ids=mm_token_type_ids(
                    torch.tensor([prompt_ids] * 4), processor.image_token_id, processor.video_token_id
                ),
                pixel_values=mm_inputs["pixel_values"].repeat(4, 1),
                image_grid_thw=mm_inputs["image_grid_thw"].repeat(4, 1),
                do_sample=True,
                temperature=1.0,
                max_new_tokens=32,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        answers += [
            parse_answer(text) for text in tokenizer.batch_decode(out[:, len(prompt_ids) :], skip_special_tokens=True)
        ]
    assert sum(a is not None for a in answers) >= 0.8 * len(answers), answers
