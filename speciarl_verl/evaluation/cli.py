"""``speciarl eval predict | judge | report | agree | curves``.

The evaluator reports bad input as ``ValueError`` naming ``file:line`` (or ``file:row N``
for a dataset parquet); each step turns it into one line on stderr and exit code 2, as it does an
output path of the wrong kind (``judge --out`` a folder, ``report``/``agree --out`` a file) and
``predict --backend vllm`` on a machine without vLLM
(``--backend auto``, the default, takes transformers there and says so), or a ``--checkpoint`` that is no
verl checkpoint. A judge that fails after its retries is exit code 1.
``predict`` checks its files (datasets, adapter, prompt name) before it needs a GPU.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speciarl_verl.cli_errors import UserInputError, output_file, output_folder, user_input
from speciarl_verl.core.answer_parsing import PARSE_MODES
from speciarl_verl.evaluation.curves_cli import add_curves_parser
from speciarl_verl.judge.file_judging import settings_from_cli

if TYPE_CHECKING:
    from speciarl_verl.evaluation.vllm_predictor import PredictConfig

__all__ = ["inclusion_judge_mapping", "judge_mapping", "predict_config", "register", "run_names"]


def _add_parse_mode(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--parse-mode",
        choices=PARSE_MODES,
        default="first",
        help="which <answer> block of a response counts: first (default, the method's reading: the first "
        "<answer>...</answer>, tags case-sensitive) or strict (exactly one block, tags in any case); training "
        "reads the same choice from reward.reward_kwargs.parse_mode",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a model: predict, judge, report (correctness / specificity / HM), judge agreement"
    )
    commands = parser.add_subparsers(dest="eval_command", required=True, metavar="STEP")
    _add_predict(commands)
    _add_judge(commands)
    _add_report(commands)
    _add_agree(commands)
    add_curves_parser(commands, _guarded)


def _guarded(body: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a step with the evaluator's bad-input errors re-raised as ``UserInputError`` (exit 2): its
    readers raise ``ValueError`` naming the file and line, and ``FileNotFoundError`` for an image path
    in a dataset row that does not exist (outputs are created, never expected)."""

    def run(args: argparse.Namespace) -> int:
        with user_input(ValueError, FileNotFoundError):
            return body(args)

    return run


# ---------------------------------------------------------------- predict


def _add_predict(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "predict",
        help="answers from a model or a verl checkpoint, with vLLM (the [gpu] extra) or transformers generate",
    )
    p.add_argument("--data", action="append", required=True, type=Path, help="dataset parquet (repeatable)")
    p.add_argument("--model", help="base model path or name (or give --checkpoint)")
    p.add_argument("--adapter", type=Path, help="LoRA adapter folder (PEFT format), with --model")
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="a verl checkpoint instead of --model/--adapter: OUT/checkpoints/global_step_N (or its actor/); its "
        "FSDP shards and LoRA adapter become a Hugging Face folder with verl's model merger, kept in "
        "actor/huggingface_merged and reused while newer than the shards",
    )
    p.add_argument("--out", required=True, help="predictions JSONL (resumed if it exists)")
    p.add_argument(
        "--backend",
        choices=("auto", "vllm", "hf"),
        default="auto",
        help="vllm: vLLM offline (a GPU); hf: transformers generate on the CPU or a GPU; auto (default): vllm when "
        "it is installed, else hf (said in the output)",
    )
    p.add_argument("--device", help="hf backend: torch device (default cuda when available, else cpu)")
    p.add_argument("--mode", choices=("greedy", "best-of-n"), default="greedy")
    p.add_argument("--n", type=int, default=64, help="answers per image in best-of-n mode (default 64)")
    p.add_argument("--temperature", type=float, default=0.6, help="best-of-n sampling temperature (default 0.6)")
    p.add_argument("--top-p", type=float, default=0.95, help="best-of-n nucleus size (default 0.95)")
    p.add_argument("--max-new-tokens", type=int, default=2048)
    p.add_argument("--prompt", dest="prompt_name", help="use this registered policy prompt instead of the dataset's")
    p.add_argument("--batch-size", type=int, help="images per generate call (default 256 with vllm, 8 with hf)")
    p.add_argument("--limit", type=int, help="only the first N dataset rows")
    p.add_argument("--max-answer-words", type=int, help="answers longer than this many words count as unparseable")
    _add_parse_mode(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE", help="extra vllm.LLM argument")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_guarded(_predict))


def predict_config(args: argparse.Namespace) -> PredictConfig:
    """The prediction run that the parsed ``speciarl eval predict`` arguments ask for (``args.model`` and
    ``args.adapter`` set: a checkpoint is resolved before; ``args.backend`` ``auto`` means vLLM where it is
    installed, else ``hf``)."""
    from speciarl_verl.evaluation.prediction_requests import DecodingSettings
    from speciarl_verl.evaluation.vllm_predictor import PredictConfig

    if args.mode == "greedy":
        decoding = DecodingSettings.greedy(args.max_new_tokens)
    else:
        decoding = DecodingSettings.best_of_n(args.n, args.temperature, args.top_p, args.max_new_tokens)
    from speciarl_verl.evaluation.vllm_predictor import vllm_installed

    backend = getattr(args, "backend", "vllm")
    if backend == "auto":  # as _predict decides it: vLLM where it is installed
        backend = "vllm" if vllm_installed() else "hf"
    batch_size = args.batch_size if args.batch_size is not None else (8 if backend == "hf" else 256)
    return PredictConfig(
        data=tuple(args.data),
        model=args.model,
        out=Path(args.out),
        adapter=args.adapter,
        decoding=decoding,
        prompt_name=args.prompt_name,
        batch_size=batch_size,
        limit=args.limit,
        max_answer_words=args.max_answer_words,
        parse_mode=args.parse_mode,
        seed=args.seed,
        engine_args=settings_from_cli(None, args.engine_arg, option="--engine-arg"),
        backend=backend,
    )


def _predict(args: argparse.Namespace) -> int:
    from speciarl_verl.evaluation import vllm_predictor

    args.out = output_file(args.out, "--out", "preds.jsonl")
    if args.checkpoint is not None and (args.model is not None or args.adapter is not None):
        raise UserInputError("--checkpoint DIR replaces --model and --adapter: give one or the other")
    if args.checkpoint is None and args.model is None:
        raise UserInputError(
            "give --model MODEL (with --adapter DIR for a LoRA) or --checkpoint DIR (a verl checkpoint)"
        )
    if args.backend == "auto":
        args.backend = "vllm" if vllm_predictor.vllm_installed() else "hf"
        if args.backend == "hf":
            print("vLLM is not installed: predicting with transformers generate (--backend hf)", flush=True)
    if args.backend == "vllm":
        vllm_predictor._require_vllm()
    elif args.engine_arg:
        raise UserInputError("--engine-arg sets vllm.LLM arguments; the transformers backend (--backend hf) has none")
    if args.checkpoint is not None:
        from speciarl_verl.evaluation.checkpoint_merge import actor_folder

        actor_folder(args.checkpoint)  # a wrong folder is refused before the datasets are read
        args.model = "(checkpoint)"
    config = predict_config(args)
    _check_predict_inputs(config)
    if args.checkpoint is not None:
        from dataclasses import replace

        from speciarl_verl.evaluation.checkpoint_merge import merge_checkpoint

        checkpoint = merge_checkpoint(args.checkpoint)
        how = "reused" if checkpoint.reused else "written by verl's model merger"
        adapter = f", LoRA adapter {checkpoint.adapter}" if checkpoint.adapter else ""
        print(f"checkpoint {args.checkpoint}: Hugging Face folder {checkpoint.model} ({how}){adapter}", flush=True)
        config = replace(config, model=str(checkpoint.model), adapter=checkpoint.adapter)
    if config.backend == "hf":
        from speciarl_verl.evaluation.hf_predictor import run_hf_predictions

        answered = run_hf_predictions(config, progress=not args.no_progress, device=args.device)
    else:
        answered = vllm_predictor.run_predictions(config, progress=not args.no_progress)
    print(f"answered {answered} image(s) in this run ({config.backend} backend) -> {args.out}")
    return 0


def _check_predict_inputs(config: PredictConfig) -> None:
    """What can be checked without vLLM or a GPU: each dataset opens and its first row is a valid
    request, the adapter folder holds a LoRA config, the prompt name is registered."""
    import pyarrow as pa

    from speciarl_verl.evaluation.vllm_predictor import lora_rank, read_requests
    from speciarl_verl.prompts import get_policy_prompt

    instruction = None if config.prompt_name is None else get_policy_prompt(config.prompt_name).text
    for path in config.data:
        if not path.is_file():
            raise UserInputError(f"{path}: no such dataset file (--data)")
        try:
            next(read_requests([path], instruction, rows_per_batch=1), None)
        except pa.ArrowException as error:
            raise UserInputError(f"{path}: cannot read it as parquet ({error})") from error
    if config.adapter is not None:
        lora_rank(config.adapter)


# ---------------------------------------------------------------- judge


def judge_mapping(kind: str | None, config_file: Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Judge settings as a mapping: the YAML file (default: the shipped evaluation judge, an LLM),
    then ``--judge`` (kind), then ``--judge-set`` entries. A file without ``kind`` means ``llm``.

    >>> judge_mapping(None, None)["kind"], judge_mapping("offline", None, ["llm.max_in_flight=8"])["kind"]
    ('llm', 'offline')
    """
    from speciarl_verl.evaluation.judging import default_judge_settings

    base = default_judge_settings() if config_file is None else {"kind": "llm"}
    flags = {} if kind is None else {"kind": kind}
    return settings_from_cli(config_file, overrides, base=base, flags=flags, option="--judge-set")


def _add_judge(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("judge", help="verdicts for a predictions JSONL (resumable)")
    p.add_argument("--predictions", required=True, type=Path, help="predictions JSONL")
    p.add_argument("--out", required=True, help="verdicts JSONL file (resumed if it exists)")
    p.add_argument(
        "--judge",
        choices=("llm", "auto", "offline"),
        help="llm (default): every pair to the LLM judge; auto: rule tier, then the LLM; offline: rule tier "
        "only, pairs it cannot decide are written as undecided (the report counts them apart)",
    )
    p.add_argument(
        "--judge-config",
        type=Path,
        help="YAML mapping of judge settings (JudgeSettings fields; 'kind' defaults to llm); default: the shipped "
        "eval_judge_llama3_70b.yaml (meta-llama/Meta-Llama-3-70B-Instruct, the method's, via vllm serve on "
        "127.0.0.1:8002; --judge-set llm.model=meta-llama/Llama-3.3-70B-Instruct for 3.3)",
    )
    p.add_argument("--judge-set", action="append", default=[], metavar="KEY=VALUE", help="one more judge setting")
    p.add_argument("--batch-size", type=int, default=256, help="answers per verifier call")
    _add_parse_mode(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_guarded(_judge))


def _judge(args: argparse.Namespace) -> int:
    from speciarl_verl.evaluation.judging import judge_predictions
    from speciarl_verl.judge.verifier import JudgeError

    args.out = output_file(args.out, "--out", "verdicts.jsonl")
    try:
        summary = judge_predictions(
            args.predictions,
            args.out,
            judge_mapping(args.judge, args.judge_config, args.judge_set),
            batch_size=args.batch_size,
            progress=not args.no_progress,
            parse_mode=args.parse_mode,
        )
    except JudgeError as error:
        raise JudgeError(
            f"{error}. The verdicts reached so far are in {args.out}; run the same command again to judge the rest",
            error.verdicts,
            error.endpoint,
        ) from error
    sources = ", ".join(f"{k} {v}" for k, v in sorted(summary.verdict_sources.items())) or "-"
    print(
        f"{summary.predictions} answers: {summary.already_judged} already judged, {summary.judged} judged now "
        f"by {summary.judge or '-'} (by source: {sources}; unparseable {summary.unparseable}; "
        f"undecided {summary.undecided}) -> {args.out}; responses parsed in mode {summary.parse_mode}"
    )
    if summary.undecided:
        print(
            f"{summary.undecided} pair(s) the offline rule tier has no rule for are written as undecided; "
            "`speciarl eval report` leaves them out of the metrics (--undecided wrong counts them as wrong); "
            "--judge llm or auto decides them"
        )
    return 0


# ---------------------------------------------------------------- report


def run_names(paths: Sequence[Path], names: Sequence[str] | None) -> list[str]:
    """Names for the runs: given ones, else file stems (made unique with the parent folder).

    >>> run_names([Path("a/verdicts.jsonl"), Path("b/verdicts.jsonl")], None)
    ['a/verdicts', 'b/verdicts']
    """
    if names:
        if len(names) != len(paths):
            raise ValueError(f"{len(names)} --name for {len(paths)} --verdicts")
        if len(set(names)) != len(names):
            raise ValueError(f"--name values must be unique, got {list(names)}")
        return list(names)
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    longer = [f"{p.parent.name}/{p.stem}" for p in paths]
    return longer if len(set(longer)) == len(longer) else [f"{i}:{p}" for i, p in enumerate(paths)]


def _labels(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


def _add_report(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("report", help="correctness, specificity, HM, best-of-N and plots from verdict files")
    p.add_argument("--verdicts", action="append", required=True, type=Path, help="verdicts JSONL (repeatable)")
    p.add_argument("--name", action="append", help="run name for each --verdicts, in order")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--train-domain",
        action="append",
        help="data source trained on, its exact data_source name (repeatable; default cub200 when the verdicts "
        "have it; 'none' for none); others are out of domain; a name that is no data source of the verdicts is "
        "refused",
    )
    p.add_argument(
        "--correct-set",
        help="comma-separated labels counted as correct (default: generic, less specific, specific, more specific)",
    )
    p.add_argument(
        "--specific-set", help="comma-separated labels counted as specific (default: specific, more specific)"
    )
    p.add_argument(
        "--undecided",
        default="exclude",
        metavar="exclude|wrong|CATEGORY",
        help="answers no judge decided (offline judge, no rule): exclude (default) leaves them out of every metric; "
        "wrong (or another category) counts them as that; their count is reported either way",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (0: no intervals)")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plots", action="store_true")
    _add_answer_metric_options(p)
    p.set_defaults(func=_guarded(_report))


def _add_answer_metric_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics",
        default="spec",
        help="comma-separated: spec (correctness, specificity, HM; always reported), owc (the open-world metrics "
        "exact_match, text_inclusion, llm_inclusion, semantic_similarity, concept_similarity), or single metric "
        "names; default spec. owc needs the owc extra, an embedding model, a spaCy pipeline and an LLM endpoint",
    )
    p.add_argument(
        "--embedding-model",
        default="sentence-transformers/all-MiniLM-L6-v2",
        help="sentence-transformers model name or local folder for the similarity metrics",
    )
    p.add_argument("--embedding-batch-size", type=int, default=256)
    p.add_argument("--embedding-device", help="device for the embedding model (default: the library's choice)")
    p.add_argument(
        "--concept-pipeline",
        default="en_core_web_sm",
        help="spaCy pipeline with a parser for the noun-phrase concepts, or 'rules' (blank English tokenizer and a "
        "rule chunker, no model)",
    )
    p.add_argument(
        "--concept-reduction",
        choices=("max", "mean", "median", "min"),
        default="max",
        help="how the similarities of an answer's concepts reduce to its score (default max)",
    )
    p.add_argument(
        "--inclusion-judge-config",
        type=Path,
        help="YAML mapping for the LLM inclusion judge (llm, cache, failure_policy: raise|skip); default: the "
        "llm and cache sections of the shipped evaluation judge (eval_judge_llama3_70b.yaml)",
    )
    p.add_argument(
        "--inclusion-judge-set", action="append", default=[], metavar="KEY=VALUE", help="one more inclusion setting"
    )


def inclusion_judge_mapping(config_file: Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The LLM inclusion judge's settings: the YAML file (default: the shipped evaluation judge's ``llm``
    and ``cache`` sections), then ``--inclusion-judge-set`` entries.

    >>> inclusion_judge_mapping(None, ["llm.model=m", "failure_policy=skip"])["llm"]["model"]
    'm'
    """
    from speciarl_verl.evaluation.judging import default_judge_settings

    base = None
    if config_file is None:
        shipped = default_judge_settings()
        base = {"llm": shipped["llm"], "cache": shipped.get("cache")}
    return settings_from_cli(
        config_file, overrides, base=base, option="--inclusion-judge-set", what="inclusion judge settings"
    )


def _answer_metric_setup(args: argparse.Namespace):
    """The chosen answer metrics and the context that scores them (``None`` when only spec is asked for)."""
    from speciarl_verl.evaluation.owc_metrics import OwcContext, OwcSettings, owc_extra_problem, parse_metric_selection

    names = parse_metric_selection(args.metrics)
    if not names:
        return names, None
    problem = owc_extra_problem(names)
    if problem is not None:
        raise UserInputError(problem)
    inclusion = None
    if "llm_inclusion" in names:
        inclusion = inclusion_judge_mapping(args.inclusion_judge_config, args.inclusion_judge_set)
    settings = OwcSettings(
        embedding_model=args.embedding_model,
        embedding_batch_size=args.embedding_batch_size,
        embedding_device=args.embedding_device,
        concept_pipeline=args.concept_pipeline,
        concept_reduction=args.concept_reduction,
        inclusion_judge=inclusion,
    )
    if inclusion is not None:
        settings.inclusion_settings()  # bad settings fail before any model loads
    return names, OwcContext(settings)


def _report(args: argparse.Namespace) -> int:
    from speciarl_verl.evaluation.metrics import CategorySets
    from speciarl_verl.evaluation.owc_metrics import score_verdicts
    from speciarl_verl.evaluation.records import load_verdicts
    from speciarl_verl.evaluation.report import ReportSettings, RunVerdicts, build_report
    from speciarl_verl.evaluation.report_files import write_report

    output_folder(args.out, "--out", "report.md, report.json and the plots")
    names, context = _answer_metric_setup(args)
    # Not given: the default training domain, where the verdicts have it. Given: each must be a data
    # source of the verdicts (build_report refuses one that is not, naming the sources).
    train = None if args.train_domain is None else tuple(d for d in args.train_domain if d.lower() != "none")
    settings = ReportSettings(
        train_domains=train,
        sets=CategorySets.from_labels(_labels(args.correct_set), _labels(args.specific_set)),
        replicates=args.bootstrap,
        confidence=args.confidence,
        seed=args.seed,
        undecided=args.undecided,
        answer_metrics=names,
        answer_metric_settings=None if context is None else context.settings.describe(names),
    )
    runs = []
    for run_name, path in zip(run_names(args.verdicts, args.name), args.verdicts, strict=True):
        verdicts = load_verdicts(path)
        scores = None if context is None else score_verdicts(verdicts, names, context, where=str(path))
        runs.append(RunVerdicts(run_name, verdicts, str(path), answer_scores=scores))
    written = write_report(build_report(runs, settings), args.out, plots=not args.no_plots)
    if context is not None and context.inclusion_failed:
        print(f"{context.inclusion_failed} LLM inclusion question(s) failed and were skipped (failure_policy=skip)")
    print(f"report -> {written['markdown']}")
    return 0


# ---------------------------------------------------------------- agree


def _add_agree(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "agree",
        help="agreement of two judges on the same answers (confusion, kappa), over the answers both decided",
    )
    p.add_argument(
        "--verdicts",
        action="append",
        required=True,
        type=Path,
        help="give exactly two, holding the same answers (keys and answer texts)",
    )
    p.add_argument("--name", action="append", help="names for the two judges, in order")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--top", type=int, default=10, help="how many disagreeing pairs to list")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=_guarded(_agree))


def _agree(args: argparse.Namespace) -> int:
    from speciarl_verl.evaluation.agreement import AgreementInputs, compare_verdicts, write_agreement

    if len(args.verdicts) != 2:
        raise UserInputError(f"give exactly two --verdicts, got {len(args.verdicts)}")
    output_folder(args.out, "--out", "agreement.md, agreement.json and the plot")
    name_a, name_b = run_names(args.verdicts, args.name)
    inputs = AgreementInputs.from_files(args.verdicts[0], args.verdicts[1], name_a, name_b)
    written = write_agreement(compare_verdicts(inputs, top=args.top), args.out, plot=not args.no_plots)
    print(f"agreement -> {written['markdown']}")
    return 0
