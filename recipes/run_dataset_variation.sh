#!/usr/bin/env bash
# Training-domain ablation: the main recipe trained on another benchmark's images, or on the
# 6 x 500 mixed set (configs speciarl_grpo_<dataset> and speciarl_grpo_mixed; paper:
# dataset_variation/ and mixed_dataset/). The training parquet is yours to build first with
# `speciarl data build` / `speciarl data build-mixed` (recipes/README.md shows the commands);
# validation stays on CUB-200 test as in the main recipe, so --cub-root is needed to build that
# parquet the first time (or give --val-file):
#
#   bash recipes/run_dataset_variation.sh fgvc_aircraft --train-file data/fgvc_aircraft_train_3000_seed42_reference.parquet \
#       --cub-root /data/CUB_200_2011
#
# Every other argument goes to run_speciarl_qwen25vl.sh (its options, then Hydra overrides);
# --dry-run prints the resolved commands without a GPU.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage="usage: bash recipes/run_dataset_variation.sh {fgvc_aircraft|flowers102|food101|oxford_pets|mixed} --train-file PATH [--cub-root DIR | --val-file PATH] [run_speciarl_qwen25vl.sh options] [hydra overrides...]"

case ${1:-} in
    fgvc_aircraft | flowers102 | food101 | oxford_pets | mixed)
        variant=$1
        shift
        if [[ " $* " != *" --train-file "* ]]; then
            echo "run_dataset_variation.sh: --train-file is required: build the $variant parquet first (see recipes/README.md)" >&2
            exit 2
        fi
        exec bash "$here/run_speciarl_qwen25vl.sh" --config "speciarl_grpo_$variant" "$@"
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
