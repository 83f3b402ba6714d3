#!/usr/bin/env bash
# SpeciaRL on one GPU node, in one command: training set, judge server, verl training.
#
#   bash recipes/run_speciarl_qwen25vl.sh --cub-root /data/CUB_200_2011 [options] [-- hydra overrides...]
#   bash recipes/run_speciarl_qwen25vl.sh --dry-run          # print the resolved commands, start nothing
#
# Steps:
#   1. builds the CUB-200 training parquet (train split, --train-subset images, --seed) and the
#      validation parquet (test split, --val-subset images) under --data-dir if they are missing;
#   2. starts the judge's vLLM server on --judge-gpus (loopback only, with an API key generated for
#      the run) and waits for /health, or checks that the server given with --judge-endpoint answers;
#   3. runs `python -m verl.trainer.main_ppo -cp pkg://speciarl_verl.config -cn <--config>` on
#      --train-gpus. Arguments that are not options of this script are passed to verl, last, as
#      Hydra overrides (so they win over the ones this script adds).
# Whatever the script started is stopped when it exits, also on Ctrl-C or SIGTERM.
#
# GPU numbers count the GPUs this job may use: positions in CUDA_VISIBLE_DEVICES when it is set
# (as SLURM sets it), else nvidia-smi's indices. Exit codes: 2 when the machine or the arguments
# cannot run the recipe (no GPU, no vLLM, no dataset root, bad option), 1 when the judge server
# fails, otherwise the training's own exit code.
set -euo pipefail

readonly SCRIPT_NAME=${BASH_SOURCE[0]##*/}

usage() {
    cat <<EOF
usage: bash recipes/${SCRIPT_NAME} [options] [--] [hydra overrides...]

config and data
  --config NAME            shipped config to train with (default speciarl_grpo; see recipes/README.md)
  --cub-root DIR           extracted CUB_200_2011 (or its parent); needed only to build a missing parquet
  --data-dir DIR           where the parquet files are kept and built (default ./data)
  --train-subset N         training images drawn from CUB-200 train (default 3000)
  --val-subset N|all       validation images drawn from CUB-200 test (default 500)
  --seed N                 seed of both draws (default 42)
  --train-file PATH        train on this parquet instead (nothing is built)
  --val-file PATH          validate on this parquet instead (nothing is built)
GPUs
  --train-gpus LIST        GPUs of the training job (default 0,1,2,3; sets trainer.n_gpus_per_node)
judge
  --judge-endpoint URL     use this running OpenAI-compatible judge (http://HOST:PORT/v1); start none
  --judge-model NAME       model the judge server loads and the reward asks for
                           (default Qwen/Qwen3-30B-A3B-Instruct-2507)
  --judge-gpus LIST        GPUs of the judge server (default 4,5; tensor parallel = their number)
  --judge-port PORT        port of the judge server (default 8001)
  --judge-max-model-len N  context length of the judge server (default 4096)
  --judge-gpu-memory F     GPU memory share of the judge server (default 0.9)
  --judge-arg ARG          one more argument for the judge's vLLM server (repeatable)
  --judge-wait SECONDS     how long to wait for the judge to answer (default 1800)
  --judge-api-key-env NAME environment variable holding the judge's API key (vllm serve --api-key): the
                           reward sends it, on every node. With --judge-endpoint: none unless given. A judge
                           this script starts always gets one: the variable's value, or a key generated for
                           the run (default NAME: SPECIARL_JUDGE_API_KEY)
other
  --python BIN             Python of the environment with speciarl-verl[gpu,train] (default python3)
  --log-dir DIR            where the judge server writes its log (default ./logs)
  --dry-run                print the resolved commands and exit 0 (no GPU needed)
  -h, --help               this text
EOF
}

die() {
    # die CODE MESSAGE...
    local code=$1
    shift
    printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit "$code"
}

# ---------------------------------------------------------------------------------------------
# options

config=speciarl_grpo
cub_root=""
data_dir=data
train_subset=3000
val_subset=500
seed=42
train_file=""
val_file=""
train_gpus=0,1,2,3
judge_endpoint=""
judge_model=Qwen/Qwen3-30B-A3B-Instruct-2507
judge_gpus=4,5
judge_port=8001
judge_max_model_len=4096
judge_gpu_memory=0.9
judge_args=()
judge_wait=1800
judge_key_env=""
python_bin=python3
log_dir=logs
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
            if [[ $option != --judge-arg ]]; then
                [[ -z ${seen[$option]:-} ]] || die 2 "$option given twice (${seen[$option]} and $value)"
                seen[$option]=$value
            fi
            case $option in
                --config) config=$value ;;
                --cub-root) cub_root=$value ;;
                --data-dir) data_dir=$value ;;
                --train-subset) train_subset=$value ;;
                --val-subset) val_subset=$value ;;
                --seed) seed=$value ;;
                --train-file) train_file=$value ;;
                --val-file) val_file=$value ;;
                --train-gpus) train_gpus=$value ;;
                --judge-endpoint) judge_endpoint=$value ;;
                --judge-model) judge_model=$value ;;
                --judge-gpus) judge_gpus=$value ;;
                --judge-port) judge_port=$value ;;
                --judge-max-model-len) judge_max_model_len=$value ;;
                --judge-gpu-memory) judge_gpu_memory=$value ;;
                --judge-arg) judge_args+=("$value") ;;
                --judge-wait) judge_wait=$value ;;
                --judge-api-key-env) judge_key_env=$value ;;
                --python) python_bin=$value ;;
                --log-dir) log_dir=$value ;;
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
is_gpu_list() { [[ $1 =~ ^[0-9]+(,[0-9]+)*$ ]]; }

[[ $config =~ ^[A-Za-z0-9][A-Za-z0-9_]*$ ]] || die 2 "--config must be a config name such as speciarl_grpo, got '$config'"
is_count "$train_subset" || die 2 "--train-subset must be a positive number, got '$train_subset'"
[[ $val_subset == all ]] || is_count "$val_subset" || die 2 "--val-subset must be a positive number or 'all', got '$val_subset'"
[[ $seed =~ ^[0-9]+$ ]] || die 2 "--seed must be a number, got '$seed'"
is_gpu_list "$train_gpus" || die 2 "--train-gpus must be a comma list such as 0,1,2,3, got '$train_gpus'"
is_gpu_list "$judge_gpus" || die 2 "--judge-gpus must be a comma list such as 4,5, got '$judge_gpus'"
is_count "$judge_port" || die 2 "--judge-port must be a port number, got '$judge_port'"
is_count "$judge_wait" || die 2 "--judge-wait must be a number of seconds, got '$judge_wait'"
if [[ -n $judge_endpoint && ! $judge_endpoint =~ ^https?://[^/]+(/.*)?/v1/?$ ]]; then
    die 2 "--judge-endpoint must be an OpenAI-compatible base URL ending in /v1, got '$judge_endpoint'"
fi
if [[ -n $judge_key_env && ! $judge_key_env =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    die 2 "--judge-api-key-env must be an environment variable name such as SPECIARL_JUDGE_API_KEY, got '$judge_key_env'"
fi

# ---------------------------------------------------------------------------------------------
# resolved values

absolute() {
    if [[ $1 == /* ]]; then printf '%s\n' "$1"; else printf '%s\n' "$PWD/${1#./}"; fi
}

# GPU numbers -> device ids: positions in CUDA_VISIBLE_DEVICES when it is set, else the numbers as given.
device_ids() {
    local list=$1 flag=$2 out="" index
    local -a visible=()
    [[ -n ${CUDA_VISIBLE_DEVICES:-} ]] && IFS=, read -r -a visible <<<"$CUDA_VISIBLE_DEVICES"
    for index in ${list//,/ }; do
        if ((${#visible[@]})); then
            ((index < ${#visible[@]})) || die 2 "$flag asks for GPU $index but CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES has ${#visible[@]}"
            out+="${out:+,}${visible[index]}"
        else
            out+="${out:+,}$index"
        fi
    done
    printf '%s\n' "$out"
}

count_items() {
    local -a items
    IFS=, read -r -a items <<<"$1"
    printf '%s\n' "${#items[@]}"
}

data_dir=$(absolute "$data_dir")
log_dir=$(absolute "$log_dir")
if [[ -n $train_file ]]; then
    train_file=$(absolute "$train_file")
    build_train=0
else
    train_file=$data_dir/cub200_train_${train_subset}_seed${seed}.parquet
    build_train=1
fi
if [[ -n $val_file ]]; then
    val_file=$(absolute "$val_file")
    build_val=0
elif [[ $val_subset == all ]]; then
    val_file=$data_dir/cub200_test_all.parquet
    build_val=1
else
    val_file=$data_dir/cub200_test_${val_subset}_seed${seed}.parquet
    build_val=1
fi

train_devices=$(device_ids "$train_gpus" --train-gpus)
n_train_gpus=$(count_items "$train_gpus")
start_judge=0
if [[ -z $judge_endpoint ]]; then
    start_judge=1
    judge_devices=$(device_ids "$judge_gpus" --judge-gpus)
    judge_tp=$(count_items "$judge_gpus")
    judge_endpoint=http://127.0.0.1:$judge_port/v1
    judge_log=$log_dir/judge_vllm_$judge_port.log
    # even on loopback: every user of a shared node reaches 127.0.0.1
    judge_key_env=${judge_key_env:-SPECIARL_JUDGE_API_KEY}
    for gpu in ${judge_devices//,/ }; do
        [[ ,$train_devices, != *",$gpu,"* ]] || die 2 "GPU $gpu is in both --train-gpus and --judge-gpus"
    done
fi
judge_endpoint=${judge_endpoint%/}

# ---------------------------------------------------------------------------------------------
# commands (printed exactly as they are run)

show() {
    # one shell-quoted command line: plain words as they are, anything else in single quotes
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
    # make_build_command SPLIT SUBSET OUT: sets build_command
    build_command=("$python_bin" -m speciarl_verl.cli data build --dataset cub200
        --root "${cub_root:-/path/to/CUB_200_2011}" --split "$1")
    [[ $2 == all ]] || build_command+=(--subset "$2")
    build_command+=(--seed "$seed" --out "$3")
}

judge_command=(env "CUDA_VISIBLE_DEVICES=${judge_devices:-}" "$python_bin" -m vllm.entrypoints.openai.api_server
    --model "$judge_model" --served-model-name "$judge_model" --host 127.0.0.1 --port "$judge_port"
    --tensor-parallel-size "${judge_tp:-1}" --gpu-memory-utilization "$judge_gpu_memory"
    --max-model-len "$judge_max_model_len" "${judge_args[@]}")

train_command=(env "CUDA_VISIBLE_DEVICES=$train_devices" "$python_bin" -m verl.trainer.main_ppo
    -cp pkg://speciarl_verl.config -cn "$config"
    "data.train_files=$train_file"
    "data.val_files=$val_file"
    "trainer.n_gpus_per_node=$n_train_gpus"
    "reward.reward_kwargs.judge.llm.endpoints=[$judge_endpoint]"
    "reward.reward_kwargs.judge.llm.model=$judge_model"
    ${judge_key_env:+"reward.reward_kwargs.judge.llm.api_key_env=$judge_key_env"}
    "${overrides[@]}")

plan_parquet() {
    # plan_parquet STEP SPLIT SUBSET FILE BUILD
    if (($5 == 0)); then
        echo "# $1. $2 parquet given: $4"
    elif [[ -f $4 ]]; then
        echo "# $1. $2 parquet exists, not rebuilt: $4"
    else
        if [[ -n $cub_root ]]; then
            echo "# $1. build the $2 parquet from $cub_root"
        else
            echo "# $1. build the $2 parquet (needs --cub-root)"
        fi
        make_build_command "$2" "$3" "$4"
        show "${build_command[@]}"
    fi
}

print_plan() {
    echo "# SpeciaRL recipe: config $config"
    plan_parquet 1 train "$train_subset" "$train_file" "$build_train"
    plan_parquet 2 test "$val_subset" "$val_file" "$build_val"
    if ((start_judge)); then
        echo "# 3. judge server on GPUs $judge_devices (log $judge_log), then wait for ${judge_endpoint%/v1}/health"
        echo "#    its API key: VLLM_API_KEY in its environment, from \$$judge_key_env (generated if unset)"
        show "${judge_command[@]}"
    else
        echo "# 3. judge: the running server $judge_endpoint (wait for $judge_endpoint/models)"
        [[ -z $judge_key_env ]] || echo "#    with the API key in \$$judge_key_env"
    fi
    echo "# 4. training on GPUs $train_devices"
    show "${train_command[@]}"
}

print_plan
if ((dry_run)); then
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# pre-flight: GPUs, the [gpu] extra, the dataset root

command -v nvidia-smi >/dev/null 2>&1 ||
    die 2 "no nvidia-smi on PATH: this recipe needs NVIDIA GPUs (use --dry-run to see the commands)"
gpu_count=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | grep -c . || true)
((gpu_count > 0)) || die 2 "nvidia-smi lists no GPU: this recipe needs NVIDIA GPUs (use --dry-run to see the commands)"
for gpu in ${train_devices//,/ } ${judge_devices:+${judge_devices//,/ }}; do
    # device ids from CUDA_VISIBLE_DEVICES may be UUIDs; only numbers can be checked against the count
    [[ ! $gpu =~ ^[0-9]+$ ]] || ((gpu < gpu_count)) || die 2 "GPU $gpu is not on this machine (nvidia-smi lists $gpu_count)"
done
"$python_bin" -c 'import vllm' 2>/dev/null ||
    die 2 "$python_bin cannot import vllm, the [gpu] extra is missing: pip install 'speciarl-verl[gpu,train]' (or pass --python)"
"$python_bin" -c 'import speciarl_verl, verl' 2>/dev/null ||
    die 2 "$python_bin cannot import speciarl_verl and verl: pip install 'speciarl-verl[gpu,train]'"
if { ((build_train)) && [[ ! -f $train_file ]]; } || { ((build_val)) && [[ ! -f $val_file ]]; }; then
    [[ -n $cub_root ]] || die 2 "the CUB-200 parquet files are missing and --cub-root is not given"
    [[ -d $cub_root ]] || die 2 "--cub-root $cub_root is not a folder"
fi
[[ -f $train_file || $build_train == 1 ]] || die 2 "--train-file $train_file does not exist"
[[ -f $val_file || $build_val == 1 ]] || die 2 "--val-file $val_file does not exist"
if [[ -n $judge_key_env && -z ${!judge_key_env:-} ]]; then
    ((start_judge)) || die 2 "--judge-api-key-env names $judge_key_env, which is not set; export it with the judge's API key"
    # the key is never on a command line (ps shows those to every user): only in environments
    printf -v "$judge_key_env" '%s' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
fi
# exported for the judge server, the health check and the training (whose local Ray workers inherit it)
[[ -z $judge_key_env ]] || export "${judge_key_env?}"

# ---------------------------------------------------------------------------------------------
# run; stop what was started on exit, Ctrl-C and SIGTERM

judge_pid=""
train_pid=""

stop_group() {
    # stop_group PID NAME SIGNAL GRACE_SECONDS: SIGNAL to the process group, then SIGTERM, then SIGKILL
    local pid=$1 name=$2 signal=$3 grace=$4 waited=0
    if [[ -z $pid ]] || ! kill -0 -- "-$pid" 2>/dev/null; then
        return 0
    fi
    echo "$SCRIPT_NAME: stopping the $name (process group $pid)" >&2
    kill "-$signal" -- "-$pid" 2>/dev/null || true
    while kill -0 -- "-$pid" 2>/dev/null && ((waited < grace)); do
        sleep 1
        waited=$((waited + 1))
    done
    if kill -0 -- "-$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || true
        sleep 5
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    # verl's driver shuts Ray down on SIGINT (KeyboardInterrupt); vLLM's server exits cleanly on SIGTERM
    stop_group "$train_pid" training INT 60
    stop_group "$judge_pid" "judge server" TERM 30
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

run_step() {
    show "$@"
    "$@"
}

if ((build_train)) && [[ ! -f $train_file ]]; then
    make_build_command train "$train_subset" "$train_file"
    run_step "${build_command[@]}"
fi
if ((build_val)) && [[ ! -f $val_file ]]; then
    make_build_command test "$val_subset" "$val_file"
    run_step "${build_command[@]}"
fi

http_ok() {
    # http_ok URL: 200 from URL, sending the judge's API key (read from the environment) if there is one
    "$python_bin" - "$1" "$judge_key_env" <<'PY' >/dev/null 2>&1
import os, sys, urllib.request
key = os.environ.get(sys.argv[2]) if sys.argv[2] else None
request = urllib.request.Request(sys.argv[1], headers={"Authorization": f"Bearer {key}"} if key else {})
with urllib.request.urlopen(request, timeout=5) as response:
    sys.exit(0 if response.status == 200 else 1)
PY
}

if ((start_judge)); then
    mkdir -p "$log_dir"
    if http_ok "${judge_endpoint%/v1}/health"; then
        die 2 "something already answers on port $judge_port; pass --judge-endpoint $judge_endpoint to use it, or another --judge-port"
    fi
    show "${judge_command[@]}"
    set -m # the server gets its own process group, so stopping it stops its workers too
    VLLM_API_KEY=${!judge_key_env} "${judge_command[@]}" </dev/null >"$judge_log" 2>&1 &
    judge_pid=$!
    set +m
    health=${judge_endpoint%/v1}/health
    echo "$SCRIPT_NAME: waiting for the judge server at $health (log $judge_log)"
else
    health=$judge_endpoint/models
    echo "$SCRIPT_NAME: waiting for the judge at $health"
fi
deadline=$((SECONDS + judge_wait))
until http_ok "$health"; do
    if [[ -n $judge_pid ]] && ! kill -0 "$judge_pid" 2>/dev/null; then
        tail -n 40 "$judge_log" >&2 || true
        die 1 "the judge server exited before it was healthy (log $judge_log)"
    fi
    ((SECONDS < deadline)) || die 1 "the judge did not answer at $health within $judge_wait s"
    sleep 5
done
echo "$SCRIPT_NAME: judge ready at $judge_endpoint"

show "${train_command[@]}"
set -m # training in its own process group: Ray and vLLM workers are stopped with it
"${train_command[@]}" </dev/null &
train_pid=$!
set +m
# the training's exit status is the script's (set -e); the EXIT trap stops whatever is left
wait "$train_pid"
