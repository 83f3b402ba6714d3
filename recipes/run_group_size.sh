#!/usr/bin/env bash
# Group-size ablation: N = 5 or 15 rollouts per image instead of 10 (configs speciarl_grpo_n5 and
# speciarl_grpo_n15; paper main_cub/...bestpredn5, ...bestpredn15).
#
#   bash recipes/run_group_size.sh 5 --cub-root /data/CUB_200_2011
#
# Every other argument goes to run_speciarl_qwen25vl.sh (its options, then Hydra overrides);
# --dry-run prints the resolved commands without a GPU.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage="usage: bash recipes/run_group_size.sh {5|15} [run_speciarl_qwen25vl.sh options] [hydra overrides...]"

case ${1:-} in
    5 | 15)
        n=$1
        shift
        exec bash "$here/run_speciarl_qwen25vl.sh" --config "speciarl_grpo_n$n" "$@"
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
