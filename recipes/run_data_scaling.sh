#!/usr/bin/env bash
# Training-set-size ablation: 128, 1,024 or 2,048 CUB-200 train images instead of 3,000 (configs
# speciarl_grpo_data<N>; paper datascaling/128, 1024, 2048). The subset is drawn with the same seed
# by the method's own sampler (`random.sample`, the main recipe's default --sampler reference), which
# does not nest the sets: 2,048 are the first of the 3,000, but 128 and 1,024 are mostly, not wholly,
# among them. --sampler per_source draws the first N of one permutation instead, so the sets nest.
#
#   bash recipes/run_data_scaling.sh 1024 --cub-root /data/CUB_200_2011
#
# Every other argument goes to run_speciarl_qwen25vl.sh (its options, then Hydra overrides);
# --dry-run prints the resolved commands without a GPU.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage="usage: bash recipes/run_data_scaling.sh {128|1024|2048} [run_speciarl_qwen25vl.sh options] [hydra overrides...]"

case ${1:-} in
    128 | 1024 | 2048)
        size=$1
        shift
        exec bash "$here/run_speciarl_qwen25vl.sh" --config "speciarl_grpo_data$size" --train-subset "$size" "$@"
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
