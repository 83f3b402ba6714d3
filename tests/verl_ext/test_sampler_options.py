"""The DAPO options our replay buffer derives from the config tree (verl builds the buffer: test_group_stage_on_cpu)."""

import pytest
from omegaconf import OmegaConf

from speciarl_verl.verl_ext.sampler_options import resolve_buffer_options, root_config


def config(filter_groups=None, sampler=None, reward_model=None, reward_kwargs=None):
    return OmegaConf.create(
        {
            "trainer": {"v1": {"sampler": {"sampler_kwargs": {}, **(sampler or {})}}},
            "reward": {"reward_kwargs": reward_kwargs or {}, "reward_model": reward_model or {"enable": False}},
            "algorithm": {"filter_groups": filter_groups or {"enable": False}},
            "data": {"train_batch_size": 8, "gen_batch_size": 16},
        }
    )


def resolve(root, synchronous=True):
    return resolve_buffer_options(root_config(root.trainer.v1.sampler.sampler_kwargs), {}, synchronous)


def test_plain_grpo_samples_generation_batches_of_the_configured_size():
    options, settings = resolve(config(reward_kwargs={"group_mode": "single"}))
    assert options == {
        "filter_groups_metric": None,
        "sync_refill_failed_groups": False,
        "train_batch_size": 8,
        "gen_batch_size": 16,
        "max_inflight_gen_batches": 1,
    }
    assert settings.group_mode == "single"  # read from reward.reward_kwargs of the same tree


def test_dapo_group_filtering_refills_one_group_at_a_time():
    root = config(filter_groups={"enable": True, "metric": "acc", "max_inflight_gen_batches": 3})
    options, _ = resolve(root)
    assert (options["filter_groups_metric"], options["gen_batch_size"], options["max_inflight_gen_batches"]) == (
        "acc",
        1,
        3,
    )
    asynchronous, _ = resolve(root, synchronous=False)
    assert asynchronous == {"filter_groups_metric": "acc", "sync_refill_failed_groups": False}


def test_refilling_failed_groups_also_refills_one_group_at_a_time():
    options, _ = resolve(config(sampler={"sync_refill_failed_groups": True}))
    assert (options["sync_refill_failed_groups"], options["gen_batch_size"]) == (True, 1)


def test_sampler_kwargs_win_over_the_derived_options_and_reward_kwargs():
    root = config(filter_groups={"enable": True, "metric": "acc"}, reward_kwargs={"group_mode": "single"})
    explicit = {"gen_batch_size": 4, "reward_kwargs": {"scheme": "static"}}
    options, settings = resolve_buffer_options(root, explicit, synchronous=True)
    assert options["gen_batch_size"] == 4
    assert options["filter_groups_metric"] == "acc"
    assert (settings.scheme, settings.group_mode) == ("static", "all")


def test_configurations_that_would_train_on_the_wrong_reward_are_refused():
    with pytest.raises(ValueError, match=r"algorithm\.filter_groups\.metric must be set"):
        resolve(config(filter_groups={"enable": True, "metric": None}))
    with pytest.raises(ValueError, match="enable_resource_pool"):
        resolve(config(reward_model={"enable": True, "enable_resource_pool": False}))
    options, _ = resolve(config(reward_model={"enable": True, "enable_resource_pool": True}))
    assert options["train_batch_size"] == 8


def test_a_buffer_built_without_a_config_tree_derives_nothing():
    assert root_config({"a": 1}, None, OmegaConf.create({"x": 1})) is None
    options, settings = resolve_buffer_options(None, {"train_batch_size": 2, "other": 1}, synchronous=True)
    assert options == {"train_batch_size": 2}
    assert settings.scheme == "dynamic"
