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

from typing import Any

from verl import DataProto
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.core.verdict_noise import apply_verdict_noise, noise_rng
from speciarl_verl.judge.verifier import JudgeError, VerificationRequest
from speciarl_verl.reward_settings import RewardSettings
from speciarl_verl.rollout_record import RolloutRecord
from speciarl_verl.verl_ext.config_checks import check_group_stage

__all__ = ["SpeciaRewardManager", "REWARD_MANAGER_NAME"]

REWARD_MANAGER_NAME = "speciarl"
INLINE_DECODE_TOKENS = 1024
#: The dataset and trajectory columns the reward reads.
_ROW_KEYS = ("data_source", "extra_info", "reward_model", "index", "global_steps", "session_id")


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


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
        self.settings = RewardSettings.from_verl_config(config)
        check_group_stage(config, self.settings)
        self.verifier = self.settings.judge.build_verifier()

    async def run_single(self, data: DataProto) -> dict:
        # A multi-output trajectory is scored on its final output (row -1). Reading the tensors
        # directly skips building a one-row DataProto per call.
        response_ids = data.batch["responses"][-1]
        response_length = int(response_ids.shape[-1])
        valid_length = int(data.batch["attention_mask"][-1][-response_length:].sum())
        valid_ids = response_ids[:valid_length].tolist()  # a list: transformers converts tensors slowly
        if valid_length <= INLINE_DECODE_TOKENS:
            # a short decode takes microseconds, less than the hop to a worker thread
            text = self.tokenizer.decode(valid_ids, skip_special_tokens=True)
        else:
            text = await self.loop.run_in_executor(
                None, lambda: self.tokenizer.decode(valid_ids, skip_special_tokens=True)
            )

        columns = data.non_tensor_batch
        row = {key: columns[key][-1] for key in _ROW_KEYS if key in columns}
        data_source = str(row.get("data_source", ""))
        extra_info = row.get("extra_info") or {}
        ground_truth = (row.get("reward_model") or {}).get("ground_truth")
        if not isinstance(ground_truth, str) or not ground_truth.strip():
            raise ValueError(
                f"row has no ground truth (reward_model.ground_truth={ground_truth!r}, "
                f"data_source={data_source!r}, index={row.get('index')!r})"
            )

        settings = self.settings
        answer = parse_answer(text, max_words=settings.max_answer_words)
        verdict = source = category = latency = error = None
        noised = False
        status = "unparseable" if answer is None else "judged"
        if answer is not None:
            request = VerificationRequest(
                ground_truth=ground_truth,
                prediction=answer,
                data_source=data_source,
                parents=_as_tuple(extra_info.get("parents")),
                synonyms=_as_tuple(extra_info.get("synonyms")),
            )
            try:
                (result,) = await self.verifier.verify([request])
            except JudgeError as failure:
                # Recorded, not raised: verl would only log a raising rollout and train on without it.
                # The group stage applies judge.failure_policy (stop the run, or mask the group).
                status, error = "judge_error", str(failure)
            else:
                verdict, source, latency = result.category, result.source, result.latency_s
                category = verdict
        if status == "judged" and settings.noise_rate > 0.0:
            key = (row.get("global_steps"), data_source, row.get("index"), ground_truth, row.get("session_id"))
            category, noised = apply_verdict_noise(verdict, settings.noise_rate, noise_rng(settings.noise_seed, *key))

        provisional = 0.0 if status == "judge_error" else settings.provisional_reward(category)
        penalty = settings.overlong.penalty(valid_length)
        record = RolloutRecord(
            status=status,
            answer=answer,
            verdict=verdict,
            verdict_source=source,
            category=category,
            noised=noised,
            overlong_penalty=penalty,
            acc=provisional,
            judge_latency_s=latency,
            judge_error=error,
        )
        return {"reward_score": provisional + penalty, "reward_extra_info": record.to_extra_info()}
