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
    root = config(reward_kwargs={"group_mode": "single"})
    explicit = {"gen_batch_size": 4, "max_inflight_gen_batches": 2, "reward_kwargs": {"scheme": "static"}}
    options, settings = resolve_buffer_options(root, explicit, synchronous=True)
    assert (options["gen_batch_size"], options["max_inflight_gen_batches"]) == (4, 2)
    assert options["filter_groups_metric"] is None
    assert (settings.scheme, settings.group_mode) == ("static", "all")


def test_a_dapo_metric_given_to_the_sampler_alone_refills_one_group_at_a_time():
    # filter_groups_metric in sampler_kwargs without algorithm.filter_groups.enable: verl's sync buffer
    # filters, but refills in generation batches of data.gen_batch_size (16 here), so one evicted group
    # never earns a dispatch and sample() would poll forever
    options, _ = resolve_buffer_options(config(), {"filter_groups_metric": "acc"}, synchronous=True)
    assert (options["filter_groups_metric"], options["gen_batch_size"]) == ("acc", 1)


def test_a_generation_batch_that_would_make_sample_wait_forever_is_refused():
    dapo = config(filter_groups={"enable": True, "metric": "acc"})
    with pytest.raises(ValueError, match=r"gen_batch_size=4 with filter_groups_metric='acc'.*wait forever"):
        resolve_buffer_options(dapo, {"gen_batch_size": 4}, synchronous=True)
    with pytest.raises(ValueError, match="sync_refill_failed_groups=True"):
        resolve_buffer_options(config(), {"sync_refill_failed_groups": True, "gen_batch_size": 2}, synchronous=True)
    asynchronous, _ = resolve_buffer_options(dapo, {"gen_batch_size": 4}, synchronous=False)  # async refills by k
    assert asynchronous["gen_batch_size"] == 4


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
