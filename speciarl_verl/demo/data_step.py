"""Demo step 1: a tiny dataset in CUB-200-2011's real layout -> verl parquet -> verl's dataset and processor.

The images are drawn here (coloured shapes, not birds); everything else is the real path:
our builder writes the parquet, verl 0.9.1's ``RLHFDataset`` reads it, the agent-loop image
path resizes the image and a tiny offline Qwen2.5-VL processor turns the prompt into tokens.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DataStepResult", "run_data_step", "write_tiny_cub"]

# (class id, CUB folder name, image file stems); ids and names follow CUB's classes.txt.
_CLASSES = (
    (1, "001.Black_footed_Albatross", ("Black_Footed_Albatross_0046_18", "Black_Footed_Albatross_0009_34")),
    (2, "002.Laysan_Albatross", ("Laysan_Albatross_0082_524", "Laysan_Albatross_0044_784")),
    (47, "047.American_Goldfinch", ("American_Goldfinch_0062_31921", "American_Goldfinch_0040_32323")),
)


def _picture(seed: int, size: tuple[int, int] = (200, 150)) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (40 + 30 * seed % 200, 120, 200 - 20 * seed % 150))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40 + seed * 3, 40, 150, 110), fill=(230, 220, 60 + 25 * seed % 190))
    draw.line((20, 130, 190, 125), fill=(60, 40, 20), width=4)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def write_tiny_cub(root: str | Path) -> Path:
    """Write ``root/CUB_200_2011`` with 3 classes x 2 JPEGs and CUB's five index files; returns ``root``."""
    base = Path(root) / "CUB_200_2011"
    images, labels, split, classes = [], [], [], []
    image_id = 0
    for class_id, folder, stems in _CLASSES:
        classes.append(f"{class_id} {folder}")
        for position, stem in enumerate(stems):
            image_id += 1
            path = base / "images" / folder / f"{stem}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_picture(image_id))
            images.append(f"{image_id} {folder}/{stem}.jpg")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {1 if position == 0 else 0}")
    for name, rows in (
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
        ("classes.txt", classes),
    ):
        (base / name).write_text("\n".join(rows) + "\n")
    return Path(root)


@dataclass
class DataStepResult:
    parquet: Path
    rows: list[dict]
    prompt_text: str
    image_size: tuple[int, int]
    image_grid: tuple[int, int, int]
    image_tokens: int
    prompt_tokens: int


def run_data_step(work: Path) -> DataStepResult:
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils import hf_processor, hf_tokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet
    from speciarl_verl.offline_fixtures.tiny_qwen_vl import build_tiny_qwen25_vl
    from speciarl_verl.prompts import get_policy_prompt

    root = write_tiny_cub(work / "datasets")
    options = BuildOptions(progress=False, seed=42, prompt="general", min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    report = build_parquet(SourceSpec("cub200", root, "train"), work / "cub200_train_tiny.parquet", options)

    model_dir = build_tiny_qwen25_vl(work / "tiny-qwen25-vl", corpus=[get_policy_prompt("general").text])
    tokenizer, processor = hf_tokenizer(str(model_dir)), hf_processor(str(model_dir))
    config = OmegaConf.create(
        {
            "prompt_key": "prompt",
            "image_key": "images",
            "max_prompt_length": 2048,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": None,
            "truncation": "error",
            "cache_dir": str(work / "verl-cache"),
        }
    )
    dataset = create_rl_dataset([str(report.parquet)], config, tokenizer, processor)
    rows = [dataset[i] for i in range(len(dataset))]
    first = rows[0]
    images, _, _ = asyncio.run(
        RLHFDataset.process_multi_modal_info(first["raw_prompt"], image_patch_size=14, config=config)
    )
    builder = create_continuous_token_builder(tokenizer, hf_model_type="qwen2_5_vl", processor=processor)
    mm_inputs: dict = {}
    prompt_ids = builder.build_initial_tokens(first["raw_prompt"], images=images, mm_inputs_out=mm_inputs)
    grid = tuple(int(x) for x in mm_inputs["image_grid_thw"][0])
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    text = processor.apply_chat_template(first["raw_prompt"], add_generation_prompt=True, tokenize=False)
    return DataStepResult(
        parquet=report.parquet,
        rows=rows,
        prompt_text=text,
        image_size=images[0].size,
        image_grid=grid,  # type: ignore[arg-type]
        image_tokens=prompt_ids.count(image_pad),
        prompt_tokens=len(prompt_ids),
    )
