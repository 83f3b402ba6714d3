"""The DAPO sampler options verl 0.9.1 gives only its built-in replay buffer, derived for ours.

``RayPPOTrainer._build_replay_buffer`` passes ``filter_groups_metric``, the batch sizes,
the in-flight limit and ``sync_refill_failed_groups`` to its own buffer but not to a
custom sampler, so the group stage reads them from the config nodes verl reads them from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from speciarl_verl.reward_settings import RewardSettings

__all__ = ["FORWARDED_KWARGS", "resolve_buffer_options", "root_config"]

#: The replay-buffer keyword arguments derived here; the same keys in ``sampler_kwargs`` win.
FORWARDED_KWARGS = (
    "filter_groups_metric",
    "train_batch_size",
    "gen_batch_size",
    "max_inflight_gen_batches",
    "sync_refill_failed_groups",
)


def root_config(*nodes: Any) -> DictConfig | None:
    """The full trainer config the given sub-nodes hang from, if any of them is an OmegaConf node.

    >>> root = OmegaConf.create({"trainer": {"v1": {"sampler": {"sampler_kwargs": {}}}}, "reward": {}})
    >>> root_config(None, root.trainer.v1.sampler.sampler_kwargs) is root
    True
    """
    for node in nodes:
        if isinstance(node, DictConfig):
            root = node._get_root()
            if isinstance(root, DictConfig) and "trainer" in root and "reward" in root:
                return root
    return None


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _check_rewards_come_before_sampling(root: DictConfig) -> None:
    reward_model = root.reward.get("reward_model") or {}
    if reward_model.get("enable", False) and not reward_model.get("enable_resource_pool", False):
        raise ValueError(
            "SpeciaRL's group stage needs rewards at sampling time, but reward.reward_model.enable=True "
            "without reward.reward_model.enable_resource_pool scores after sampling; set "
            "reward.reward_model.enable_resource_pool=true or disable the reward model"
        )


def _derived_options(root: DictConfig, synchronous: bool, explicit: Mapping[str, Any]) -> dict[str, Any]:
    """The options verl derives for its own buffer; a DAPO metric given in ``explicit`` counts as enabling the
    filter (so the refill granularity follows it, as it would had ``algorithm.filter_groups`` enabled it)."""
    filter_groups = root.algorithm.get("filter_groups") or {}
    enabled = bool(filter_groups.get("enable", False))
    if enabled and not filter_groups.get("metric"):
        raise ValueError("algorithm.filter_groups.metric must be set when group filtering is enabled (e.g. acc)")
    metric = str(filter_groups.get("metric")) if enabled else None
    metric = explicit.get("filter_groups_metric", metric)
    refill_failed = bool(
        explicit.get("sync_refill_failed_groups", root.trainer.v1.sampler.get("sync_refill_failed_groups", False))
    )
    options: dict[str, Any] = {"filter_groups_metric": metric, "sync_refill_failed_groups": refill_failed}
    if synchronous:
        train_batch_size = int(root.data.train_batch_size)
        exact_refill = metric is not None or refill_failed
        options.update(
            train_batch_size=train_batch_size,
            gen_batch_size=1 if exact_refill else (root.data.get("gen_batch_size") or train_batch_size),
            max_inflight_gen_batches=int(filter_groups.get("max_inflight_gen_batches", 1)) if metric else 1,
        )
    return options


def _check_refill_granularity(options: Mapping[str, Any]) -> None:
    """Refuse sync options under which verl's ``sample`` can wait forever.

    verl's sync buffer refills evicted or failed groups in whole generation batches
    (``dispatch_count -= dispatch_count % gen_batch_size``): with a DAPO metric or failed-group
    refills and a ``gen_batch_size`` above 1, a single evicted group never earns a full batch of
    credit, nothing is dispatched, and ``sample`` polls forever.
    """
    refills = options.get("filter_groups_metric") is not None or options.get("sync_refill_failed_groups")
    if refills and options.get("gen_batch_size", 1) != 1:
        raise ValueError(
            f"trainer.v1.sampler.sampler_kwargs.gen_batch_size={options['gen_batch_size']} with "
            f"filter_groups_metric={options.get('filter_groups_metric')!r} / sync_refill_failed_groups="
            f"{options.get('sync_refill_failed_groups', False)}: verl's sync buffer refills one group at a time "
            "there and would wait forever for a larger batch; drop gen_batch_size (it is derived as 1)"
        )


def resolve_buffer_options(
    root: DictConfig | None, sampler_kwargs: Mapping[str, Any], synchronous: bool
) -> tuple[dict[str, Any], RewardSettings]:
    """The kwargs verl's ``_build_replay_buffer`` gives its own buffer, and our reward settings.

    Derived from ``algorithm.filter_groups``, ``data.train_batch_size``,
    ``data.gen_batch_size`` and ``trainer.v1.sampler.sync_refill_failed_groups`` (the batch
    sizes only for the synchronous buffer). Keys of :data:`FORWARDED_KWARGS` given in
    ``trainer.v1.sampler.sampler_kwargs`` take precedence, as does
    ``sampler_kwargs.reward_kwargs`` over ``reward.reward_kwargs``; the refill granularity
    is derived from the final DAPO metric, and a ``gen_batch_size`` under which verl's sync
    ``sample`` would wait forever is refused. ``root=None`` (no config tree: a buffer built by
    hand) derives nothing.

    >>> resolve_buffer_options(None, {"train_batch_size": 4}, synchronous=True)[0]
    {'train_batch_size': 4}
    """
    options: dict[str, Any] = {}
    settings = RewardSettings()
    explicit = dict(_plain(sampler_kwargs) or {})
    if root is not None:
        settings = RewardSettings.from_verl_config(root)
        _check_rewards_come_before_sampling(root)
        options.update(_derived_options(root, synchronous, explicit))
    for key in FORWARDED_KWARGS:
        if key in explicit:
            options[key] = explicit[key]
    if synchronous:
        _check_refill_granularity(options)
    if "reward_kwargs" in explicit:
        settings = RewardSettings.from_mapping(explicit["reward_kwargs"])
    return options, settings
