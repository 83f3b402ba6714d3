"""Adapters that plug SpeciaRL into verl 0.9.1 (these modules import verl and torch).

* :mod:`.reward_manager` - the per-rollout stage, registered as ``speciarl``;
* :mod:`.group_stage` - the group stage, a v1 replay buffer;
* :mod:`.sampler_options` - the DAPO options verl gives only its own buffer, derived for ours;
* :mod:`.config_checks` - start-up checks that both stages are wired;
* :mod:`.checked_dataset` - verl's dataset refusing a parquet file with a bad row before training.
"""
