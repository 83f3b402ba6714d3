#!/usr/bin/env bash
# SpeciaRL through verl's own trainer on a CPU, end to end, with a tiny policy: a debugging run.
#
#   bash recipes/run_speciarl_tiny_cpu.sh --steps 3 --out OUT [options] [-- hydra overrides...]
#   bash recipes/run_speciarl_tiny_cpu.sh --dry-run          # print the resolved commands, start nothing
#
# The sibling of run_speciarl_qwen25vl.sh for a machine without a GPU. Steps:
#   1. builds the synthetic_shapes training and validation parquets (`speciarl data build`) under
#      OUT/data if they are missing (`--task hidden`: synthetic_shapes_hidden, whose images show the
#      species clearly, faintly or not at all);
#   2. the policy: the tiny supervised Qwen2.5-VL this repository ships for the task
#      (speciarl_verl/cpu_debug/shipped_policy or shipped_policy_hidden, the same bits on every
#      machine), or --policy DIR;
#   3. judge: the offline rule tier by default; `--judge llm` starts the fake OpenAI-compatible
#      judge server (speciarl_verl.offline_fixtures.fake_judge_server) so the LLM path and its verdict cache run,
#      or, with --judge-endpoint URL, uses a judge that is already running (no server of its own);
#      --judge-api-key-env NAME sends the key in $NAME (and the fake server it starts then demands it);
#   4. runs `python -m verl.trainer.main_ppo -cp pkg://speciarl_verl.config -cn <--config>
#      +cpu_debug=tiny_cpu` for --steps steps with one validation pass and a checkpoint at the
#      last step: the hf_cpu rollout (transformers generate), one FSDP2 LoRA worker on gloo.
#      `--rollout vllm` composes +cpu_debug=tiny_cpu_vllm instead: verl's own vLLM rollout and weight
#      sync on vLLM's CPU backend, in .venv-vllm-rollout (`python -m speciarl_verl.cpu_debug.vllm_venv`
#      builds it; it is the default --python then).
#      Metrics go to OUT/metrics.jsonl (verl's file logger), checkpoints to OUT/checkpoints.
#      Running again with the same OUT and a larger --steps resumes from the last checkpoint
#      (step N+1), and the new steps' metrics are added to OUT/metrics.jsonl.
#   Several Ray nodes (tried on one machine by benchmarks/two_nodes.py): `--ray-address ADDR` joins a
#      running cluster instead of starting a Ray of its own (it drops tiny_cpu's ray_init.num_cpus and
#      num_gpus, which Ray refuses when joining); `--nnodes N` trains on N nodes of one fake GPU each
#      (trainer.nnodes=N, one FSDP rank per node over gloo, micro batches of 8/N samples so the 2 x 4
#      rollouts of a step split over the ranks, and reward.num_workers=N: verl spreads its reward workers
#      round-robin over the nodes). Start every node's Ray (`ray start --num-gpus 1 --num-cpus 8`) with
#      VERL_PLATFORM=cpu VERL_USE_EXTERNAL_MODULES=speciarl_verl.cpu_debug.activate VERL_ENGINE_DEVICE=cuda,
#      RAY_raylet_start_wait_time_s=180 and the secrets the reward reads (judge key, Redis password)
#      exported: Ray workers have the environment of `ray start`, not this shell's (the metrics path
#      reaches them through the job's runtime_env). The fake judge this script starts listens on 127.0.0.1:
#      with nodes on other machines, serve a judge they reach and pass --judge-endpoint.
# Arguments that are not options of this script are passed to verl, last, as Hydra overrides.
# Exit codes: 2 for a bad option, 1 when a build step or the judge fails, otherwise the training's.
set -euo pipefail

readonly SCRIPT_NAME=${BASH_SOURCE[0]##*/}

usage() {
    cat <<EOF
usage: bash recipes/${SCRIPT_NAME} [options] [--] [hydra overrides...]

  --out DIR            run folder: data/, checkpoints/, metrics.jsonl, logs (default ./tiny_cpu_run)
  --steps N            training steps, validation and checkpoint at the last one (default 3)
  --config NAME        shipped recipe to shrink (default speciarl_grpo; e.g. speciarl_drgrpo, speciarl_dapo_ds)
  --judge KIND         offline (rule tier, default) or llm (starts the fake judge server)
  --judge-endpoint URL with --judge llm: use this running OpenAI-compatible judge (http://HOST:PORT/v1)
                       instead of starting the fake one
  --judge-api-key-env NAME
                       with --judge llm: environment variable holding the judge's API key; the reward sends
                       it (reward.reward_kwargs.judge.llm.api_key_env) and the fake server this script starts
                       answers 401 without it. On a Ray cluster export it before \`ray start\` on every node
  --ray-address ADDR   join this running Ray cluster (HOST:PORT or auto) instead of starting a Ray instance
  --nnodes N           Ray nodes to train on, one fake GPU and one FSDP rank each (default 1; above 1 needs
                       --ray-address); also one reward worker per node
  --rollout KIND       hf_cpu (transformers generate, default) or vllm (verl's vLLM rollout on vLLM's CPU
                       backend, +cpu_debug=tiny_cpu_vllm; needs .venv-vllm-rollout)
  --train-rows N       synthetic training images (default 16)
  --val-rows N         synthetic validation images (default 8)
  --task NAME          shapes (synthetic_shapes, default) or hidden (synthetic_shapes_hidden: graded species
                       visibility); picks the dataset and the shipped policy
  --policy DIR         use this tiny policy instead of the shipped one
  --python BIN         Python of the environment with speciarl-verl[train] (default: the repository's
                       .venv/bin/python if it exists, else python3; with --rollout vllm, its
                       .venv-vllm-rollout/bin/python)
  --timeout SECONDS    stop the training after this long (default 1800; 0 = no limit)
  --dry-run            print the resolved commands and exit 0
  -h, --help           this text
EOF
}

die() {
    local code=$1
    shift
    printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit "$code"
}

# ---------------------------------------------------------------------------------------------
# options

out=tiny_cpu_run
steps=3
config=speciarl_grpo
judge=offline
rollout=hf_cpu
train_rows=16
val_rows=8
task=shapes
policy=""
python_bin=""
judge_endpoint=""
judge_key_env=""
ray_address=""
nnodes=1
train_timeout=1800
dry_run=0
overrides=()
declare -A seen=()

while (($#)); do
    option=$1
    case $option in
        -h | --help)
            usage
            exit 0
            ;;
        --dry-run)
            dry_run=1
            shift
            continue
            ;;
        --)
            shift
            overrides+=("$@")
            break
            ;;
        --*)
            (($# >= 2)) || die 2 "$option needs a value"
            value=$2
            shift 2
            [[ -z ${seen[$option]:-} ]] || die 2 "$option given twice (${seen[$option]} and $value)"
            seen[$option]=$value
            case $option in
                --out) out=$value ;;
                --steps) steps=$value ;;
                --config) config=$value ;;
                --judge) judge=$value ;;
                --rollout) rollout=$value ;;
                --train-rows) train_rows=$value ;;
                --val-rows) val_rows=$value ;;
                --task) task=$value ;;
                --policy) policy=$value ;;
                --python) python_bin=$value ;;
                --timeout) train_timeout=$value ;;
                --judge-endpoint) judge_endpoint=$value ;;
                --judge-api-key-env) judge_key_env=$value ;;
                --ray-address) ray_address=$value ;;
                --nnodes) nnodes=$value ;;
                *) die 2 "unknown option $option (see --help)" ;;
            esac
            ;;
        *)
            overrides+=("$1")
            shift
            ;;
    esac
done

is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

is_count "$steps" || die 2 "--steps must be a positive number, got '$steps'"
is_count "$train_rows" || die 2 "--train-rows must be a positive number, got '$train_rows'"
is_count "$val_rows" || die 2 "--val-rows must be a positive number, got '$val_rows'"
[[ $train_timeout =~ ^[0-9]+$ ]] || die 2 "--timeout must be a number of seconds, got '$train_timeout'"
[[ $config =~ ^[A-Za-z0-9][A-Za-z0-9_]*$ ]] || die 2 "--config must be a config name such as speciarl_grpo, got '$config'"
[[ $judge == offline || $judge == llm ]] || die 2 "--judge must be offline or llm, got '$judge'"
[[ $rollout == hf_cpu || $rollout == vllm ]] || die 2 "--rollout must be hf_cpu or vllm, got '$rollout'"
if [[ -n $judge_endpoint || -n $judge_key_env ]]; then
    [[ $judge == llm ]] || die 2 "--judge-endpoint and --judge-api-key-env need --judge llm"
fi
if [[ -n $judge_endpoint && ! $judge_endpoint =~ ^https?://[^/]+(/.*)?/v1/?$ ]]; then
    die 2 "--judge-endpoint must be an OpenAI-compatible base URL ending in /v1, got '$judge_endpoint'"
fi
judge_endpoint=${judge_endpoint%/}
if [[ -n $judge_key_env && ! $judge_key_env =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    die 2 "--judge-api-key-env must be an environment variable name such as SPECIARL_JUDGE_API_KEY, got '$judge_key_env'"
fi
if [[ -n $ray_address && ! $ray_address =~ ^(auto|[A-Za-z0-9._-]+:[0-9]+)$ ]]; then
    die 2 "--ray-address must be HOST:PORT of a running Ray cluster's head (or auto), got '$ray_address'"
fi
is_count "$nnodes" || die 2 "--nnodes must be a positive number, got '$nnodes'"
# a step is train_batch_size 2 x rollout.n 4 = 8 samples, split evenly over the nnodes ranks
((8 % nnodes == 0)) || die 2 "--nnodes must divide the 8 rollouts of a tiny step (1, 2, 4 or 8), got $nnodes"
if ((nnodes > 1)) && [[ -z $ray_address ]]; then
    die 2 "--nnodes $nnodes trains on a Ray cluster: start Ray on every node, then pass --ray-address HEAD:PORT"
fi
case $task in
    shapes) dataset=synthetic_shapes shipped_policy=shipped_policy ;;
    hidden) dataset=synthetic_shapes_hidden shipped_policy=shipped_policy_hidden ;;
    *) die 2 "--task must be shapes or hidden, got '$task'" ;;
esac

repository=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ $rollout == vllm ]]; then
    cpu_debug=tiny_cpu_vllm
    if [[ -z $python_bin ]]; then
        python_bin=$repository/.venv-vllm-rollout/bin/python
        [[ -x $python_bin ]] || die 2 "--rollout vllm needs $repository/.venv-vllm-rollout; build it with: python -m speciarl_verl.cpu_debug.vllm_venv (or pass --python)"
    fi
else
    cpu_debug=tiny_cpu
    if [[ -z $python_bin ]]; then
        # the environment `make demo` / `make install` builds, when there is one: a fresh shell need not activate it
        python_bin=python3
        [[ ! -x $repository/.venv/bin/python ]] || python_bin=$repository/.venv/bin/python
    fi
fi

absolute() {
    if [[ $1 == /* ]]; then printf '%s\n' "$1"; else printf '%s\n' "$PWD/${1#./}"; fi
}

out=$(absolute "$out")
data_dir=$out/data
train_file=$data_dir/${dataset}_train_${train_rows}.parquet
val_file=$data_dir/${dataset}_val_${val_rows}.parquet
if [[ -n $policy ]]; then
    policy=$(absolute "$policy")
else
    policy=$repository/speciarl_verl/cpu_debug/$shipped_policy
fi
judge_log=$out/fake_judge.log
train_log=$out/train.log

# ---------------------------------------------------------------------------------------------
# commands (printed exactly as they are run)

show() {
    local word line=""
    for word in "$@"; do
        if [[ ! $word =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then
            word="'${word//\'/\'\\\'\'}'"
        fi
        line+="${line:+ }$word"
    done
    printf '%s\n' "$line"
}

make_build_command() {
    # make_build_command SPLIT ROWS OUT: sets build_command (the synthetic set needs no source: --root is a dummy)
    build_command=("$python_bin" -m speciarl_verl.cli data build --dataset "$dataset" --root "$data_dir"
        --split "$1" --subset "$2" --seed 0 --no-progress --out "$3")
}

# verl's file logger truncates its file: keep_metrics / merge_metrics carry earlier launches over (resume)
# a busy 2-core box can take longer than Ray's default 60 s to register its raylet
train_command=(env "VERL_FILE_LOGGER_PATH=$out/metrics.jsonl"
    "RAY_raylet_start_wait_time_s=${RAY_raylet_start_wait_time_s:-180}"
    VERL_PLATFORM=cpu VERL_ENGINE_DEVICE=cuda VERL_USE_EXTERNAL_MODULES=speciarl_verl.cpu_debug.activate
    "$python_bin" -m verl.trainer.main_ppo -cp pkg://speciarl_verl.config -cn "$config" "+cpu_debug=$cpu_debug"
    "data.train_files=$train_file"
    "data.val_files=$val_file"
    "actor_rollout_ref.model.path=$policy"
    "trainer.total_training_steps=$steps"
    "trainer.test_freq=$steps"
    "trainer.save_freq=$steps"
    "trainer.default_local_dir=$out/checkpoints"
    "trainer.experiment_name=tiny_cpu_$config")
if [[ $judge == llm ]]; then
    train_command+=(reward.reward_kwargs.judge.kind=llm
        "reward.reward_kwargs.judge.llm.endpoints=[JUDGE_URL]"
        reward.reward_kwargs.judge.llm.model=fake-judge
        "reward.reward_kwargs.judge.cache.path=$out/verdicts.sqlite")
fi
if [[ -n $judge_key_env ]]; then
    train_command+=("reward.reward_kwargs.judge.llm.api_key_env=$judge_key_env")
fi
if [[ -n $ray_address ]]; then
    # Ray refuses num_cpus / num_gpus when joining a cluster: its nodes declared theirs at `ray start`
    # and its workers (the TaskRunner with verl's file logger among them) do not see this shell's environment
    train_command+=(ray_kwargs.ray_init.num_cpus=null "~ray_kwargs.ray_init.num_gpus"
        "+ray_kwargs.ray_init.address=$ray_address"
        "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH=$out/metrics.jsonl")
fi
if ((nnodes > 1)); then
    micro=$((8 / nnodes))
    train_command+=("trainer.nnodes=$nnodes" trainer.n_gpus_per_node=1 "reward.num_workers=$nnodes"
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=$micro"
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=$micro"
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=$micro")
fi
train_command+=(${overrides[@]+"${overrides[@]}"})
if ((train_timeout > 0)); then
    # a failing generate makes verl re-dispatch the prompt forever: never wait unbounded
    train_command=(timeout --foreground --signal=INT --kill-after=60 "$train_timeout" "${train_command[@]}")
fi

judge_command=("$python_bin" -u -m speciarl_verl.offline_fixtures.fake_judge_server)
[[ -z $judge_key_env ]] || judge_command+=(--api-key-env "$judge_key_env")

print_plan() {
    echo "# SpeciaRL tiny CPU run: config $config, task $task, $steps steps, judge $judge, rollout $rollout, out $out"
    if [[ -n $ray_address ]]; then
        echo "# Ray: the running cluster at $ray_address, $nnodes node(s); its workers have the environment \`ray start\` had${judge_key_env:+ (export \$$judge_key_env before it)}"
    fi
    local split rows file
    for split in train val; do
        if [[ $split == train ]]; then rows=$train_rows file=$train_file; else rows=$val_rows file=$val_file; fi
        if [[ -f $file ]]; then
            echo "# $split parquet exists, not rebuilt: $file"
        else
            make_build_command "$split" "$rows" "$file"
            show "${build_command[@]}"
        fi
    done
    echo "# tiny policy: $policy"
    if [[ $judge == llm && -n $judge_endpoint ]]; then
        echo "# judge: the running server $judge_endpoint (JUDGE_URL; checked at $judge_endpoint/models)"
    elif [[ $judge == llm ]]; then
        echo "# fake judge server (log $judge_log); JUDGE_URL is the address it prints"
        show "${judge_command[@]}"
    fi
    show "${train_command[@]}"
}

print_plan
if ((dry_run)); then
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# run

judge_pid=""

stop_judge() {
    if [[ -n $judge_pid ]] && kill -0 "$judge_pid" 2>/dev/null; then
        kill -TERM "$judge_pid" 2>/dev/null || true
        wait "$judge_pid" 2>/dev/null || true
    fi
    judge_pid=""
}

on_signal() {
    stop_judge
    exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

run_step() {
    show "$@"
    "$@" || die 1 "step failed: $1 ... (exit $?)"
}

# one line instead of a traceback when the interpreter lacks the package or verl (a fresh shell's python3)
"$python_bin" -c 'import speciarl_verl, verl, PIL' 2>/dev/null ||
    die 2 "$python_bin cannot import speciarl_verl, verl and PIL: run \`make install\` (it builds $repository/.venv, used by default) or pass --python the interpreter of an environment with speciarl-verl[train]"

mkdir -p "$data_dir"
for split in train val; do
    if [[ $split == train ]]; then rows=$train_rows file=$train_file; else rows=$val_rows file=$val_file; fi
    if [[ ! -f $file ]]; then
        make_build_command "$split" "$rows" "$file"
        run_step "${build_command[@]}"
    fi
done
[[ -f $policy/config.json ]] || die 2 "the policy $policy holds no model (no config.json)"

if [[ -n $judge_key_env && -z ${!judge_key_env:-} ]]; then
    die 2 "--judge-api-key-env names $judge_key_env, which is not set; export it with the judge's API key"
fi

probe_judge() {
    # probe_judge URL: 0 when GET URL/models answers 200 (with the key, if any), 3 on 401/403, 1 otherwise;
    # the key stays in the environment (the variable's name is the argument), never on a command line
    "$python_bin" - "$1/models" "$judge_key_env" <<'PY'
import os, sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1])
if sys.argv[2]:
    request.add_header("Authorization", f"Bearer {os.environ[sys.argv[2]]}")
try:
    urllib.request.urlopen(request, timeout=10).close()
except urllib.error.HTTPError as error:
    sys.exit(3 if error.code in (401, 403) else 1)
except OSError:
    sys.exit(1)
PY
}

if [[ $judge == llm && -n $judge_endpoint ]]; then
    status=0
    probe_judge "$judge_endpoint" || status=$?
    ((status != 3)) || die 2 "the judge at $judge_endpoint refuses the request (HTTP 401/403): pass --judge-api-key-env NAME, the variable holding its key"
    ((status == 0)) || die 1 "the judge at $judge_endpoint/models does not answer"
    echo "$SCRIPT_NAME: judge at $judge_endpoint"
    for index in "${!train_command[@]}"; do
        train_command[index]=${train_command[index]//JUDGE_URL/$judge_endpoint}
    done
elif [[ $judge == llm ]]; then
    "${judge_command[@]}" >"$judge_log" 2>&1 &
    judge_pid=$!
    judge_port=""
    for _ in $(seq 100); do
        judge_port=$(sed -n 's/^PORT \([0-9][0-9]*\)$/\1/p' "$judge_log" 2>/dev/null | head -n 1)
        [[ -n $judge_port ]] && break
        kill -0 "$judge_pid" 2>/dev/null || break
        sleep 0.2
    done
    if [[ -z $judge_port ]]; then
        cat "$judge_log" >&2 || true
        stop_judge
        die 1 "the fake judge server did not start (log $judge_log)"
    fi
    echo "$SCRIPT_NAME: fake judge at http://127.0.0.1:$judge_port/v1"
    for index in "${!train_command[@]}"; do
        train_command[index]=${train_command[index]//JUDGE_URL/http://127.0.0.1:$judge_port/v1}
    done
fi

metrics=$out/metrics.jsonl
previous_metrics=$out/metrics.previous.jsonl

keep_metrics() {
    # a resumed run: set the earlier launches' lines aside before verl truncates the file
    if [[ -f $metrics ]]; then
        cat "$metrics" >>"$previous_metrics"
        rm -f "$metrics"
    fi
}

merge_metrics() {
    if [[ -f $previous_metrics ]]; then
        cat "$previous_metrics" "$metrics" >"$metrics.tmp" 2>/dev/null || cat "$previous_metrics" >"$metrics.tmp"
        mv "$metrics.tmp" "$metrics"
        rm -f "$previous_metrics"
    fi
}

keep_metrics
show "${train_command[@]}"
status=0
"${train_command[@]}" </dev/null 2>&1 | tee -a "$train_log" || status=${PIPESTATUS[0]}
merge_metrics
stop_judge
if ((status != 0)); then
    die "$status" "training failed (exit $status); log $train_log"
fi
echo "$SCRIPT_NAME: done: metrics $out/metrics.jsonl, checkpoints $out/checkpoints"
