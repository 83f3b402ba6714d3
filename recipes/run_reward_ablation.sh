#!/usr/bin/env bash
# Static-reward ablations: the same GRPO recipe with a fixed reward per verdict category instead
# of the SpeciaRL group reward (configs speciarl_grpo_<table>; paper main_cub/...reward3 and
# static_reward_variant/...scala1-3).
#
#   bash recipes/run_reward_ablation.sh scala2 --cub-root /data/CUB_200_2011
#
# Every other argument goes to run_speciarl_qwen25vl.sh (its options, then Hydra overrides);
# --dry-run prints the resolved commands without a GPU.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage="usage: bash recipes/run_reward_ablation.sh {reward3|scala1|scala2|scala3} [run_speciarl_qwen25vl.sh options] [hydra overrides...]"

case ${1:-} in
    reward3 | scala1 | scala2 | scala3)
        table=$1
        shift
        exec bash "$here/run_speciarl_qwen25vl.sh" --config "speciarl_grpo_$table" "$@"
        ;;
    -h | --help)
        echo "$usage"
        exit 0
        ;;
    *)
        echo "$usage" >&2
        exit 2
        ;;
esac
