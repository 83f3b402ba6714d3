"""``speciarl eval predict --backend hf``: answers with transformers ``generate``, on a CPU or a GPU without vLLM.

The same run as the vLLM backend (:mod:`~speciarl_verl.evaluation.vllm_predictor`): the same
requests, resume rule and settings sidecar, and the same prompt: the messages are
:func:`~speciarl_verl.evaluation.prediction_requests.chat_messages` of each request (the image
resized as verl's agent loop resizes it), rendered by the model processor's chat template with the
images handed to the processor as the pixels vLLM would receive. Each batch of images is one
left-padded ``generate`` call: greedy, or best-of-n (``num_return_sequences``, ``top_k`` off as in
vLLM). Sampling is seeded per batch from ``--seed`` and the batch's first sample id, so the same
settings (batch size included) give the same rows; the two backends' samplers differ, so their
sampled rows do not match each other. A LoRA adapter is merged into the weights in memory (PEFT).
On a CPU the weights are computed in float32 (verl's merger saves bfloat16).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Sequence
from typing import Any

from speciarl_verl.evaluation.prediction_requests import PredictionRequest, chat_messages, prediction_rows
from speciarl_verl.evaluation.vllm_predictor import (
    PredictConfig,
    _chunks,
    _instruction,
    _requests_among,
    image_patch_size,
    pending_requests,
    settings_path,
)
from speciarl_verl.jsonl_io import JsonlAppender, write_atomically

__all__ = ["batch_seed", "hf_inputs", "load_model", "run_hf_predictions"]


def batch_seed(seed: int, first_sample_id: str) -> int:
    """The torch seed of one batch: stable across runs and machines.

    >>> batch_seed(0, "shapes/1") == batch_seed(0, "shapes/1") != batch_seed(1, "shapes/1")
    True
    """
    digest = hashlib.sha256(f"{seed}\0{first_sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _decode_data_url(url: str):
    from PIL import Image

    data = base64.b64decode(url.split(",", 1)[1])
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def hf_inputs(request: PredictionRequest, patch_size: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """The request's messages for a transformers chat template, and its images in order: the
    messages vLLM gets (:func:`chat_messages`), each ``image_url`` block a ``{"type": "image"}``
    placeholder and its (lossless PNG) pixels decoded back into a Pillow image."""
    images = []
    messages = []
    for message in chat_messages(request, patch_size):
        content = []
        for block in message["content"]:
            if block["type"] == "image_url":
                images.append(_decode_data_url(block["image_url"]["url"]))
                content.append({"type": "image"})
            else:
                content.append(block)
        messages.append({"role": message["role"], "content": content})
    return messages, images


def _device(requested: str | None) -> str:
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(model: str, adapter=None, device: str | None = None):
    """``(model, processor)``: the Hugging Face model at ``model`` with the LoRA ``adapter`` merged in,
    in evaluation mode on ``device`` (default: CUDA when available, else the CPU in float32)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

    device = _device(device)
    try:
        config = AutoConfig.from_pretrained(model, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(model, trust_remote_code=True)
    except OSError as error:
        raise ValueError(f"--model {model}: cannot load a Hugging Face model from it ({error})") from error
    causal = any(name.endswith("ForCausalLM") for name in config.architectures or ())
    auto = AutoModelForCausalLM if causal else AutoModelForImageTextToText
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    network = auto.from_pretrained(model, dtype=dtype, trust_remote_code=True)
    if adapter is not None:
        import warnings

        from peft import PeftModel

        with warnings.catch_warnings():
            # verl's merger lists target modules by name (e.g. mlp.up_proj), which PEFT also finds in the vision
            # tower that training left without LoRA: those get B = 0 (PEFT's init) and merge as nothing
            warnings.filterwarnings("ignore", message="Found missing adapter keys")
            network = PeftModel.from_pretrained(network, str(adapter)).merge_and_unload()
    network.to(device).eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return network, processor


def _generate_kwargs(config: PredictConfig) -> dict[str, Any]:
    decoding = config.decoding
    kwargs: dict[str, Any] = {"max_new_tokens": decoding.max_new_tokens, "num_return_sequences": decoding.n}
    if decoding.temperature == 0:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=decoding.temperature, top_p=decoding.top_p, top_k=0)
    return kwargs


def generate_texts(network, processor, chunk: Sequence[PredictionRequest], config: PredictConfig, patch_size: int):
    """``decoding.n`` generated texts per request of ``chunk``, in request order."""
    import torch

    texts, images = [], []
    for request in chunk:
        messages, request_images = hf_inputs(request, patch_size)
        texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        images.extend(request_images)
    inputs = processor(text=texts, images=images or None, padding=True, return_tensors="pt").to(network.device)
    torch.manual_seed(batch_seed(config.seed, chunk[0].sample_id))
    with torch.inference_mode():
        output = network.generate(**inputs, **_generate_kwargs(config))
    answers = getattr(processor, "tokenizer", processor).batch_decode(
        output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    n = config.decoding.n
    return [answers[i * n : (i + 1) * n] for i in range(len(chunk))]


def run_hf_predictions(config: PredictConfig, progress: bool = True, device: str | None = None) -> int:
    """Generate and append the missing answers with transformers; returns how many images were answered."""
    from tqdm import tqdm

    instruction = _instruction(config.prompt_name)
    pending = {request.sample_id for request in pending_requests(config, instruction)}
    write_atomically(settings_path(config.out), json.dumps(config.identity(), indent=2) + "\n")
    if not pending:
        return 0
    network, processor = load_model(config.model, config.adapter, device)
    patch_size = image_patch_size(config.model)
    answered = 0
    bar = tqdm(total=len(pending), desc="images", unit="img", disable=not progress)
    with JsonlAppender(config.out) as sink:
        for chunk in _chunks(_requests_among(config.data, instruction, pending), config.batch_size):
            for request, answers in zip(
                chunk, generate_texts(network, processor, chunk, config, patch_size), strict=True
            ):
                sink.write_many(prediction_rows(request, answers, config.max_answer_words, config.parse_mode))
            sink.flush()
            answered += len(chunk)
            bar.update(len(chunk))
    bar.close()
    return answered
