"""What the LLM judge reads: the method's cleaned strings by default, the raw ones on request; the prompt's meanings."""

from __future__ import annotations

import asyncio
import json

import pytest

from speciarl_verl.core.label_normalization import normalize_for_judge
from speciarl_verl.judge import JudgeSettings, TieredVerifier, VerificationRequest
from speciarl_verl.judge.llm_judge import judge_input
from speciarl_verl.judge.prompt import DEFAULT_JUDGE_PROMPT, SPECIARL_V1, get_judge_prompt
from speciarl_verl.judge.settings import LLMSettings


def judged_pairs(server, tmp_path=None, **llm) -> list[dict]:
    cache = {"backend": "sqlite", "path": str(tmp_path / "v.sqlite")} if tmp_path else {"backend": "none"}
    settings = JudgeSettings.from_mapping(
        {"kind": "llm", "llm": {"endpoints": [server.url], "model": "m", "max_retries": 0, **llm}, "cache": cache}
    )
    verifier = TieredVerifier(settings)
    requests = [
        VerificationRequest("Black-footed Albatross", "Anna's  Hummingbird!", "cub200"),
        VerificationRequest("F/A-18", "F/A-18 Hornet (US Navy)", "fgvc_aircraft"),
    ]

    async def go():
        try:
            return await verifier.verify(requests)
        finally:
            await verifier.aclose()

    asyncio.run(go())
    sent = []
    for body in server.requests:
        user = body["messages"][1]["content"]
        sent.append(json.loads(user.split("```json", 1)[1].rsplit("```", 1)[0]))
    return sorted(sent, key=lambda pair: pair["ground_truth"])


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("Black-footed Albatross", "black-footed albatross"),
        ("Anna's Hummingbird", "anna s hummingbird"),
        ("F/A-18", "f a-18"),
        ("St. Bernard", "st bernard"),
        ("A340-500", "a340-500"),
        ("Crème  brûlée\n(dessert)", "crème brûlée dessert"),
        ("Cessna 172 \u2013 Skyhawk", "cessna 172 \u2013 skyhawk"),  # an en dash is dash punctuation: kept
        ("!!!", ""),
    ],
)
def test_the_methods_cleaning(text, cleaned):
    assert normalize_for_judge(text) == cleaned


def test_the_judge_reads_the_cleaned_pair_by_default(fake_judge):
    assert LLMSettings().input_text == "normalized"
    sent = judged_pairs(fake_judge())
    assert sent == [
        {"ground_truth": "black-footed albatross", "prediction": "anna s hummingbird"},
        {"ground_truth": "f a-18", "prediction": "f a-18 hornet us navy"},
    ]


def test_raw_input_sends_the_strings_as_the_policy_wrote_them(fake_judge):
    sent = judged_pairs(fake_judge(), input_text="raw")
    assert sent == [
        {"ground_truth": "Black-footed Albatross", "prediction": "Anna's Hummingbird!"},  # whitespace still folded
        {"ground_truth": "F/A-18", "prediction": "F/A-18 Hornet (US Navy)"},
    ]


def test_raw_and_cleaned_verdicts_are_cached_apart(fake_judge, tmp_path):
    server = fake_judge()
    judged_pairs(server, tmp_path)
    judged_pairs(server, tmp_path)
    assert server.calls == 2  # the second run came from the cache
    judged_pairs(server, tmp_path, input_text="raw")
    assert server.calls == 4


def test_an_unknown_input_mode_is_refused():
    with pytest.raises(ValueError, match=r"judge\.llm\.input_text='lower' is not one of"):
        LLMSettings(input_text="lower")


def test_the_default_prompt_keeps_the_methods_less_specific():
    assert DEFAULT_JUDGE_PROMPT is get_judge_prompt("speciarl_v2")
    assert "closely related coarser class than the ground truth: its genus, family or product line" in " ".join(
        DEFAULT_JUDGE_PROMPT.system.split()
    )
    # our first prompt's extra car rule is gone from the default and kept in speciarl_v1, which still loads
    assert "body style" not in DEFAULT_JUDGE_PROMPT.system and "body style" in SPECIARL_V1.system
    assert DEFAULT_JUDGE_PROMPT.version != SPECIARL_V1.version
    assert LLMSettings(prompt="speciarl_v1").prompt == "speciarl_v1"


def test_the_prediction_reaches_the_judge_whole_unless_a_cut_is_set(fake_judge):
    assert LLMSettings().max_prediction_chars is None  # as the method: no cut
    rambling = "a large seabird with long narrow wings gliding low over the waves " * 4 + "laysan albatross"
    cleaned = normalize_for_judge(rambling)
    assert len(cleaned) > 200
    assert judge_input(LLMSettings(), "Laysan Albatross", rambling) == ("laysan albatross", cleaned)
    assert judge_input(LLMSettings(max_prediction_chars=200), "x", rambling)[1] == cleaned[:200]
    (sent,) = [pair["prediction"] for pair in judged_pairs(fake_judge()) if pair["ground_truth"] == "f a-18"]
    assert sent == "f a-18 hornet us navy"
    capped = judged_pairs(fake_judge(), max_prediction_chars=8)
    assert [pair["prediction"] for pair in capped] == ["anna s h", "f a-18 h"]
    with pytest.raises(ValueError, match=r"max_prediction_chars must be null or >= 1"):
        LLMSettings(max_prediction_chars=0)
