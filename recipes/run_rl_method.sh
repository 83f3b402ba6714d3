#!/usr/bin/env bash
# RL-method ablations: Dr.GRPO and DAPO (with and without dynamic sampling), each with the SpeciaRL
# dynamic reward or the binary reward3 baseline (configs speciarl_<method>; paper rl_methods/...).
#
#   bash recipes/run_rl_method.sh dapo_ds --cub-root /data/CUB_200_2011
#
# Every other argument goes to run_speciarl_qwen25vl.sh (its options, then Hydra overrides);
# --dry-run prints the resolved commands without a GPU.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage="usage: bash recipes/run_rl_method.sh {drgrpo|drgrpo_reward3|dapo|dapo_reward3|dapo_ds|dapo_ds_reward3} [run_speciarl_qwen25vl.sh options] [hydra overrides...]"

case ${1:-} in
    drgrpo | drgrpo_reward3 | dapo | dapo_reward3 | dapo_ds | dapo_ds_reward3)
        method=$1
        shift
        exec bash "$here/run_speciarl_qwen25vl.sh" --config "speciarl_$method" "$@"
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
