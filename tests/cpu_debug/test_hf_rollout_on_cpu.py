"""The hf_cpu rollout server on its own (no Ray): sampling contract, banned tokens, log-probs, weight sync."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="module")
def random_vl_dir(tmp_path_factory):
    from speciarl_verl.offline_fixtures.tiny_qwen_vl import build_tiny_qwen25_vl

    return build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny-vl"))


@pytest.fixture
def server(random_vl_dir):
    from speciarl_verl.cpu_debug.hf_rollout import HFCpuServer

    config = SimpleNamespace(prompt_length=256, response_length=12)
    return HFCpuServer(config, {"path": str(random_vl_dir)}, replica_rank=0, seed=0)


def _image_prompt(server):
    from PIL import Image
    from qwen_vl_utils import process_vision_info

    image = Image.new("RGB", (56, 56), (200, 30, 30))
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "what?"}]}]
    images, _ = process_vision_info(messages, image_patch_size=14)
    text = server.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = server.processor(text=[text], images=images, return_tensors="pt")["input_ids"][0].tolist()
    return ids, images


@pytest.mark.asyncio
async def test_generate_samples_within_max_tokens_and_never_a_banned_token(server):
    ids, images = _image_prompt(server)
    assert ids.count(server.processor.image_token_id) > 1  # placeholders come expanded, as from verl's agent loop
    banned = set(server.banned.banned.tolist())
    for request in range(6):
        out = await server.generate(
            f"r{request}",
            prompt_ids=ids,
            sampling_params={"temperature": 1.5, "top_p": 1.0, "top_k": -1, "max_tokens": 7, "logprobs": True},
            image_data=images,
        )
        assert 1 <= len(out.token_ids) <= 7
        assert not banned & set(out.token_ids)
        assert all(token < len(server.tokenizer) for token in out.token_ids)
        assert len(out.log_probs) == len(out.token_ids) and all(lp <= 0 for lp in out.log_probs)
        assert out.extra_fields["global_steps"] == 0


@pytest.mark.asyncio
async def test_what_each_prompt_samples_does_not_depend_on_the_order_requests_arrive_in(random_vl_dir):
    # verl's agent loop workers send a group's n requests concurrently, in no fixed order
    from speciarl_verl.cpu_debug.hf_rollout import HFCpuServer

    config = SimpleNamespace(prompt_length=256, response_length=12)
    params = {"temperature": 1.5, "top_p": 1.0, "top_k": -1, "max_tokens": 8}

    async def samples(order):
        server = HFCpuServer(config, {"path": str(random_vl_dir)}, replica_rank=0, seed=0)
        tokenize = server.tokenizer
        prompts = {name: tokenize(text, add_special_tokens=False)["input_ids"] for name, text in PROMPTS.items()}
        drawn = {name: [] for name in PROMPTS}
        for i, name in enumerate(order):
            out = await server.generate(f"r{i}", prompt_ids=prompts[name], sampling_params=dict(params))
            drawn[name].append(tuple(out.token_ids))
        return {name: sorted(tokens) for name, tokens in drawn.items()}

    first = await samples(["gull", "tern", "gull", "tern", "gull", "tern"])
    second = await samples(["tern", "tern", "tern", "gull", "gull", "gull"])
    assert first == second
    assert all(len(set(tokens)) > 1 for tokens in first.values())  # each rollout of a prompt has a stream of its own


PROMPTS = {"gull": "which bird is this", "tern": "name the bird in the picture"}


@pytest.mark.asyncio
async def test_greedy_is_deterministic_and_log_probs_match_a_full_forward(server):
    ids = server.tokenizer("hello there", add_special_tokens=False)["input_ids"]
    params = {"temperature": 0.0, "max_tokens": 6, "logprobs": True}
    first = await server.generate("a", prompt_ids=ids, sampling_params=dict(params))
    second = await server.generate("b", prompt_ids=ids, sampling_params=dict(params))
    assert first.token_ids == second.token_ids
    forward = server.sequence_log_probs(ids, first.token_ids)
    assert first.log_probs == pytest.approx(forward, abs=1e-4)


@pytest.mark.asyncio
async def test_weight_sync_with_lora_adapters_changes_what_the_server_computes(server):
    ids = server.tokenizer("hello there", add_special_tokens=False)["input_ids"]
    response = [5, 6, 7]
    before = server.sequence_log_probs(ids, response)
    target = "model.language_model.layers.0.self_attn.q_proj"
    weight = server.base_state[f"{target}.weight"]
    lora_a = torch.randn(2, weight.shape[1])
    lora_b = torch.randn(weight.shape[0], 2)
    received = [
        (f"base_model.model.{target}.lora_A.weight", lora_a),
        (f"base_model.model.{target}.lora_B.weight", lora_b),
    ]
    server.update_weights(received, lora={"r": 2, "lora_alpha": 4}, global_steps=3)
    merged = dict(server.model.named_parameters())[f"{target}.weight"].detach()
    assert torch.allclose(merged, weight + lora_b @ lora_a * 2.0, atol=1e-5)
    assert server.sequence_log_probs(ids, response) != pytest.approx(before, abs=1e-4)
    assert server.stats() == {"weight_syncs": 1, "global_steps": 3}
    # the next sync merges onto the base weights again, not onto the merged ones
    server.update_weights(received, lora={"r": 2, "lora_alpha": 4}, global_steps=4)
    again = dict(server.model.named_parameters())[f"{target}.weight"].detach()
    assert torch.allclose(again, merged, atol=1e-5)


def test_weight_sync_rejects_a_name_the_model_does_not_have(server):
    with pytest.raises(KeyError, match="no parameter"):
        server.update_weights([("model.not_a_layer.weight", torch.zeros(1))])
