"""``speciarl eval predict``: answers from a base model (plus an optional LoRA adapter) with vLLM offline.

Needs the ``[gpu]`` extra; everything up to the ``vllm`` call (reading the
dataset, building requests, resuming) runs without it. The output is a
predictions JSONL (see :mod:`~speciarl_verl.evaluation.records`) plus a
``<out>.settings.json`` sidecar: a later run with the same ``--out`` resumes,
skipping images that already have all their answers, and refuses other settings.

Images reach vLLM as verl's agent loop hands them to the model in training: resized by
``qwen_vl_utils`` with each row's own ``min_pixels`` / ``max_pixels`` and the patch size of the
model's processor (see :func:`~speciarl_verl.evaluation.prediction_requests.model_image`).
``limit_mm_per_prompt`` is the largest image count of any row to answer.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speciarl_verl.core.answer_parsing import PARSE_MODES, ParseMode
from speciarl_verl.evaluation.prediction_requests import (
    DEFAULT_IMAGE_PATCH_SIZE,
    DecodingSettings,
    PredictionRequest,
    chat_messages,
    limit_mm_per_prompt,
    prediction_rows,
    request_from_row,
)
from speciarl_verl.evaluation.records import load_predictions
from speciarl_verl.jsonl_io import JsonlAppender, drop_torn_tail, read_jsonl, write_atomically

__all__ = [
    "MissingGpuExtraError",
    "PredictConfig",
    "completed_samples",
    "image_patch_size",
    "lora_rank",
    "pending_requests",
    "read_requests",
    "run_predictions",
    "vllm_installed",
]

#: How images are prepared (part of a run's identity: outputs of another preparation are not resumed).
IMAGE_PREPARATION = "qwen_vl_utils.fetch_image, per-image min_pixels/max_pixels"

#: Generation engines: vLLM offline, or transformers ``generate`` (:mod:`.hf_predictor`).
BACKENDS = ("vllm", "hf")

#: LoRA ranks vLLM accepts for ``max_lora_rank``.
_VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class MissingGpuExtraError(RuntimeError):
    """vLLM is not installed."""


@dataclass(frozen=True)
class PredictConfig:
    """One prediction run.

    ``batch_size`` is the number of images per ``LLM.chat`` (or ``generate``) call (each yields
    ``decoding.n`` answers). ``prompt_name`` swaps the dataset's instruction for
    a registered policy prompt. ``engine_args`` go to ``vllm.LLM`` as given.
    ``parse_mode`` fills each row's ``answer``; it is not part of :meth:`identity`
    (each row records its own mode, and the judge parses again in the mode it is asked for).
    ``backend`` is part of it: the rows of two engines are never mixed in one file.
    """

    data: tuple[Path, ...]
    model: str
    out: Path
    adapter: Path | None = None
    decoding: DecodingSettings = field(default_factory=DecodingSettings.greedy)
    prompt_name: str | None = None
    batch_size: int = 256
    limit: int | None = None
    max_answer_words: int | None = None
    parse_mode: ParseMode = "first"
    seed: int = 0
    engine_args: Mapping[str, Any] = field(default_factory=dict)
    backend: str = "vllm"

    def __post_init__(self) -> None:
        if not self.data:
            raise ValueError("no dataset file given")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.parse_mode not in PARSE_MODES:
            raise ValueError(f"parse_mode must be one of {', '.join(PARSE_MODES)}, got {self.parse_mode!r}")

    def identity(self) -> dict[str, Any]:
        """What must match for a run to resume another one's output."""
        return {
            "model": self.model,
            "adapter": None if self.adapter is None else str(self.adapter),
            "decoding": self.decoding.to_json(),
            "prompt_name": self.prompt_name,
            "max_answer_words": self.max_answer_words,
            "seed": self.seed,
            "images": IMAGE_PREPARATION,
            "backend": self.backend,
        }


def settings_path(out: Path) -> Path:
    return out.with_name(out.name + ".settings.json")


def read_requests(paths: Sequence[Path], instruction: str | None = None, rows_per_batch: int = 64):
    """Yield a :class:`PredictionRequest` for every row of the parquet files, refusing repeated sample ids."""
    import pyarrow.parquet as pq

    seen: dict[str, str] = {}
    for path in paths:
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows_per_batch):
            for row in batch.to_pylist():
                where = f"{path}:row {number}"
                request = request_from_row(row, where, instruction)
                if request.sample_id in seen:
                    raise ValueError(f"{where}: sample id {request.sample_id!r} repeats {seen[request.sample_id]}")
                seen[request.sample_id] = where
                number += 1
                yield request


def completed_samples(out: Path, n: int) -> set[str]:
    """Sample ids that already have answers 0..n-1 in ``out``; drops partial samples from the file.

    A sample is written in one go, so a partial one can only be a torn write; its
    lines are removed (atomically) and it is generated again.
    """
    if not out.exists():
        return set()
    drop_torn_tail(out)
    indices: dict[str, set[int]] = {}
    for record in load_predictions(out):
        indices.setdefault(record.sample_id, set()).add(record.prediction_index)
    full = {sample for sample, have in indices.items() if have == set(range(n))}
    if len(full) != len(indices):
        kept = [json.dumps(row, ensure_ascii=False) for _, row in read_jsonl(out) if row["sample_id"] in full]
        write_atomically(out, "".join(line + "\n" for line in kept))
    return full


def pending_requests(config: PredictConfig, instruction: str | None = None) -> Iterator[PredictionRequest]:
    """Requests still to generate for ``config`` (resuming its ``out``), at most ``limit`` rows read."""
    _check_settings(config)
    done = completed_samples(config.out, config.decoding.n)
    for number, request in enumerate(read_requests(config.data, instruction)):
        if config.limit is not None and number >= config.limit:
            return
        if request.sample_id not in done:
            yield request


def _check_settings(config: PredictConfig) -> None:
    path = settings_path(config.out)
    wanted = config.identity()
    if not config.out.exists() or not config.out.stat().st_size:
        return  # nothing to resume: a stale sidecar is simply rewritten
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != wanted:
            raise ValueError(
                f"{config.out} was written with other settings ({path}: {stored}); "
                f"this run asks for {wanted}. Use another --out, or the same settings to resume."
            )
    else:
        raise ValueError(f"{config.out} exists without {path.name}; refusing to append to a file of unknown origin")


def lora_rank(adapter: Path) -> int:
    """The ``max_lora_rank`` to give vLLM: the adapter's ``r``, rounded up to a rank vLLM supports."""
    config_path = adapter / "adapter_config.json"
    if not config_path.exists():
        raise ValueError(f"{adapter}: no adapter_config.json (is it a PEFT LoRA adapter folder?)")
    rank = json.loads(config_path.read_text(encoding="utf-8")).get("r")
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"{config_path}: 'r' must be a positive integer, got {rank!r}")
    for supported in _VLLM_LORA_RANKS:
        if rank <= supported:
            return supported
    raise ValueError(f"{config_path}: rank {rank} exceeds the largest rank vLLM supports ({_VLLM_LORA_RANKS[-1]})")


def image_patch_size(model: str) -> int:
    """The patch size verl's agent loop resizes images with: the model processor's
    ``image_processor.patch_size``, 14 when it has none."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model, trust_remote_code=True)
    size = getattr(getattr(processor, "image_processor", None), "patch_size", None)
    return DEFAULT_IMAGE_PATCH_SIZE if size is None else int(size)


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _require_vllm() -> None:
    if not vllm_installed():
        raise MissingGpuExtraError(
            "--backend vllm needs the [gpu] extra: vLLM is not installed (pip install 'speciarl-verl[gpu]' on a "
            "machine with a GPU); --backend hf predicts with transformers generate instead. Predictions made any "
            "other way can be written as JSONL (keys: sample_id, data_source, ground_truth, prediction_index, "
            "response) and scored with `speciarl eval judge`."
        )


def _instruction(prompt_name: str | None) -> str | None:
    if prompt_name is None:
        return None
    from speciarl_verl.prompts import get_policy_prompt

    return get_policy_prompt(prompt_name).text


def _requests_among(paths: Sequence[Path], instruction: str | None, wanted: set[str]) -> Iterator[PredictionRequest]:
    """The second pass: the requests of the ``wanted`` sample ids, in dataset order."""
    left = len(wanted)
    for request in read_requests(paths, instruction):
        if request.sample_id in wanted:
            yield request
            left -= 1
            if not left:
                return


def _chunks(requests: Iterator[PredictionRequest], size: int) -> Iterator[list[PredictionRequest]]:
    chunk: list[PredictionRequest] = []
    for request in requests:
        chunk.append(request)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_predictions(config: PredictConfig, progress: bool = True) -> int:
    """Generate and append the missing answers; returns how many images were answered in this run."""
    _require_vllm()
    from vllm import LLM, SamplingParams

    instruction = _instruction(config.prompt_name)
    # a first pass over the rows to answer: which they are, and the most images any one of them has
    image_counts = {request.sample_id: len(request.images) for request in pending_requests(config, instruction)}
    write_atomically(settings_path(config.out), json.dumps(config.identity(), indent=2) + "\n")
    if not image_counts:
        return 0

    patch_size = image_patch_size(config.model)
    engine: dict[str, Any] = {
        "model": config.model,
        "trust_remote_code": True,
        "seed": config.seed,
        "limit_mm_per_prompt": limit_mm_per_prompt(image_counts.values()),
    }
    lora_request = None
    if config.adapter is not None:
        from vllm.lora.request import LoRARequest

        engine.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank(config.adapter))
        lora_request = LoRARequest("adapter", 1, str(config.adapter))
    engine.update(config.engine_args)
    llm = LLM(**engine)
    sampling = SamplingParams(**config.decoding.sampling_kwargs())

    answered = 0
    with JsonlAppender(config.out) as sink:
        for chunk in _chunks(_requests_among(config.data, instruction, set(image_counts)), config.batch_size):
            outputs = llm.chat(
                [chat_messages(r, patch_size) for r in chunk],
                sampling_params=sampling,
                lora_request=lora_request,
                use_tqdm=progress,
            )
            if len(outputs) != len(chunk):
                raise RuntimeError(f"vLLM returned {len(outputs)} results for {len(chunk)} requests")
            for request, output in zip(chunk, outputs, strict=True):
                texts = [completion.text for completion in output.outputs]
                if len(texts) != config.decoding.n:
                    raise RuntimeError(f"{request.sample_id}: expected {config.decoding.n} answers, got {len(texts)}")
                sink.write_many(prediction_rows(request, texts, config.max_answer_words, config.parse_mode))
            sink.flush()
            answered += len(chunk)
    return answered
