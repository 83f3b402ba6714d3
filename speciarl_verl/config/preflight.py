"""Check a training launch before anything starts: the config, the overrides, the batch arithmetic.

``python -m speciarl_verl.config.preflight --config NAME [--] [hydra overrides...]`` composes the
shipped config NAME with the overrides as ``python -m verl.trainer.main_ppo -cp
pkg://speciarl_verl.config -cn NAME OVERRIDES`` would, then refuses what verl would only reject
once the data is built, the judge is up and the first rollout is done:

* a config name that is not shipped (with the closest names);
* an override Hydra cannot read, and a path (``data.train_files``, ``data.val_files``,
  ``trainer.default_local_dir``, ``actor_rollout_ref.model.path``) holding characters Hydra's
  override grammar takes as syntax when unquoted;
* batch sizes that do not split over ``trainer.nnodes x trainer.n_gpus_per_node`` GPUs the way
  verl's workers split them (each rule is named where it is checked, with the verl file);
* ``actor_rollout_ref.rollout.max_model_len`` below ``data.max_prompt_length +
  data.max_response_length``.

A refusal is one line on stderr starting with ``preflight: `` and exit status 2. On success the
plan is printed on stdout, every line starting with ``# ``, and the exit status is 0. It reads
verl's config files without importing verl, torch or vLLM
(:func:`~speciarl_verl.config.compose.compose_config_from_files`): it takes about a second and
runs on a machine without GPUs, but needs verl installed. The rules mirror verl 0.9.1's v1 trainer and engine
workers; ``validate_config`` itself is not run here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig, ListConfig, OmegaConf

from speciarl_verl.config.compose import compose_config_from_files
from speciarl_verl.config.override_checks import (
    PATH_KEYS,
    PreflightError,
    check_config_name,
    check_overrides,
)
from speciarl_verl.config.override_checks import one_line as _one_line

__all__ = [
    "PATH_KEYS",
    "PreflightError",
    "check_batch_sizes",
    "check_config",
    "check_config_name",
    "check_lengths",
    "check_overrides",
    "main",
    "preflight",
]

_USAGE = "usage: python -m speciarl_verl.config.preflight --config NAME [--] [hydra overrides...]"


# ---------------------------------------------------------------------------------------------
# reading the composed config


def _value(config: DictConfig, key: str):
    try:
        return OmegaConf.select(config, key, throw_on_missing=True)
    except Exception as error:  # an interpolation that does not resolve, a missing value
        raise PreflightError(f"{key} cannot be read: {_one_line(error)}") from None


def _whole(config: DictConfig, key: str, *, optional: bool = False) -> int | None:
    value = _value(config, key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PreflightError(f"{key}={value} must be a whole number of at least 1")
    return value


def _flag(config: DictConfig, key: str) -> bool:
    return bool(_value(config, key))


def _count(number: int, noun: str) -> str:
    """``1 GPU``, ``2 GPUs``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _divisors(number: int, at_most: int, count: int = 3) -> str:
    """The largest divisors of ``number`` not above ``at_most``, for a suggestion.

    >>> _divisors(80, 32)
    '20, 16 or 10'
    """
    found = [str(d) for d in range(min(number, at_most), 0, -1) if number % d == 0][:count]
    return found[0] if len(found) == 1 else f"{', '.join(found[:-1])} or {found[-1]}"


class _Parallel:
    """How a role's GPUs split into data-parallel ranks: ``dp = gpus / split``."""

    def __init__(self, config: DictConfig, role: str, gpus: int):
        strategy = _value(config, f"{role}.strategy")
        if strategy == "megatron":
            sizes = [
                _whole(config, f"{role}.megatron.{name}_parallel_size")
                for name in ("tensor_model", "pipeline_model", "context")
            ]
            self.split, self.label = sizes[0] * sizes[1] * sizes[2], "tensor x pipeline x context parallel"
            self.megatron = True
            where = "verl/utils/config.py validate_config"
        else:  # fsdp, fsdp2: Ulysses sequence parallelism takes GPUs from data parallelism
            legacy = _value(config, f"{role}.ulysses_sequence_parallel_size") or 1
            engine = _value(config, f"{role}.fsdp_config.ulysses_sequence_parallel_size") or 1
            self.split, self.label = (legacy if legacy > 1 else engine), "Ulysses sequence parallel"
            self.megatron = False
            where = "verl/workers/engine/fsdp/transformer_impl.py get_data_parallel_size"
        if gpus % self.split:
            raise PreflightError(
                f"{role} ranks of {self.label} size {self.split} do not tile {_count(gpus, 'GPU')} ({where}); "
                f"use a GPU count that is a multiple of {self.split}"
            )
        self.gpus, self.dp = gpus, gpus // self.split

    def ranks(self) -> str:
        """``16 GPUs``, or ``8 data-parallel ranks (16 GPUs / Ulysses sequence parallel 2)``."""
        if self.split == 1:
            return _count(self.gpus, "GPU")
        return f"{self.dp} data-parallel ranks ({self.gpus} GPUs / {self.label} {self.split})"


def _need_reference_policy(config: DictConfig) -> bool:
    # as verl/trainer/ppo/utils.py need_reference_policy
    return bool(_value(config, "algorithm.use_kl_in_reward")) or _flag(config, "actor_rollout_ref.actor.use_kl_loss")


def _need_critic(config: DictConfig) -> bool:
    # as verl/trainer/ppo/utils.py need_critic
    enable = _value(config, "critic.enable")
    if enable is not None:
        return bool(enable)
    return _value(config, "algorithm.adv_estimator") == "gae"


def _reference_in_actor(config: DictConfig) -> bool:
    # as verl/trainer/ppo/v1/trainer_base.py _setup: with LoRA the reference is the actor, adapter off
    model = "actor_rollout_ref.model"
    rank = _value(config, f"{model}.lora.rank") or 0
    if rank <= 0:
        rank = _value(config, f"{model}.lora_rank") or 0
    return rank > 0 or _value(config, f"{model}.lora_adapter_path") is not None


# ---------------------------------------------------------------------------------------------
# the checks

_ARF = "actor_rollout_ref"


@dataclass(frozen=True)
class _Batch:
    """One step's numbers: prompts, rollouts and how the actor's GPUs share them."""

    prompts: int  # data.train_batch_size
    n: int  # rollouts per prompt
    mini: int  # prompts per actor mini-batch
    sample: int  # prompts per local update (train_batch_size / parameter_sync_step)
    sync_step: int
    epochs: int
    actor: _Parallel

    @property
    def mini_samples(self) -> int:
        return self.mini * self.n

    @property
    def per_gpu_mini(self) -> int:
        return self.mini_samples // self.actor.dp

    @property
    def per_gpu_sample(self) -> int:
        return self.sample * self.n // self.actor.dp


def _read_batch(config: DictConfig, gpus: int) -> _Batch:
    """The step's numbers, refusing a step that does not fall into whole, evenly split mini-batches."""
    mini_key, train_key = f"{_ARF}.actor.ppo_mini_batch_size", "data.train_batch_size"
    prompts, mini = _whole(config, train_key), _whole(config, mini_key)
    # the v1 trainer samples train_batch_size / parameter_sync_step prompts per local update
    mode = _value(config, "trainer.v1.trainer_mode") or "sync"
    sync_step = _value(config, f"trainer.v1.{mode}.parameter_sync_step") or 1
    if prompts % sync_step:
        raise PreflightError(
            f"{train_key}={prompts} is not a multiple of trainer.v1.{mode}.parameter_sync_step={sync_step} "
            "(verl/trainer/ppo/v1/trainer_base.py step)"
        )
    if mode == "separate_async" and prompts != sync_step * mini:
        raise PreflightError(
            f"{train_key}={prompts} must equal trainer.v1.separate_async.parameter_sync_step={sync_step} x "
            f"{mini_key}={mini} (verl/trainer/ppo/v1/trainer_separate_async.py)"
        )
    batch = _Batch(
        prompts=prompts,
        n=_whole(config, f"{_ARF}.rollout.n"),
        mini=mini,
        sample=prompts // sync_step,
        sync_step=sync_step,
        epochs=_whole(config, f"{_ARF}.actor.ppo_epochs"),
        actor=_Parallel(config, f"{_ARF}.actor", gpus),
    )
    # whole mini-batches: fewer prompts than one is refused by verl (workers/config/actor.py
    # ActorConfig.validate); a remainder is padded with synthetic samples by the v1 trainer
    # (trainer_base.py _balance_batch -> padding_utils.upsample_batch_to_divisible_size)
    if batch.sample < mini or batch.sample % mini:
        what = "smaller than" if batch.sample < mini else "not a multiple of"
        raise PreflightError(
            f"{batch.sample} prompts per update ({train_key}={prompts}) is {what} {mini_key}={mini}: verl would "
            "refuse it or pad each step with synthetic samples; make the batch a multiple of the mini-batch"
        )
    # each mini-batch is split evenly over the data-parallel ranks (workers/engine_workers.py
    # TrainingWorker.train_mini_batch asserts mini_batch_size % dp_size == 0)
    if batch.mini_samples % batch.actor.dp:
        raise PreflightError(
            f"{mini} prompts x {batch.n} rollouts = {batch.mini_samples} samples per mini-batch do not split over "
            f"{batch.actor.ranks()} (verl asserts it at the first actor update, workers/engine_workers.py "
            f"train_mini_batch); use a GPU count that divides {batch.mini_samples}"
        )
    return batch


def _micro_batch(config: DictConfig, key: str, samples: int, what: str, where: str, stage: str) -> int:
    """The micro-batch at ``key``, refused unless it divides ``samples`` (workers/engine/utils.py:124)."""
    micro = _whole(config, key, optional=True)
    if micro is None:
        raise PreflightError(f"{key} is unset; verl's engine workers need it (workers/engine_workers.py init_model)")
    if samples % micro:
        raise PreflightError(
            f"{what} = {samples} per GPU {where}, not a multiple of {key}={micro}: verl stops at {stage} "
            f"(workers/engine/utils.py prepare_micro_batches); set it to a divisor of {samples} such as "
            f"{_divisors(samples, micro)}"
        )
    return micro


def _actor_lines(config: DictConfig, batch: _Batch) -> list[str]:
    """The actor update and the old-policy log-prob pass, fixed-size or token-packed micro-batches."""
    n, ranks = batch.n, batch.actor.ranks()
    update = f"{batch.mini} prompts x {n} rollouts / {ranks}"
    logprob = f"{batch.sample} prompts x {n} rollouts / {ranks}"
    dynamic = _flag(config, f"{_ARF}.actor.use_dynamic_bsz")
    if dynamic != _flag(config, f"{_ARF}.rollout.log_prob_use_dynamic_bsz"):
        raise PreflightError(
            f"{_ARF}.actor.use_dynamic_bsz and {_ARF}.rollout.log_prob_use_dynamic_bsz differ; verl requires them "
            "equal (workers/engine_workers.py init_model)"
        )
    if dynamic:
        tokens = _whole(config, f"{_ARF}.actor.ppo_max_token_len_per_gpu")
        lp_tokens = _whole(config, f"{_ARF}.rollout.log_prob_max_token_len_per_gpu")
        return [
            f"# actor update: {update} = {batch.per_gpu_mini} samples per GPU per mini-batch, in micro-batches "
            f"packed to at most {tokens} tokens per GPU (dynamic batch size)",
            f"# log-probs: {logprob} = {batch.per_gpu_sample} samples per GPU, in micro-batches packed to at most "
            f"{lp_tokens} tokens per GPU",
        ]
    # validate_config's own check (verl/utils/config.py validate_config, "real_train_batch_size")
    minimal = batch.actor.gpus
    if batch.actor.megatron:
        minimal = batch.actor.dp * (_whole(config, f"{_ARF}.actor.ppo_micro_batch_size_per_gpu", optional=True) or 1)
    if (batch.prompts * n) % minimal:
        raise PreflightError(
            f"{batch.prompts} prompts x {n} rollouts = {batch.prompts * n} samples per step are not a multiple of "
            f"{minimal} (verl/utils/config.py validate_config)"
        )
    micro = _micro_batch(
        config,
        f"{_ARF}.actor.ppo_micro_batch_size_per_gpu",
        batch.per_gpu_mini,
        update,
        "per mini-batch",
        "the first actor update",
    )
    lp_micro = _micro_batch(
        config,
        f"{_ARF}.rollout.log_prob_micro_batch_size_per_gpu",
        batch.per_gpu_sample,
        logprob,
        "in the log-prob pass",
        "the first log-prob pass",
    )
    return [
        f"# actor update: {update} = {batch.per_gpu_mini} samples per GPU per mini-batch = "
        f"{batch.per_gpu_mini // micro} micro-batches of {micro}",
        f"# log-probs: {logprob} = {batch.per_gpu_sample} samples per GPU = "
        f"{batch.per_gpu_sample // lp_micro} micro-batches of {lp_micro}",
    ]


def _reference_lines(config: DictConfig, batch: _Batch) -> list[str]:
    """The reference log-prob pass: in the actor with LoRA, else its own worker with its own micro-batch."""
    if not _need_reference_policy(config):
        return []
    if _reference_in_actor(config):
        return ["# reference log-probs: the actor with its LoRA adapter off, the same micro-batches"]
    if _flag(config, f"{_ARF}.ref.log_prob_use_dynamic_bsz"):
        return ["# reference log-probs: micro-batches packed by tokens (dynamic batch size)"]
    ref = _Parallel(config, f"{_ARF}.ref", batch.actor.gpus)
    samples = batch.sample * batch.n
    what = f"{batch.sample} prompts x {batch.n} rollouts / {ref.ranks()}"
    if samples % ref.dp:
        raise PreflightError(f"{what}: {samples} samples do not split over the reference's ranks")
    per_gpu = samples // ref.dp
    key = f"{_ARF}.ref.log_prob_micro_batch_size_per_gpu"
    micro = _micro_batch(config, key, per_gpu, what, "in the reference pass", "the first reference log-probs")
    return [f"# reference log-probs: {what} = {per_gpu} samples per GPU = {per_gpu // micro} micro-batches of {micro}"]


def _critic_lines(config: DictConfig, batch: _Batch) -> list[str]:
    """A critic's mini-batches (no shipped config trains one)."""
    if not _need_critic(config):
        return []
    critic = _Parallel(config, "critic", batch.actor.gpus)
    critic_mini = _whole(config, "critic.ppo_mini_batch_size")
    if batch.sample % critic_mini or (critic_mini * batch.n) % critic.dp:
        raise PreflightError(
            f"critic.ppo_mini_batch_size={critic_mini}: {batch.sample} prompts per update must be a multiple of it "
            f"and {critic_mini} x {batch.n} rollouts must split over {critic.ranks()} (workers/engine_workers.py)"
        )
    return [f"# critic: mini-batches of {critic_mini} prompts (its micro-batches are not checked here)"]


def _rollout_line(config: DictConfig, gpus: int) -> str:
    """The rollout engines tile the GPUs (workers/engine_workers.py init_model: world_size % infer_world_size)."""
    rollout = f"{_ARF}.rollout"
    tp = _whole(config, f"{rollout}.tensor_model_parallel_size")
    dp = _whole(config, f"{rollout}.data_parallel_size")
    replica = tp * dp * _whole(config, f"{rollout}.pipeline_model_parallel_size")
    if gpus % replica:
        raise PreflightError(
            f"rollout engines of {_count(replica, 'GPU')} ({rollout}.tensor_model_parallel_size={tp}) do not tile "
            f"{_count(gpus, 'GPU')} (workers/engine_workers.py init_model); use a multiple of {replica} GPUs"
        )
    name = _value(config, f"{rollout}.name")
    return f"# rollout: {name}, {_count(gpus // replica, 'engine')} of {_count(replica, 'GPU')} (tensor parallel {tp})"


def check_batch_sizes(config: DictConfig) -> list[str]:
    """Refuse batch sizes verl's workers would reject at run time; return the plan's batch lines.

    verl 0.9.1's ``validate_config`` checks only a few of these; the rest are assertions in the
    engine workers, reached at the first log-prob pass or the first actor update.
    """
    gpus = _whole(config, "trainer.nnodes") * _whole(config, "trainer.n_gpus_per_node")
    batch = _read_batch(config, gpus)
    updates = batch.sample // batch.mini
    head = (
        f"# batch: {batch.prompts} prompts x {batch.n} rollouts = {batch.prompts * batch.n} samples per step"
        + (f" in {batch.sync_step} local updates of {batch.sample} prompts" if batch.sync_step > 1 else "")
        + f"; {updates} mini-batch{'es' if updates > 1 else ''} of {batch.mini} prompts ({batch.mini_samples} samples)"
        + (f", {batch.epochs} epochs" if batch.epochs > 1 else "")
        + f"; {batch.actor.ranks()}"
    )
    return [
        head,
        *_actor_lines(config, batch),
        *_reference_lines(config, batch),
        *_critic_lines(config, batch),
        _rollout_line(config, gpus),
    ]


def check_lengths(config: DictConfig) -> list[str]:
    """Refuse a ``max_model_len`` that cannot hold a full prompt and response; return the plan line."""
    rollout = "actor_rollout_ref.rollout"
    prompt = _whole(config, "data.max_prompt_length")
    response = _whole(config, "data.max_response_length")
    need = prompt + response
    max_model_len = _whole(config, f"{rollout}.max_model_len", optional=True)
    batched = _whole(config, f"{rollout}.max_num_batched_tokens")
    chunked = _flag(config, f"{rollout}.enable_chunked_prefill")
    if max_model_len is None:
        # verl/workers/rollout/vllm_rollout/vllm_async_server.py _validate_configs
        raised = "" if chunked else ", and with chunked prefill off raises max_num_batched_tokens to it"
        return [
            f"# lengths: {prompt} prompt + {response} response tokens; {rollout}.max_model_len unset: verl uses "
            f"the model's max_position_embeddings{raised} (set {rollout}.max_model_len={need} to avoid that)"
        ]
    if max_model_len < need:
        raise PreflightError(
            f"{rollout}.max_model_len={max_model_len} is below data.max_prompt_length + data.max_response_length = "
            f"{prompt} + {response} = {need}: vLLM would cut responses short or refuse long prompts; "
            f"set {rollout}.max_model_len={need}"
        )
    if not chunked and batched < max_model_len:
        batched = max_model_len  # what verl does (vllm_async_server.py _validate_configs)
    return [
        f"# lengths: {prompt} prompt + {response} response tokens <= max_model_len {max_model_len}; "
        f"vLLM batches at most {batched} tokens per step"
    ]


def _paths_line(config: DictConfig) -> str:
    def shown(key: str) -> str:
        value = _value(config, key)
        if isinstance(value, ListConfig | list):
            return ",".join(str(v) for v in value)
        return str(value)

    return (
        f"# data: train {shown('data.train_files')}; validation {shown('data.val_files')}; "
        f"model {shown('actor_rollout_ref.model.path')}; checkpoints {shown('trainer.default_local_dir')}"
    )


def preflight(name: str, overrides: Sequence[str] = ()) -> list[str]:
    """Check the launch of config ``name`` with ``overrides``; return the plan lines (each ``# ...``).

    Raises :class:`PreflightError` with a one-line message on anything verl would reject later.

    >>> lines = preflight("speciarl_grpo", ["trainer.nnodes=2", "trainer.n_gpus_per_node=8"])
    >>> [line for line in lines if line.startswith("# actor update")]
    ['# actor update: 128 prompts x 10 rollouts / 16 GPUs = 80 samples per GPU per mini-batch = 4 micro-batches of 20']
    """
    check_config_name(name)
    overrides = list(overrides)
    check_overrides(overrides)
    try:
        config = compose_config_from_files(name, overrides)
    except Exception as error:  # Hydra's and OmegaConf's composition errors
        raise PreflightError(f"cannot compose {name} with these overrides: {_one_line(error)}") from None
    return check_config(config, name)


def check_config(config: DictConfig, name: str = "") -> list[str]:
    """The checks of a composed config (batch sizes, lengths); its plan lines, the first naming ``name``."""
    nnodes, per_node = _whole(config, "trainer.nnodes"), _whole(config, "trainer.n_gpus_per_node")
    nodes = _count(nnodes, "node")
    gpus = _count(nnodes * per_node, "training GPU")
    head = f"# config {name or '(composed)'}: {nodes} x {_count(per_node, 'GPU')} = {gpus}"
    return [head, *check_batch_sizes(config), *check_lengths(config), _paths_line(config)]


# ---------------------------------------------------------------------------------------------
# command line


def _parse_arguments(argv: Sequence[str]) -> tuple[str | None, list[str], bool]:
    """``(config name, overrides, help asked)``; options end at the first ``--``."""
    name, overrides, help_asked = None, [], False
    arguments = list(argv)
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        index += 1
        if argument == "--":
            overrides.extend(arguments[index:])
            break
        if argument in ("-h", "--help"):
            help_asked = True
        elif argument == "--config":
            if index >= len(arguments):
                raise PreflightError(f"--config needs a config name; {_USAGE}")
            name = arguments[index]
            index += 1
        elif argument.startswith("--config="):
            name = argument.split("=", 1)[1]
        elif argument.startswith("-"):
            raise PreflightError(f"unknown option {argument}; {_USAGE}")
        else:
            overrides.append(argument)
    return name, overrides, help_asked


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: plan lines on stdout and 0, or one ``preflight: `` line on stderr and 2."""
    try:
        name, overrides, help_asked = _parse_arguments(sys.argv[1:] if argv is None else argv)
        if help_asked:
            print(__doc__.strip().splitlines()[0] + "\n\n" + _USAGE)
            return 0
        if not name:
            raise PreflightError(f"--config NAME is required; {_USAGE}")
        lines = preflight(name, overrides)
    except PreflightError as error:
        message = " ".join(str(error).split())  # one line, whatever a value held
        print(f"preflight: {message}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
