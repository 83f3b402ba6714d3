"""``hf_cpu``: a CPU rollout backend for verl 0.9.1 built on transformers ``generate``, for debugging recipes.

verl 0.9.1 registers only vLLM, SGLang and TensorRT-LLM rollouts; none of them serves
Qwen2.5-VL on a CPU. This backend fills verl's two rollout slots with CPU code:

- :class:`HFCpuReplica` (``RolloutReplicaRegistry``): started by verl's ``LLMServerManager`` in
  the driver; it launches one :class:`HFCpuServer` Ray actor per replica;
- :class:`HFCpuServerAdapter` (the rollout adapter dict of ``verl/workers/rollout/base.py``):
  built by ``ActorRolloutRefWorker`` inside the FSDP worker; it forwards the actor's weights
  to the server after every update.

The server honours the sampling parameters verl's agent loop sends (temperature, top_p,
top_k, repetition_penalty, max_tokens, logprobs), bans the token ids vLLM bans (vision
placeholders and ids past the tokenizer), rebuilds ``pixel_values`` and ``image_grid_thw``
from the request's images with the model's processor, and returns the sampled tokens'
log-probabilities computed as verl's actor computes them (``log_softmax(logits / T)``).

LoRA: with ``model.lora.merge=true`` verl sends merged weights under the base names; otherwise
it sends the base weights once and the adapters after every update, and the server merges
``W + B·A·scale`` itself. Sleep, wake-up, abort and cache calls are no-ops: there is no
device memory to release.

Selected only with ``actor_rollout_ref.rollout.name=hf_cpu`` in a process where
:mod:`speciarl_verl.cpu_debug.activate` registered it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections import Counter
from typing import Any

import ray
import torch
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutMode, RolloutReplica, TokenOutput
from verl.workers.rollout.utils import ensure_async_iterator, get_vision_placeholder_token_ids

from speciarl_verl.cpu_debug.vision_tokens import mm_token_type_ids

logger = logging.getLogger(__name__)

ROLLOUT_NAME = "hf_cpu"
_PEFT_PREFIX = "base_model.model."


def server_actor_name(replica_rank: int, suffix: str = "") -> str:
    """Ray name of the server actor of one replica; the adapter in the worker finds it by this name."""
    return f"{ROLLOUT_NAME}_server_{replica_rank}{suffix}"


# ---------------------------------------------------------------------------------------------
# weights


def _lora_scale(lora: dict[str, Any]) -> float:
    rank = float(lora["r"])
    alpha = float(lora["lora_alpha"])
    return alpha / rank**0.5 if lora.get("use_rslora") else alpha / rank


def merge_received_weights(
    state: dict[str, torch.Tensor], received: list[tuple[str, torch.Tensor]], lora: dict[str, Any] | None
) -> dict[str, torch.Tensor]:
    """The model weights after a sync: ``state`` (the base weights held so far) updated with ``received``.

    Names from verl come as transformers module names, possibly with PEFT's ``base_model.model.``
    prefix and ``.base_layer`` infix. Plain weights replace the base ones in ``state``; LoRA pairs
    (``…lora_A.weight`` / ``…lora_B.weight``) are merged into a copy as ``W + B @ A * scale``.
    Raises ``KeyError`` naming the first weight the model does not have.

    >>> w = {"l.weight": torch.zeros(2, 2)}
    >>> pairs = [("base_model.model.l.lora_A.weight", torch.ones(1, 2)), ("l.lora_B.weight", torch.ones(2, 1))]
    >>> merge_received_weights(w, pairs, {"r": 1, "lora_alpha": 2})["l.weight"].tolist()
    [[2.0, 2.0], [2.0, 2.0]]
    """
    lora_a: dict[str, torch.Tensor] = {}
    lora_b: dict[str, torch.Tensor] = {}
    for raw_name, tensor in received:
        name = raw_name.removeprefix(_PEFT_PREFIX).replace(".base_layer.", ".")
        if ".lora_A." in name:
            lora_a[name.split(".lora_A.")[0]] = tensor
        elif ".lora_B." in name:
            lora_b[name.split(".lora_B.")[0]] = tensor
        else:
            if name not in state:
                raise KeyError(f"verl sent weight {raw_name!r}, which the rollout model has no parameter for")
            state[name] = tensor.detach().to(state[name].dtype).clone()
    if not lora_a:
        return dict(state)
    if lora is None:
        raise ValueError("verl sent LoRA adapter weights without a peft_config; cannot merge them")
    if lora_a.keys() != lora_b.keys():
        raise ValueError(f"unpaired LoRA weights: A without B {sorted(lora_a.keys() - lora_b.keys())[:3]}")
    scale = _lora_scale(lora)
    merged = dict(state)
    for module, a in lora_a.items():
        key = f"{module}.weight"
        if key not in state:
            raise KeyError(f"verl sent LoRA weights for {module!r}, which the rollout model has no weight for")
        delta = (lora_b[module].float() @ a.float()) * scale
        merged[key] = (state[key].float() + delta).to(state[key].dtype)
    return merged


# ---------------------------------------------------------------------------------------------
# the server (a Ray actor, one per replica)


class _BannedTokens:
    """A logits processor: -inf for the ids vLLM never samples (vision placeholders, ids past the tokenizer)."""

    def __init__(self, banned: list[int], vocab_limit: int) -> None:
        self.banned = torch.tensor(banned, dtype=torch.long) if banned else None
        self.vocab_limit = vocab_limit

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # a copy: generate() may hand the same tensor out as the raw logits the log-probs come from,
        # and those must stay the model's full distribution, as verl's actor computes it
        scores = scores.clone()
        scores[..., self.vocab_limit :] = float("-inf")
        if self.banned is not None:
            scores.index_fill_(-1, self.banned, float("-inf"))
        return scores


class HFCpuServer:
    """Token-in, token-out generation with a transformers model on the CPU (the server verl's agent loop calls).

    ``generate`` follows the contract of verl's vLLM server: it takes ``prompt_ids`` (image
    placeholders already expanded), ``sampling_params`` and ``image_data`` and returns a
    :class:`TokenOutput` whose ``extra_fields["global_steps"]`` is the last synced step.
    """

    def __init__(self, config: Any, model_config: Any, replica_rank: int, seed: int = 0) -> None:
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
        from verl.utils import hf_processor, hf_tokenizer
        from verl.utils.fs import copy_to_local

        self.config = config
        self.replica_rank = replica_rank
        path = copy_to_local(model_config["path"])
        trust = bool(model_config.get("trust_remote_code", False))
        self.tokenizer = hf_tokenizer(path, trust_remote_code=trust)
        self.processor = hf_processor(path, trust_remote_code=trust)
        loader = AutoModelForImageTextToText if self.processor is not None else AutoModelForCausalLM
        try:
            self.model = loader.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust)
        except ValueError:
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust)
        self.model.eval()
        self.base_state = {name: t.detach().clone() for name, t in self.model.state_dict().items()}
        banned = get_vision_placeholder_token_ids(self.processor) if self.processor is not None else []
        self.banned = _BannedTokens(banned, len(self.tokenizer))
        self.image_token_id = getattr(self.processor, "image_token_id", None)
        self.video_token_id = getattr(self.processor, "video_token_id", None)
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(eos_ids)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.global_steps = 0
        self.weight_syncs = 0
        # The model keeps per-call state (Qwen2.5-VL's rope_deltas), so one request runs at a time.
        self._model_lock = threading.Lock()
        # Each sampled request draws from a stream of its own, seeded by what it asks (prompt, images,
        # sampling parameters) and by how many identical requests came before it. The n rollouts of a
        # prompt get n different streams, and which ones does not depend on the order in which verl's
        # agent loop workers (concurrent) happen to send them: one shared stream made reruns differ.
        self._seed = seed + replica_rank
        self._arrivals: Counter[str] = Counter()

    # -- generation ---------------------------------------------------------------------------

    def _vision_inputs(self, prompt_ids: list[int], image_data: list[Any] | None) -> dict[str, torch.Tensor]:
        if not image_data:
            return {}
        if self.processor is None or self.image_token_id is None:
            raise ValueError(f"{ROLLOUT_NAME}: the request carries images but the model has no image processor")
        vision = self.processor.image_processor(images=image_data, return_tensors="pt")
        grid = vision["image_grid_thw"]
        merge = int(getattr(self.processor.image_processor, "merge_size", 2))
        expected = int((grid.prod(dim=-1) // (merge * merge)).sum())
        found = sum(1 for token in prompt_ids if token == self.image_token_id)
        if found != expected:
            raise ValueError(
                f"{ROLLOUT_NAME}: the prompt holds {found} image placeholder tokens but its "
                f"{len(image_data)} image(s) need {expected}; the images were not resized as the prompt was"
            )
        token_types = mm_token_type_ids(torch.tensor([prompt_ids]), self.image_token_id, self.video_token_id)
        return {"pixel_values": vision["pixel_values"], "image_grid_thw": grid, "mm_token_type_ids": token_types}

    def _request_seed(self, prompt_ids: list[int], params: dict[str, Any], vision: dict[str, torch.Tensor]) -> int:
        """The seed of this request: the server's seed, what the request asks, and its arrival number
        among identical requests (called under the model lock, so arrivals are counted one at a time)."""
        digest = hashlib.sha256(repr((prompt_ids, sorted(params.items()))).encode())
        pixels = vision.get("pixel_values")
        if pixels is not None:
            digest.update(pixels.numpy().tobytes())
        request = digest.hexdigest()
        arrival = self._arrivals[request]
        self._arrivals[request] += 1
        seeded = hashlib.sha256(f"{self._seed}/{request}/{arrival}".encode()).digest()
        return int.from_bytes(seeded[:8], "little") >> 1  # torch.manual_seed takes up to 2**63 - 1

    def _generate_now(
        self, prompt_ids: list[int], params: dict[str, Any], image_data: list[Any] | None
    ) -> tuple[list[int], list[float] | None]:
        from transformers import LogitsProcessorList

        max_room = self.config.prompt_length + self.config.response_length - len(prompt_ids)
        max_tokens = params.get("max_tokens", params.get("max_new_tokens", self.config.response_length))
        max_tokens = max(1, min(int(max_tokens), self.config.response_length, max(max_room, 1)))
        temperature = float(params.get("temperature", 1.0))
        top_k = int(params.get("top_k", -1))
        sample = temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "do_sample": sample,
            "logits_processor": LogitsProcessorList([self.banned]),
            "eos_token_id": self.eos_ids,
            "pad_token_id": self.pad_id,
            "repetition_penalty": float(params.get("repetition_penalty", 1.0)),
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        if sample:
            kwargs.update(temperature=temperature, top_p=float(params.get("top_p", 1.0)), top_k=max(top_k, 0))
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        vision = self._vision_inputs(prompt_ids, image_data)
        with self._model_lock, torch.no_grad():
            # generate() samples from the global RNG: seeded for this request, then put back as it was
            state = torch.get_rng_state()
            torch.manual_seed(self._request_seed(prompt_ids, params, vision))
            try:
                out = self.model.generate(
                    input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **vision, **kwargs
                )
            finally:
                torch.set_rng_state(state)
        tokens = out.sequences[0, len(prompt_ids) :].tolist()
        # generate pads finished rows; a single row stops at its EOS, so nothing follows it
        log_probs = None
        if params.get("logprobs"):
            scale = temperature if sample else 1.0
            log_probs = [
                float(torch.log_softmax(logits[0].float() / scale, dim=-1)[token])
                for logits, token in zip(out.logits, tokens, strict=False)
            ]
        return tokens, log_probs

    async def generate(
        self,
        request_id: str,
        *,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        **kwargs: Any,
    ) -> TokenOutput:
        """One sampled continuation of ``prompt_ids`` (the contract of verl's vLLM server ``generate``)."""
        if video_data:
            raise NotImplementedError(f"{ROLLOUT_NAME}: video inputs are not supported; use image or text prompts")
        tokens, log_probs = await asyncio.to_thread(
            self._generate_now, list(prompt_ids), dict(sampling_params), image_data
        )
        # verl's vLLM server reports both an EOS stop and the max_tokens limit as "completed"
        return TokenOutput(
            token_ids=tokens,
            log_probs=log_probs,
            stop_reason="completed",
            extra_fields={"global_steps": int(self.global_steps)},
        )

    def sequence_log_probs(
        self, prompt_ids: list[int], response_ids: list[int], temperature: float = 1.0
    ) -> list[float]:
        """Log-probabilities of ``response_ids`` after ``prompt_ids`` under the current weights (text only).

        A check that the rollout really uses the synced weights: compare with the actor's
        log-probabilities of the same sequence.
        """
        ids = torch.tensor([list(prompt_ids) + list(response_ids)], dtype=torch.long)
        with self._model_lock, torch.no_grad():
            logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].float()
        logp = torch.log_softmax(logits[len(prompt_ids) - 1 : -1] / temperature, dim=-1)
        return logp.gather(-1, torch.tensor(response_ids)[:, None])[:, 0].tolist()

    # -- weights ------------------------------------------------------------------------------

    def update_weights(
        self,
        named_tensors: list[tuple[str, torch.Tensor]],
        lora: dict[str, Any] | None = None,
        global_steps: int | None = None,
    ) -> int:
        """Load the actor's weights (full, merged, or base + LoRA adapters); returns the number of tensors received."""
        with self._model_lock:
            merged = merge_received_weights(self.base_state, named_tensors, lora)
            _missing, unexpected = self.model.load_state_dict(merged, strict=False)
            if unexpected:
                raise KeyError(f"{ROLLOUT_NAME}: weights the model does not have: {unexpected[:5]}")
            if hasattr(self.model, "tie_weights"):
                self.model.tie_weights()
            self.weight_syncs += 1
        if global_steps is not None:
            self.global_steps = int(global_steps)
        kind = "LoRA adapters, merged" if any(".lora_A." in name for name, _ in named_tensors) else "weights"
        # Ray forwards actor stdout to the driver: the run's log shows every sync (a debugging backend's job)
        print(
            f"[{ROLLOUT_NAME}] replica {self.replica_rank}: loaded {len(named_tensors)} tensors ({kind}) "
            f"for global step {self.global_steps}",
            flush=True,
        )
        return len(named_tensors)

    def set_global_steps(self, global_steps: int) -> None:
        self.global_steps = int(global_steps)

    def stats(self) -> dict[str, int]:
        """How many weight syncs the server took and the step it was last synced at."""
        return {"weight_syncs": self.weight_syncs, "global_steps": int(self.global_steps)}

    # -- lifecycle calls verl makes on every server; nothing to release on a CPU -----------------

    def ready(self) -> bool:
        return True

    async def sleep(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def wake_up(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def wait_for_requests_to_drain(self) -> None:
        return None

    async def abort_all_requests(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"aborted_count": 0, "request_ids": []}

    async def resume_generation(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def start_profile(self, **kwargs: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# the replica (driver side) and the adapter (worker side)


class HFCpuReplica(RolloutReplica):
    """A verl rollout replica whose server is one :class:`HFCpuServer` actor (hybrid mode only)."""

    async def launch_servers(self) -> None:
        if self.rollout_mode != RolloutMode.HYBRID:
            raise NotImplementedError(
                f"{ROLLOUT_NAME} runs only colocated with the actor (hybrid engine); got mode {self.rollout_mode}"
            )
        node_id = await self.workers[0].__ray_call__.remote(lambda _self: ray.get_runtime_context().get_node_id())
        suffix = self.name_suffix
        if self.is_reward_model:
            suffix = f"_reward{suffix}"
        elif self.is_teacher_model:
            suffix = f"_teacher{suffix}"
        server = (
            ray.remote(HFCpuServer)
            .options(
                name=server_actor_name(self.replica_rank, suffix),
                num_cpus=0,
                max_concurrency=self.max_concurrency,
                scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                    node_id=node_id, soft=False
                ),
            )
            .remote(
                config=self.config,
                model_config=self.model_config,
                replica_rank=self.replica_rank,
                seed=int(getattr(self.config, "seed", 0) or 0),
            )
        )
        await server.ready.remote()
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"{ROLLOUT_NAME}-replica-{self.replica_rank}{suffix}"


class HFCpuServerAdapter(BaseRollout):
    """The rollout handle inside verl's FSDP worker: hands the actor's weights to the replica's server."""

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, model_config, device_mesh)
        rollout_world_size = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        rank = int(os.environ.get("RANK", "0"))
        self.replica_rank = rank // rollout_world_size
        self.rollout_rank = rank % rollout_world_size
        self.sleep_level = 1
        self._server: Any = None

    def _server_handle(self) -> Any:
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    @torch.no_grad()
    async def update_weights(
        self,
        weights: Any,
        wire_format: str = "named_tensors",
        peft_config: Any = None,
        base_sync_done: bool = True,
        global_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        if wire_format != "named_tensors":
            raise NotImplementedError(
                f"{ROLLOUT_NAME} takes full tensors (checkpoint_engine.backend=naive), not wire_format={wire_format!r}"
            )
        named: list[tuple[str, torch.Tensor]] = []
        # every rank iterates: producing full tensors is a collective over the FSDP mesh
        async for name, tensor in ensure_async_iterator(weights):
            if self.rollout_rank == 0:
                full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
                named.append((name, full.detach().to("cpu").clone()))
        if self.rollout_rank != 0:
            return
        lora = None
        if peft_config is not None:
            # verl hands a LoraConfig or its dict form, depending on the engine
            fields = peft_config if isinstance(peft_config, dict) else vars(peft_config)
            lora = {"r": fields["r"], "lora_alpha": fields["lora_alpha"], "use_rslora": bool(fields.get("use_rslora"))}
        await self._server_handle().update_weights.remote(named, lora=lora, global_steps=global_steps)
