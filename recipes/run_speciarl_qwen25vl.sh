#!/usr/bin/env bash
# SpeciaRL on one GPU node, in one command: training set, judge server, verl training.
#
#   bash recipes/run_speciarl_qwen25vl.sh --cub-root /data/CUB_200_2011 [options] [-- hydra overrides...]
#   bash recipes/run_speciarl_qwen25vl.sh --dry-run          # print the resolved commands, start nothing
#
# Steps:
#   0. checks the machine (real runs only) and the training config (`python -m
#      speciarl_verl.config.preflight`, also in --dry-run: batch arithmetic, paths, lengths), then
#      prints the plan: every command, the checkpoint folder and whether the training resumes there;
#   1. builds the CUB-200 training parquet (train split, --train-subset images, --seed, drawn as the
#      method drew them unless --sampler per_source) and the validation parquet (test split,
#      --val-subset images) under --data-dir if they are missing;
#   2. starts the judge's vLLM server on --judge-gpus (loopback only, with an API key generated for
#      the run) and waits for /health, or checks that the server given with --judge-endpoint answers;
#   3. runs `python -m verl.trainer.main_ppo -cp pkg://speciarl_verl.config -cn <--config>` on
#      --train-gpus, on a Ray instance of its own (unless the overrides name a cluster), saving to
#      and resuming from an absolute checkpoint folder named after the run's inputs. Arguments that
#      are not options of this script are passed to verl, last, as Hydra overrides (so they win
#      over the ones this script adds).
# Whatever the script started is stopped when it exits, also on Ctrl-C, SIGTERM or SIGHUP; a second
# Ctrl-C does not cut that short. Logs (judge and training) get a new file per run under --log-dir.
#
# GPU numbers count the GPUs this job may use: positions in CUDA_VISIBLE_DEVICES when it is set
# (as SLURM sets it), else nvidia-smi's indices. Exit codes: 2 when the machine, the arguments or
# the config cannot run the recipe (no GPU, no vLLM, no dataset root, bad option, a judge that
# refuses the key), 1 when the judge server fails, otherwise the training's own exit code.
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
  --sampler NAME           how the training images are drawn: reference (default: the method's own draw,
                           one generator seeded once, as in the paper) or per_source (the builder's default);
                           the validation draw is per_source either way
  --train-file PATH        train on this parquet instead (nothing is built)
  --val-file PATH          validate on this parquet instead (nothing is built)
checkpoints
  --checkpoint-root DIR    checkpoints go to DIR/<config>_<train data>_seed<seed>_<judge model>, and a
                           rerun with the same inputs resumes there (default ./checkpoints, made absolute)
  --checkpoint-dir DIR     this folder instead (several nodes: on a filesystem every node shares)
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
  --judge-max-num-seqs N   sequences the judge server batches at once (vllm --max-num-seqs) and requests each
                           reward worker keeps in flight (judge.llm.max_in_flight); default 256, vLLM's own.
                           With --judge-endpoint: the reward's side only
  --judge-arg ARG          one more argument for the judge's vLLM server (repeatable; not --max-num-seqs)
  --judge-wait SECONDS     how long to wait for the judge to answer (default 1800)
  --judge-api-key-env NAME environment variable holding the judge's API key (vllm serve --api-key): the
                           reward sends it, on every node. With --judge-endpoint: none unless given. A judge
                           this script starts always gets one: the variable's value, or a key generated for
                           the run (default NAME: SPECIARL_JUDGE_API_KEY)
other
  --python BIN             Python of the environment with speciarl-verl[gpu,train] (default python3)
  --log-dir DIR            judge and training logs, one pair per run, and the judge's pidfile (default ./logs)
  --dry-run                print the resolved commands and exit 0 (no GPU needed); also honoured after --
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
sampler=reference
train_file=""
val_file=""
checkpoint_root=checkpoints
checkpoint_dir=""
train_gpus=0,1,2,3
judge_endpoint=""
judge_model=Qwen/Qwen3-30B-A3B-Instruct-2507
judge_gpus=4,5
judge_port=8001
judge_max_model_len=4096
judge_gpu_memory=0.9
judge_max_num_seqs=256
judge_args=()
judge_wait=1800
judge_key_env=""
python_bin=python3
log_dir=logs
dry_run=0
dry_run_after_cut=0
overrides=()
declare -A seen=()

# --dry-run is found wherever it is before anything else happens: among the options, or after --
# (where verl would reject it only after this script had started the judge). As the value of
# another option it is refused: the intent is ambiguous.
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
            for word in "$@"; do
                if [[ $word == --dry-run ]]; then
                    dry_run=1
                    dry_run_after_cut=1
                else
                    overrides+=("$word")
                fi
            done
            break
            ;;
        --*)
            (($# >= 2)) || die 2 "$option needs a value"
            value=$2
            [[ $value != --dry-run ]] ||
                die 2 "--dry-run given as the value of $option: give $option its value, and --dry-run on its own (nothing was started)"
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
                --sampler) sampler=$value ;;
                --train-file) train_file=$value ;;
                --val-file) val_file=$value ;;
                --checkpoint-root) checkpoint_root=$value ;;
                --checkpoint-dir) checkpoint_dir=$value ;;
                --train-gpus) train_gpus=$value ;;
                --judge-endpoint) judge_endpoint=$value ;;
                --judge-model) judge_model=$value ;;
                --judge-gpus) judge_gpus=$value ;;
                --judge-port) judge_port=$value ;;
                --judge-max-model-len) judge_max_model_len=$value ;;
                --judge-gpu-memory) judge_gpu_memory=$value ;;
                --judge-max-num-seqs) judge_max_num_seqs=$value ;;
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
[[ $sampler == reference || $sampler == per_source ]] ||
    die 2 "--sampler must be reference (the method's draw) or per_source, got '$sampler'"
is_gpu_list "$train_gpus" || die 2 "--train-gpus must be a comma list such as 0,1,2,3, got '$train_gpus'"
is_gpu_list "$judge_gpus" || die 2 "--judge-gpus must be a comma list such as 4,5, got '$judge_gpus'"
is_count "$judge_port" || die 2 "--judge-port must be a port number, got '$judge_port'"
is_count "$judge_wait" || die 2 "--judge-wait must be a number of seconds, got '$judge_wait'"
is_count "$judge_max_num_seqs" || die 2 "--judge-max-num-seqs must be a positive number, got '$judge_max_num_seqs'"
# one setting drives the server's batch and the reward's requests in flight: a second one could disagree
for arg in ${judge_args[@]+"${judge_args[@]}"}; do
    [[ ! $arg =~ ^--max[-_]num[-_]seqs(=|$) ]] ||
        die 2 "--judge-arg $arg: give --judge-max-num-seqs N instead (it sets the judge server's --max-num-seqs and the reward's judge.llm.max_in_flight together)"
done
if [[ -n $judge_endpoint && ! $judge_endpoint =~ ^https?://[^/]+(/.*)?/v1/?$ ]]; then
    die 2 "--judge-endpoint must be an OpenAI-compatible base URL ending in /v1, got '$judge_endpoint'"
fi
if [[ -n $judge_key_env && ! $judge_key_env =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    die 2 "--judge-api-key-env must be an environment variable name such as SPECIARL_JUDGE_API_KEY, got '$judge_key_env'"
fi
if [[ -n ${seen[--sampler]:-} && -n $train_file ]]; then
    die 2 "--sampler chooses how the CUB-200 training images are drawn; with --train-file nothing is drawn"
fi
if [[ -n ${seen[--checkpoint-root]:-} && -n $checkpoint_dir ]]; then
    die 2 "give --checkpoint-root or --checkpoint-dir, not both (--checkpoint-dir is the whole path)"
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

user_override() {
    # user_override KEY: prints the value of the user's last Hydra override of KEY (KEY=, +KEY= or
    # ++KEY=, one level of quotes removed); status 1 when there is none
    local word value="" found=1 pattern="^[+]{0,2}${1//./[.]}=(.*)$"
    for word in ${overrides[@]+"${overrides[@]}"}; do
        if [[ $word =~ $pattern ]]; then
            value=${BASH_REMATCH[1]}
            found=0
        fi
    done
    if [[ $value =~ ^\'(.*)\'$ || $value =~ ^\"(.*)\"$ ]]; then value=${BASH_REMATCH[1]}; fi
    printf '%s\n' "$value"
    return "$found"
}

data_dir=$(absolute "$data_dir")
log_dir=$(absolute "$log_dir")
if [[ -n $train_file ]]; then
    train_file=$(absolute "$train_file")
    train_name=${train_file##*/}
    train_name=${train_name%.parquet}
    build_train=0
else
    # the reference draw gets a name of its own: a per-source parquet of an earlier run is never taken for it
    train_suffix=""
    [[ $sampler == per_source ]] || train_suffix=_$sampler
    train_file=$data_dir/cub200_train_${train_subset}_seed${seed}$train_suffix.parquet
    train_name=cub200_train_$train_subset$train_suffix
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
    # even on loopback: every user of a shared node reaches 127.0.0.1
    judge_key_env=${judge_key_env:-SPECIARL_JUDGE_API_KEY}
    for gpu in ${judge_devices//,/ }; do
        [[ ,$train_devices, != *",$gpu,"* ]] || die 2 "GPU $gpu is in both --train-gpus and --judge-gpus"
    done
fi
judge_endpoint=${judge_endpoint%/}

# one id per run: its logs are new files, never an earlier run's
run_id=$(date +%Y%m%d-%H%M%S)-$$
judge_log=$log_dir/judge_vllm_${judge_port}_$run_id.log
judge_pidfile=$log_dir/judge_vllm_$judge_port.pid
train_log=$log_dir/train_${config}_$run_id.log

nnodes=$(user_override trainer.nnodes) || nnodes=1
[[ $nnodes =~ ^[0-9]+$ ]] || nnodes=1
# --train-gpus sets trainer.n_gpus_per_node; an override of it wins in verl, so it must agree with
# the GPUs this node hands the training (a Ray cluster brings its own, as `ray start` declared them)
gpus_per_node=$(user_override trainer.n_gpus_per_node) || gpus_per_node=$n_train_gpus

# Ray: verl's ray.init() joins a running cluster when it is given no address (RAY_ADDRESS, or the
# last `ray start` on this node), whose GPUs and environment are not this run's. Unless the user
# names a cluster, the training starts a Ray instance of its own.
ray_cluster=0
if ray_address=$(user_override ray_kwargs.ray_init.address); then
    ray_cluster=1
fi

# checkpoints: an absolute folder named after what the run trains on, so a rerun with other inputs
# does not resume an unrelated run's LoRA and dataloader state, and a rerun from another folder
# does not silently start over
checkpoint_source=default
if user_dir=$(user_override trainer.default_local_dir); then
    checkpoint_source=override
    checkpoint_dir=$user_dir
elif [[ -n $checkpoint_dir ]]; then
    checkpoint_dir=$(absolute "$checkpoint_dir")
    checkpoint_source=option
else
    judge_short=${judge_model%/}
    judge_short=${judge_short##*/}
    run_name=${config}_${train_name}_seed${seed}_$judge_short
    checkpoint_dir=$(absolute "$checkpoint_root")
    checkpoint_dir=${checkpoint_dir%/}/${run_name//[^A-Za-z0-9._-]/_}
fi
resume_mode=$(user_override trainer.resume_mode) || resume_mode=""
# the reward's requests in flight follow --judge-max-num-seqs unless an override after -- says otherwise (it wins)
user_in_flight=$(user_override reward.reward_kwargs.judge.llm.max_in_flight) || user_in_flight=""
resume_path=$(user_override trainer.resume_from_path) || resume_path=""

# what a real run refuses before starting anything (a dry run prints them)
refusals=()
if ((nnodes > 1 && !ray_cluster)); then
    refusals+=("trainer.nnodes=$nnodes trains on a Ray cluster: start Ray on every node, then add +ray_kwargs.ray_init.address=auto (recipes/README.md, Several nodes)")
fi
if ((!ray_cluster)) && [[ $gpus_per_node != "$n_train_gpus" ]]; then
    refusals+=("trainer.n_gpus_per_node=$gpus_per_node but --train-gpus $train_gpus hands the training $n_train_gpus GPUs: give --train-gpus the GPUs to use (it sets trainer.n_gpus_per_node)")
fi
if ((nnodes > 1 && start_judge)); then
    refusals+=("trainer.nnodes=$nnodes: the judge this script starts listens on 127.0.0.1, which the other nodes cannot reach; serve it where they reach it and pass --judge-endpoint with --judge-api-key-env (recipes/README.md)")
fi

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
    # make_build_command SPLIT SUBSET OUT SAMPLER: sets build_command
    build_command=("$python_bin" -m speciarl_verl.cli data build --dataset cub200
        --root "${cub_root:-/path/to/CUB_200_2011}" --split "$1")
    [[ $2 == all ]] || build_command+=(--subset "$2")
    build_command+=(--seed "$seed" --sampler "$4" --out "$3")
}

judge_command=(env "CUDA_VISIBLE_DEVICES=${judge_devices:-}" "$python_bin" -m vllm.entrypoints.openai.api_server
    --model "$judge_model" --served-model-name "$judge_model" --host 127.0.0.1 --port "$judge_port"
    --tensor-parallel-size "${judge_tp:-1}" --gpu-memory-utilization "$judge_gpu_memory"
    --max-model-len "$judge_max_model_len" --max-num-seqs "$judge_max_num_seqs" ${judge_args[@]+"${judge_args[@]}"})

# the overrides verl gets, exactly: the preflight checks these
train_overrides=(
    "data.train_files=$train_file"
    "data.val_files=$val_file"
    "trainer.n_gpus_per_node=$n_train_gpus"
    "reward.reward_kwargs.judge.llm.endpoints=[$judge_endpoint]"
    "reward.reward_kwargs.judge.llm.model=$judge_model"
    "reward.reward_kwargs.judge.llm.max_in_flight=$judge_max_num_seqs"
)
[[ -z $judge_key_env ]] || train_overrides+=("reward.reward_kwargs.judge.llm.api_key_env=$judge_key_env")
[[ $checkpoint_source == override ]] || train_overrides+=("trainer.default_local_dir=$checkpoint_dir")
# ray_init has no `address` in verl 0.9.1's schema: added with +
((ray_cluster)) || train_overrides+=("+ray_kwargs.ray_init.address=local")
train_overrides+=(${overrides[@]+"${overrides[@]}"})

train_env=(env)
# the local Ray's workers inherit this environment (the judge key among it). RAY_ADDRESS goes too:
# ray.init ignores it beside address=local, but any other Ray client the training starts would follow it
((ray_cluster)) || train_env+=(-u RAY_ADDRESS)
train_command=("${train_env[@]}" "CUDA_VISIBLE_DEVICES=$train_devices" "$python_bin" -m verl.trainer.main_ppo
    -cp pkg://speciarl_verl.config -cn "$config" "${train_overrides[@]}")

# ---------------------------------------------------------------------------------------------
# pre-flight of a real run: GPUs, the [gpu] extra, the dataset root, the judge's key

check_machine() {
    command -v nvidia-smi >/dev/null 2>&1 ||
        die 2 "no nvidia-smi on PATH: this recipe needs NVIDIA GPUs (use --dry-run to see the commands)"
    local gpu_count gpu
    gpu_count=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | grep -c . || true)
    ((gpu_count > 0)) || die 2 "nvidia-smi lists no GPU: this recipe needs NVIDIA GPUs (use --dry-run to see the commands)"
    for gpu in ${train_devices//,/ } ${judge_devices:+${judge_devices//,/ }}; do
        # device ids from CUDA_VISIBLE_DEVICES may be UUIDs; only numbers can be checked against the count
        [[ ! $gpu =~ ^[0-9]+$ ]] || ((gpu < gpu_count)) || die 2 "GPU $gpu is not on this machine (nvidia-smi lists $gpu_count)"
    done
    # the training's rollouts need vLLM too, not only a judge this script starts
    "$python_bin" -c 'import vllm' 2>/dev/null ||
        die 2 "$python_bin cannot import vllm, the [gpu] extra is missing: pip install 'speciarl-verl[gpu,train]' (or pass --python)"
    "$python_bin" -c 'import speciarl_verl, verl' 2>/dev/null ||
        die 2 "$python_bin cannot import speciarl_verl and verl: pip install 'speciarl-verl[gpu,train]' (or pass --python)"
    if ((build_train)) && [[ ! -f $train_file ]] && [[ -z $cub_root ]]; then
        die 2 "the CUB-200 training parquet $train_file is missing: pass --cub-root DIR to build it (or --train-file PATH)"
    fi
    if ((build_val)) && [[ ! -f $val_file ]] && [[ -z $cub_root ]]; then
        die 2 "the CUB-200 validation parquet $val_file is missing: pass --cub-root DIR to build it (or --val-file PATH)"
    fi
    [[ -z $cub_root || -d $cub_root ]] || die 2 "--cub-root $cub_root is not a folder"
    [[ -f $train_file || $build_train == 1 ]] || die 2 "--train-file $train_file does not exist"
    [[ -f $val_file || $build_val == 1 ]] || die 2 "--val-file $val_file does not exist"
    if [[ -n $judge_key_env && -z ${!judge_key_env:-} ]]; then
        ((start_judge)) || die 2 "--judge-api-key-env names $judge_key_env, which is not set; export it with the judge's API key"
        ((!ray_cluster)) ||
            die 2 "the Ray cluster's workers (ray_kwargs.ray_init.address=$ray_address) have the environment \`ray start\` had, without a key generated now: export $judge_key_env on every node before \`ray start\`, and here"
    fi
    ((${#refusals[@]} == 0)) || die 2 "${refusals[0]}"
}

run_preflight() {
    # the other half of the checks, on the training config itself; its "# " lines go into the plan
    local errors status=0 line
    errors=$(mktemp)
    preflight_lines=$("$python_bin" -m speciarl_verl.config.preflight --config "$config" -- "${train_overrides[@]}" 2>"$errors") ||
        status=$?
    if ((status == 2)) && line=$(grep -m1 '^preflight: ' "$errors"); then
        rm -f "$errors"
        printf '%s\n' "$line" >&2
        exit 2
    elif ((status != 0)); then
        line=$(grep . "$errors" | tail -n 1 || true)
        rm -f "$errors"
        die 2 "the preflight check did not run with $python_bin (exit $status: ${line:-no message}); pass --python the interpreter of the environment with speciarl-verl"
    fi
    rm -f "$errors"
    preflight_lines=$(grep '^# ' <<<"$preflight_lines" || true)
}

# ---------------------------------------------------------------------------------------------
# the plan

plan_parquet() {
    # plan_parquet STEP SPLIT SUBSET FILE BUILD SAMPLER
    local draw="drawn per source"
    [[ $6 == per_source ]] || draw="drawn as the method drew it (--sampler $6)"
    if (($5 == 0)); then
        echo "# $1. $2 parquet given: $4"
    elif [[ -f $4 ]]; then
        echo "# $1. $2 parquet exists, not rebuilt: $4"
    else
        if [[ -n $cub_root ]]; then
            echo "# $1. build the $2 parquet from $cub_root, $draw"
        else
            echo "# $1. build the $2 parquet, $draw (needs --cub-root)"
        fi
        make_build_command "$2" "$3" "$4" "$6"
        show "${build_command[@]}"
    fi
}

plan_checkpoints() {
    # where verl saves and what it resumes, read as verl reads it (trainer_base._load_checkpoint:
    # <dir>/latest_checkpointed_iteration.txt names N, and <dir>/global_step_N must exist)
    local dir=$checkpoint_dir tracker step
    case $checkpoint_source in
        override)
            echo "#    checkpoint folder from your override trainer.default_local_dir=$dir (it wins over the script's)"
            if [[ $dir != /* ]]; then
                echo "#    it is relative: verl reads it from the folder each process runs in; give an absolute path"
                dir=$(absolute "$dir")
            fi
            ;;
        option) echo "#    checkpoint folder from --checkpoint-dir" ;;
        *) echo "#    checkpoint folder: --checkpoint-root/<config>_<train data>_seed<seed>_<judge model>" ;;
    esac
    if ((nnodes > 1 || ray_cluster)); then
        echo "#    several nodes: $dir must be on a filesystem every node shares (each rank saves its part there)"
    fi
    case $resume_mode in
        disable)
            echo "# starting fresh in $dir (your override trainer.resume_mode=disable: a checkpoint there is ignored)"
            return 0
            ;;
        resume_path)
            echo "# resuming from ${resume_path:-trainer.resume_from_path (not given)} (your override trainer.resume_mode=resume_path), saving in $dir"
            return 0
            ;;
        "" | auto) [[ -z $resume_mode ]] || echo "#    trainer.resume_mode=auto (your override)" ;;
        *) echo "#    trainer.resume_mode=$resume_mode (your override; verl knows auto, disable, resume_path)" ;;
    esac
    tracker=$dir/latest_checkpointed_iteration.txt
    if [[ ! -f $tracker ]]; then
        echo "# starting fresh in $dir"
        return 0
    fi
    step=$(tr -d '[:space:]' <"$tracker")
    [[ $step =~ ^[0-9]+$ ]] ||
        die 2 "$tracker does not hold a step number (verl would stop on it): remove it, or pass another --checkpoint-dir"
    if [[ -d $dir/global_step_$step ]]; then
        echo "# resuming from global_step_$step in $dir (its LoRA, optimizer and dataloader state)"
    else
        echo "# starting fresh in $dir ($tracker names global_step_$step, which is not there)"
    fi
}

print_plan() {
    local refusal
    echo "# SpeciaRL recipe: config $config, run $run_id"
    [[ -z $preflight_lines ]] || printf '%s\n' "$preflight_lines"
    if ((dry_run_after_cut)); then
        echo "# --dry-run after -- is taken as this script's --dry-run, not passed to verl"
    fi
    plan_parquet 1 train "$train_subset" "$train_file" "$build_train" "$sampler"
    plan_parquet 2 test "$val_subset" "$val_file" "$build_val" per_source
    if ((start_judge)); then
        echo "# 3. judge server on GPUs $judge_devices (log $judge_log, pidfile $judge_pidfile), then wait for ${judge_endpoint%/v1}/health"
        echo "#    its API key: VLLM_API_KEY in its environment, from \$$judge_key_env (generated if unset)"
        echo "#    it batches up to $judge_max_num_seqs sequences (--max-num-seqs) and each reward worker keeps up to $judge_max_num_seqs requests in flight (--judge-max-num-seqs)"
        show "${judge_command[@]}"
    else
        echo "# 3. judge: the running server $judge_endpoint (wait for $judge_endpoint/models)"
        [[ -z $judge_key_env ]] || echo "#    with the API key in \$$judge_key_env"
        echo "#    each reward worker keeps up to $judge_max_num_seqs requests in flight (--judge-max-num-seqs; vLLM batches up to its --max-num-seqs, 256 by default)"
    fi
    if [[ -n $user_in_flight ]]; then
        if ((start_judge)); then
            echo "#    your override reward.reward_kwargs.judge.llm.max_in_flight=$user_in_flight wins for the reward's requests in flight; the judge server still gets --max-num-seqs $judge_max_num_seqs"
        else
            echo "#    your override reward.reward_kwargs.judge.llm.max_in_flight=$user_in_flight wins over --judge-max-num-seqs $judge_max_num_seqs"
        fi
    fi
    if ((ray_cluster)); then
        echo "# 4. training on the Ray cluster's GPUs, $gpus_per_node per node (output also to $train_log)"
    else
        echo "# 4. training on GPUs $train_devices (output also to $train_log)"
    fi
    plan_checkpoints
    if ((ray_cluster)); then
        echo "#    Ray: the cluster at ${ray_address} (your override ray_kwargs.ray_init.address); its workers have the"
        echo "#    environment \`ray start\` had: export ${judge_key_env:-the judge key} on every node before \`ray start\`"
    else
        echo "#    Ray: an instance of its own (+ray_kwargs.ray_init.address=local, RAY_ADDRESS unset), whose workers"
        echo "#    inherit this environment${judge_key_env:+ and \$$judge_key_env}; add +ray_kwargs.ray_init.address=auto to use a running cluster"
    fi
    for refusal in ${refusals[@]+"${refusals[@]}"}; do
        echo "# a real run stops here: $refusal"
    done
    show "${train_command[@]}"
}

preflight_lines=""
((dry_run)) || check_machine
run_preflight
print_plan
if ((dry_run)); then
    exit 0
fi

# the key is never on a command line (ps shows those to every user): only in environments
if [[ -n $judge_key_env && -z ${!judge_key_env:-} ]]; then
    printf -v "$judge_key_env" '%s' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
fi
# exported for the judge server, the health check and the training (whose local Ray workers inherit it)
[[ -z $judge_key_env ]] || export "${judge_key_env?}"

# ---------------------------------------------------------------------------------------------
# run; stop what was started on exit, Ctrl-C, SIGTERM and SIGHUP

judge_pid=""
train_pid=""

group_alive() {
    # group_alive PGID: a process of the group is still running. Zombies do not count: they hold no
    # GPU or port, and one whose parent never reaps it (a leftover judge's) would otherwise never go.
    local pgid=$1 stat line
    local -a fields
    [[ -n $pgid ]] && kill -0 -- "-$pgid" 2>/dev/null || return 1
    [[ -r /proc/self/stat ]] || return 0
    for stat in /proc/[0-9]*/stat; do
        read -r line <"$stat" 2>/dev/null || continue
        # after "pid (command) ": state, ppid, process group, ...
        read -r -a fields <<<"${line##*) }"
        [[ ${fields[0]} == Z || ${fields[2]} != "$pgid" ]] || return 0
    done
    return 1
}

signal_group() {
    # signal_group PID NAME SIGNAL: SIGNAL to the process group PID, if it is still there
    group_alive "$1" || return 0
    echo "$SCRIPT_NAME: stopping the $2 (process group $1)" >&2
    kill "-$3" -- "-$1" 2>/dev/null || true
}

finish_group() {
    # finish_group PID GRACE_SECONDS: wait up to GRACE for the group to end, then SIGTERM, then SIGKILL
    local pid=$1 grace=$2 waited=0
    [[ -n $pid ]] || return 0
    while group_alive "$pid" && ((waited < grace)); do
        sleep 1
        waited=$((waited + 1))
    done
    if group_alive "$pid"; then
        kill -TERM -- "-$pid" 2>/dev/null || true
        waited=0
        while group_alive "$pid" && ((waited < 5)); do
            sleep 1
            waited=$((waited + 1))
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    # nothing may cut the shutdown short: a second Ctrl-C would leave the judge on its GPUs and port
    # (children started from here on inherit the ignored signals)
    trap '' INT TERM HUP
    trap - EXIT
    set +e
    # both are told at once; the judge is waited for first (vLLM exits cleanly on SIGTERM), then the
    # training (verl's driver shuts Ray down on SIGINT)
    signal_group "$judge_pid" "judge server" TERM
    signal_group "$train_pid" training INT
    finish_group "$judge_pid" 30
    if [[ -n $judge_pid ]] && ! group_alive "$judge_pid" && [[ -f $judge_pidfile ]]; then
        local owner=""
        read -r owner _ <"$judge_pidfile" || true
        [[ $owner != "$judge_pid" ]] || rm -f "$judge_pidfile"
    fi
    finish_group "$train_pid" 60
    exit "$status"
}

on_signal() {
    trap '' INT TERM HUP
    exit "$1"
}

trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

run_step() {
    show "$@"
    "$@"
}

mkdir -p "$log_dir"

if ((build_train)) && [[ ! -f $train_file ]]; then
    make_build_command train "$train_subset" "$train_file" "$sampler"
    run_step "${build_command[@]}"
fi
if ((build_val)) && [[ ! -f $val_file ]]; then
    make_build_command test "$val_subset" "$val_file" per_source
    run_step "${build_command[@]}"
fi

probe() {
    # probe URL: 0 when URL answers 200, 3 when it refuses the key (401/403), 1 otherwise. The judge's
    # API key (from the environment) is sent if there is one. Never through a proxy: the reward's
    # client does not use one either, and http_proxy covers 127.0.0.1 unless no_proxy says otherwise.
    "$python_bin" - "$1" "$judge_key_env" <<'PY' >/dev/null 2>&1
import os, sys, urllib.error, urllib.request
key = os.environ.get(sys.argv[2]) if sys.argv[2] else None
request = urllib.request.Request(sys.argv[1], headers={"Authorization": f"Bearer {key}"} if key else {})
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(request, timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)
except urllib.error.HTTPError as error:
    sys.exit(3 if error.code in (401, 403) else 1)
except Exception:
    sys.exit(1)
PY
}

process_args() {
    # process_args PID: its command line, words joined by spaces (nothing when it is gone)
    if [[ -r /proc/$1/cmdline ]]; then
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
    else
        ps -ww -o args= -p "$1" 2>/dev/null || true
    fi
}

is_our_judge() {
    # is_our_judge PID: PID is a judge server this script started on --judge-port
    local args
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    args=" $(process_args "$1") "
    [[ $args == *" -m vllm.entrypoints.openai.api_server "* && $args == *" --port $judge_port "* ]]
}

stop_leftover_judge() {
    # the pidfile of an earlier run on this port: its judge is stopped when its script is gone (its
    # generated key went with it, so nothing can use it); a run still going is left alone
    [[ -f $judge_pidfile ]] || return 0
    local old_judge="" old_script="" old_run=""
    read -r old_judge old_script old_run <"$judge_pidfile" || true
    if is_our_judge "$old_judge"; then
        if [[ $old_script =~ ^[0-9]+$ && $(process_args "$old_script") == *"$SCRIPT_NAME"* ]]; then
            die 2 "port $judge_port has the judge of run ${old_run:-?}, whose script (pid $old_script) is still running: stop that run, or pass another --judge-port"
        fi
        signal_group "$old_judge" "leftover judge server of run ${old_run:-?} (its script is gone; $judge_pidfile)" TERM
        finish_group "$old_judge" 30
        ! group_alive "$old_judge" || die 1 "the leftover judge server (pid $old_judge) did not stop"
    fi
    rm -f "$judge_pidfile"
}

if ((start_judge)); then
    stop_leftover_judge
    status=0
    probe "${judge_endpoint%/v1}/health" || status=$?
    if ((status != 1)); then
        die 2 "something already answers on port $judge_port (no judge of this script's in $judge_pidfile): stop it, use it with --judge-endpoint $judge_endpoint --judge-api-key-env NAME (the variable holding its key), or pass another --judge-port"
    fi
    show "${judge_command[@]}"
    set -m # the server gets its own process group, so stopping it stops its workers too
    VLLM_API_KEY=${!judge_key_env} "${judge_command[@]}" </dev/null >>"$judge_log" 2>&1 &
    judge_pid=$!
    set +m
    printf '%s %s %s\n' "$judge_pid" "$$" "$run_id" >"$judge_pidfile"
    health=${judge_endpoint%/v1}/health
    echo "$SCRIPT_NAME: waiting for the judge server at $health (log $judge_log)"
else
    health=$judge_endpoint/models
    echo "$SCRIPT_NAME: waiting for the judge at $health"
fi
deadline=$((SECONDS + judge_wait))
while :; do
    status=0
    probe "$health" || status=$?
    ((status != 0)) || break
    if ((status == 3)); then
        if [[ -z $judge_key_env ]]; then
            die 2 "the judge at $health asks for an API key (HTTP 401/403): pass --judge-api-key-env NAME, the variable holding its key (a leftover judge of an earlier run of this script has lost its key: stop it)"
        fi
        die 2 "the judge at $health refuses the key in \$$judge_key_env (HTTP 401/403): export the key it was started with (a leftover judge of an earlier run of this script has lost its key: stop it)"
    fi
    if [[ -n $judge_pid ]] && ! kill -0 "$judge_pid" 2>/dev/null; then
        tail -n 40 "$judge_log" >&2 || true
        die 1 "the judge server exited before it was healthy (log $judge_log)"
    fi
    ((SECONDS < deadline)) || die 1 "the judge did not answer at $health within $judge_wait s"
    sleep 2
done
echo "$SCRIPT_NAME: judge ready at $judge_endpoint"

show "${train_command[@]}"
echo "$SCRIPT_NAME: training output also goes to $train_log"
set -m # training in its own process group: Ray and vLLM workers are stopped with it
# tee ignores SIGINT so that verl's own shutdown messages still reach the log
("${train_command[@]}" </dev/null 2>&1 | tee -i -a "$train_log") &
train_pid=$!
set +m
# the training's exit status is the script's (set -e, pipefail); the EXIT trap stops whatever is left
wait "$train_pid"
