"""One pair, one chat completion: the LLM tier of the judge."""

from __future__ import annotations

from typing import Any, NamedTuple

from speciarl_verl.core.categories import Category
from speciarl_verl.core.label_normalization import normalize_for_judge
from speciarl_verl.judge.prompt import JudgePrompt, get_judge_prompt, load_judge_prompts
from speciarl_verl.judge.settings import LLMSettings
from speciarl_verl.judge.transport import BadReplyError, Completion, EndpointPool

__all__ = [
    "KEY_SCHEME",
    "InvalidVerdictError",
    "Judgement",
    "LLMJudge",
    "cap_prediction",
    "judge_input",
    "llm_identity",
]

#: Version of the rule that turns a pair into a cache key (:func:`judge_input`, then
#: :func:`~speciarl_verl.judge.verdict_store.cache_key`). Part of every judge identity, so verdicts
#: stored under an older rule are never read under this one. 2: keys are the strings the judge reads.
KEY_SCHEME = 2


class InvalidVerdictError(BadReplyError):
    """The judge replied with something that is not one of the labels (case and spacing aside).

    A reply is refused inside its attempt, so it is retried like a 5xx; the one that reaches the
    caller comes after the last attempt and names the endpoint, the attempts and the last reply.
    """


class Judgement(NamedTuple):
    """An LLM verdict: the category, the round trip of the attempt that gave it, and how many attempts
    the request took (1 = no retry)."""

    category: Category
    latency_s: float
    attempts: int


def cap_prediction(prediction: str, max_chars: int | None) -> str:
    """Collapse whitespace and, unless ``max_chars`` is ``None``, cut to ``max_chars`` characters.

    >>> cap_prediction("  a\\n  long   answer ", 8), cap_prediction("  a\\n  long   answer ", None)
    ('a long a', 'a long answer')
    """
    folded = " ".join(prediction.split())
    return folded if max_chars is None else folded[:max_chars]


def judge_input(settings: LLMSettings, ground_truth: str, prediction: str) -> tuple[str, str]:
    """The two strings the judge reads for a pair, and the only strings its cache key is made of.

    ``input_text=normalized`` cleans both (:func:`normalize_for_judge`), ``raw`` only folds the
    prediction's whitespace; then, if ``max_prediction_chars`` is set (the default ``None`` sends
    the whole prediction, as the method does), the prediction is cut to it. Cutting after
    cleaning matters: 200 characters of punctuation before a species name would otherwise leave
    nothing of the name, and two such answers would share one verdict.

    >>> judge_input(LLMSettings(max_prediction_chars=12), "Laysan Albatross", "!!!!!!!!!!!!!!!! laysan albatross")
    ('laysan albatross', 'laysan albat')
    """
    if settings.input_text == "normalized":
        ground_truth, prediction = normalize_for_judge(ground_truth), normalize_for_judge(prediction)
    return ground_truth, cap_prediction(prediction, settings.max_prediction_chars)


def llm_identity(settings: LLMSettings, prompt_version: str, **task: Any) -> dict[str, Any]:
    """Everything that shapes an LLM judge's reply besides the pair (model, prompt version, decoding,
    input cleaning, cache-key rule), plus ``task`` fields of the caller; part of every cache key.

    >>> llm_identity(LLMSettings(model="m"), "v1")["key_scheme"] == KEY_SCHEME
    True
    """
    return {
        **task,
        "model": settings.model,
        "prompt": prompt_version,
        "decoding": {
            "temperature": 0.0,
            "max_tokens": settings.max_tokens,
            "constrained": settings.constrained_decoding,
            "enable_thinking": settings.enable_thinking,
            "max_prediction_chars": settings.max_prediction_chars,
        },
        "input_text": settings.input_text,
        "key_scheme": KEY_SCHEME,
    }


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
        #: everything that shapes a verdict besides the pair; part of every cache key
        self.identity = llm_identity(settings, self.prompt.version)

    async def judge(self, ground_truth: str, prediction: str) -> Judgement:
        """The judge's category for the pair, the request's round-trip time and its number of attempts.

        ``ground_truth`` and ``prediction`` are sent as given: pass them through :func:`judge_input`
        first (the verifier does, and keys its cache by the same two strings). A reply outside the
        labels is asked again within the transport's retries; :class:`InvalidVerdictError` after the last.
        """
        messages = self.prompt.messages(ground_truth, prediction)
        completion = await self.pool.complete(messages, accept=self._category)
        return Judgement(self._category(completion), completion.latency_s, completion.attempts)

    def _category(self, completion: Completion) -> Category:
        """The category a reply names; :class:`InvalidVerdictError` for one that names none."""
        reply = completion.text.strip()
        if reply in self.prompt.labels:
            return Category(reply)
        try:  # tolerate case and spacing only; anything else is an error, never a guess
            return Category.coerce(reply)
        except ValueError:
            raise InvalidVerdictError(
                f"replied {reply[:80]!r}, which is not one of the labels", completion.endpoint
            ) from None

    async def aclose(self) -> None:
        await self.pool.aclose()
