"""The per-rollout half of the SpeciaRL reward, as a verl reward-loop manager.

verl 0.9.1 scores one trajectory at a time (``run_single``) in
``RewardLoopWorker`` actors, so this class decides what one rollout alone can
decide: decode, parse the answer, ask the verifier for the category, apply the
seeded verdict noise and DAPO's length penalty. It returns a *provisional*
score (what the rollout would earn in a group of one) and the full record in
``reward_extra_info``; the group stage
(:mod:`speciarl_verl.verl_ext.group_stage`) turns the records of a finished
group into the group reward before verl computes advantages.

Selected with ``reward.reward_manager.name=speciarl`` (registered when verl
loads the plugin), or explicitly with ``reward.reward_manager.source=importlib
reward.reward_manager.module.path=pkg://speciarl_verl.verl_ext.reward_manager
reward.reward_manager.name=SpeciaRewardManager``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from verl import DataProto
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.core.categories import Category
from speciarl_verl.core.rollout_record import record_info
from speciarl_verl.core.verdict_noise import apply_verdict_noise, noise_rng
from speciarl_verl.judge.verifier import JudgeError, VerificationRequest
from speciarl_verl.reward_settings import RewardSettings
from speciarl_verl.verl_ext.config_checks import check_group_stage, check_judge_kind
from speciarl_verl.verl_ext.steady_gc import SteadyCollector

__all__ = ["REWARD_MANAGER_NAME", "SpeciaRewardManager", "response_decoder"]

REWARD_MANAGER_NAME = "speciarl"
INLINE_DECODE_TOKENS = 1024


def _last(columns: Any, key: str, default: Any = None) -> Any:
    """The final output's value of a dataset or trajectory column (``default`` if there is none)."""
    column = columns.get(key)
    return default if column is None else column[-1]


def response_decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    """``ids -> tokenizer.decode(ids, skip_special_tokens=True)``, as cheaply as the tokenizer allows.

    transformers' ``decode`` first walks the ids through ``to_py_obj`` (about half of a short
    decode). For a stock fast tokenizer, which only hands the ids to its ``tokenizers`` backend
    (no clean-up pass), the backend is called directly; any other tokenizer keeps its own
    ``decode``.

    >>> class Plain:
    ...     def decode(self, ids, skip_special_tokens=False):
    ...         return f"{len(ids)} ids, skip={skip_special_tokens}"
    >>> response_decoder(Plain())([1, 2, 3])
    '3 ids, skip=True'
    """
    backend = getattr(tokenizer, "_tokenizer", None)
    try:
        from tokenizers import Tokenizer
        from transformers.tokenization_utils_base import PreTrainedTokenizerBase
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # another transformers layout: its decode is the only one we know to be right
        return partial(tokenizer.decode, skip_special_tokens=True)
    stock = (
        isinstance(backend, Tokenizer)
        and type(tokenizer).decode is PreTrainedTokenizerBase.decode
        and type(tokenizer)._decode is TokenizersBackend._decode
        and not getattr(tokenizer, "clean_up_tokenization_spaces", True)
    )
    if not stock:
        return partial(tokenizer.decode, skip_special_tokens=True)
    backend_decode = backend.decode

    def decode(ids: list[int]) -> str:
        return backend_decode(ids, True)  # skip_special_tokens, positional: PyO3 parses keywords slowly

    return decode


def _final_response(data: DataProto) -> tuple[list[int], int]:
    """The valid response ids of the trajectory's final output (row -1) and their count.

    A multi-output trajectory is scored on its final output. verl's agent loop sends each
    output's unpadded length as the ``response_len`` column, and it is the only reliable count:
    the outputs' ``cat(prompt, response)`` rows are right-padded to a common width, so when the
    final output's prompt is the longer one (a later turn), the last ``responses.shape[-1]``
    columns of its attention mask cover prompt tokens too. Without that column (verl's own batch
    layout: prompts left-padded, responses right-padded) the response half of the mask counts.

    This runs once per rollout, so it reads the TensorDict's own dict of top-level tensors when
    it has a plain one (a ``TensorDict``'s item access normalises keys and checks compilation on
    every call), and converts one row with ``tolist`` (a NumPy view costs more for a short row).
    """
    store = getattr(data.batch, "_tensordict", None)
    tensors = store if isinstance(store, dict) else data.batch
    responses = tensors["responses"]
    lengths = data.non_tensor_batch.get("response_len")
    if lengths is None:
        mask = tensors["attention_mask"]
        valid = int(mask[-1][-responses.shape[-1] :].sum())
    else:
        valid = int(lengths[-1])
    row = (responses if responses.shape[0] == 1 else responses[-1:]).tolist()[0][:valid]
    return row, len(row)


@register(REWARD_MANAGER_NAME)
class SpeciaRewardManager(RewardManagerBase):
    """Parses and judges one rollout; the group stage finishes the reward.

    ``compute_score`` (verl's custom reward function) is not used: the verdict
    comes from the configured verifier (``reward.reward_kwargs.judge``).
    """

    def __init__(
        self,
        config,
        tokenizer,
        compute_score=None,
        reward_router_address: str | None = None,
        reward_model_tokenizer=None,
        **_: Any,
    ) -> None:
        super().__init__(config, tokenizer, compute_score)
        check_judge_kind(config)
        self.settings = RewardSettings.from_verl_config(config)
        check_group_stage(config, self.settings)
        self.settings.judge.check_secrets()  # an unset key variable on this node stops the run here, at start-up
        self.verifier = self.settings.judge.build_verifier()
        self._decode = response_decoder(tokenizer)
        # Per-rollout work done once: the settings are frozen, so the provisional score depends on
        # the category alone.
        self._provisional = {c: self.settings.provisional_reward(c) for c in (None, *Category)}
        self._penalty = self.settings.overlong.penalty if self.settings.overlong.enable else None
        self._parse = partial(parse_answer, max_words=self.settings.max_answer_words, mode=self.settings.parse_mode)
        self._collector = None
        if self.settings.steady_gc:
            # last: everything this long-lived worker built to score rollouts goes into the frozen heap
            self._collector = SteadyCollector()
            self._collector.start()

    async def run_single(self, data: DataProto) -> dict:
        if self._collector is None:
            return await self._score(data)
        self._collector.enter()
        try:
            return await self._score(data)
        finally:
            self._collector.leave(asyncio.get_running_loop())

    async def _score(self, data: DataProto) -> dict:
        valid_ids, valid_length = _final_response(data)
        if valid_length <= INLINE_DECODE_TOKENS:
            # a short decode takes microseconds, less than the hop to a worker thread
            text = self._decode(valid_ids)
        else:
            text = await self.loop.run_in_executor(None, self._decode, valid_ids)

        columns = data.non_tensor_batch
        column = columns.get("data_source")
        data_source = "" if column is None else str(column[-1])
        column = columns.get("extra_info")
        extra_info = (None if column is None else column[-1]) or {}
        column = columns.get("reward_model")
        ground_truth = ((None if column is None else column[-1]) or {}).get("ground_truth")
        if not isinstance(ground_truth, str) or not ground_truth.strip():
            raise ValueError(
                f"row has no ground truth (reward_model.ground_truth={ground_truth!r}, "
                f"data_source={data_source!r}, index={_last(columns, 'index')!r})"
            )

        settings = self.settings
        answer = self._parse(text)
        verdict = source = category = latency = attempts = error = None
        noised = False
        if answer is None:
            status = "unparseable"
        else:
            status = "judged"
            # a verdict this process knows for the pair alone is taken before anything is built
            result = self.verifier.recall_pair(ground_truth, answer)
            if result is None:
                # parents, their levels, domain nouns and synonyms: read only when the pair alone is not enough
                request = VerificationRequest.for_row(ground_truth, answer, data_source, extra_info)
                try:
                    result = await self.verifier.verify_one(request)
                except Exception as failure:  # the judge's, the cache's or a setting's: never cancellation
                    # Recorded, not raised: verl would only log a raising rollout, mark its group failed and
                    # train on its siblings. The group stage applies judge.failure_policy (stop the run, or
                    # mask the whole group).
                    status, error = "judge_error", str(failure) if isinstance(failure, JudgeError) else repr(failure)
                    attempts = failure.attempts if isinstance(failure, JudgeError) else None
            if result is not None:
                verdict = category = result.category
                source, latency, attempts = result.source, result.latency_s, result.attempts
        if status == "judged" and settings.noise_rate > 0.0:
            key = (
                _last(columns, "global_steps"),
                data_source,
                _last(columns, "index"),
                ground_truth,
                _last(columns, "session_id"),
            )
            category, noised = apply_verdict_noise(verdict, settings.noise_rate, noise_rng(settings.noise_seed, *key))

        provisional = 0.0 if status == "judge_error" else self._provisional[category]
        penalty = 0.0 if self._penalty is None else self._penalty(valid_length)
        info = record_info(
            status, answer, verdict, source, category, noised, penalty, provisional, latency, error,
            image_id=extra_info.get("image_id"), judge_attempts=attempts,
        )  # fmt: skip
        return {"reward_score": provisional + penalty, "reward_extra_info": info}
