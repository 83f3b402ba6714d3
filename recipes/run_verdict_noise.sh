#!/usr/bin/env bash
# Verdict-noise ablation: 5, 10 or 25 % of the training verdicts moved one level, on the 1,024-image
# CUB subset as in the paper (configs speciarl_grpo_noise<P>; paper noise_injection/...noise_<P>).
#
#   bash recipes/run_verdict_noise.sh 10 --cub-root /data/CUB_200_2011
#
# Every other argument goes to run_speciarl_qwen25vl.sh (its options, then Hydra overrides);
# --dry-run prints the resolved commands without a GPU.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage="usage: bash recipes/run_verdict_noise.sh {5|10|25} [run_speciarl_qwen25vl.sh options] [hydra overrides...]"

case ${1:-} in
    5 | 10 | 25)
        percent=$1
        shift
        exec bash "$here/run_speciarl_qwen25vl.sh" --config "speciarl_grpo_noise$percent" --train-subset 1024 "$@"
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
