"""One pair, one chat completion: the LLM tier of the judge."""

from __future__ import annotations

from typing import Any

from speciarl_verl.core.categories import Category
from speciarl_verl.core.label_normalization import normalize_for_judge
from speciarl_verl.judge.prompt import JudgePrompt, get_judge_prompt, load_judge_prompts
from speciarl_verl.judge.settings import LLMSettings
from speciarl_verl.judge.transport import EndpointPool

__all__ = ["InvalidVerdictError", "LLMJudge", "cap_prediction"]


class InvalidVerdictError(RuntimeError):
    """The judge replied with something that is not exactly one of the labels."""

    def __init__(self, message: str, endpoint: str):
        super().__init__(message)
        self.endpoint = endpoint


def cap_prediction(prediction: str, max_chars: int) -> str:
    """Collapse whitespace and cut to ``max_chars`` characters: labels are short, model output need not be.

    >>> cap_prediction("  a\\n  long   answer ", 8)
    'a long a'
    """
    return " ".join(prediction.split())[:max_chars]


def resolve_prompt(settings: LLMSettings) -> JudgePrompt:
    if settings.prompt_file is None:
        return get_judge_prompt(settings.prompt)
    prompts = {p.name: p for p in load_judge_prompts(settings.prompt_file)}
    if settings.prompt not in prompts:
        raise ValueError(f"judge prompt {settings.prompt!r} is not in {settings.prompt_file} (has {sorted(prompts)})")
    return prompts[settings.prompt]


class LLMJudge:
    """Renders the judge prompt for a pair, sends it, and validates the reply."""

    def __init__(self, settings: LLMSettings):
        self.settings = settings
        self.prompt = resolve_prompt(settings)
        self.pool = EndpointPool(settings, choices=self.prompt.labels)
        self.identity = self._identity()

    def _identity(self) -> dict[str, Any]:
        """Everything that shapes a verdict besides the pair; part of every cache key."""
        s = self.settings
        return {
            "model": s.model,
            "prompt": self.prompt.version,
            "decoding": {
                "temperature": 0.0,
                "max_tokens": s.max_tokens,
                "constrained": s.constrained_decoding,
                "enable_thinking": s.enable_thinking,
                "max_prediction_chars": s.max_prediction_chars,
            },
            "input_text": s.input_text,
        }

    async def judge(self, ground_truth: str, prediction: str) -> tuple[Category, float]:
        """The judge's category for the pair and the request's round-trip time."""
        if self.settings.input_text == "normalized":
            ground_truth, prediction = normalize_for_judge(ground_truth), normalize_for_judge(prediction)
        messages = self.prompt.messages(ground_truth, cap_prediction(prediction, self.settings.max_prediction_chars))
        completion = await self.pool.complete(messages)
        reply = completion.text.strip()
        if reply not in self.prompt.labels:
            try:  # tolerate case and spacing only; anything else is an error, never a guess
                return Category.coerce(reply), completion.latency_s
            except ValueError:
                raise InvalidVerdictError(
                    f"judge endpoint {completion.endpoint} replied {reply[:80]!r}, which is not one of the labels",
                    completion.endpoint,
                ) from None
        return Category(reply), completion.latency_s

    async def aclose(self) -> None:
        await self.pool.aclose()
