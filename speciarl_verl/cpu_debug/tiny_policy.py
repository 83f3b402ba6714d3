"""A tiny Qwen2.5-VL that answers the synthetic shapes task, mostly generically: a policy for CPU runs of verl.

A randomly initialised tiny model never writes a parseable ``<answer>``, so every reward is -1
and every GRPO advantage 0. :func:`build_tiny_policy` builds the tiny Qwen2.5-VL of
:mod:`speciarl_verl.offline_fixtures.tiny_qwen_vl` (in the shape of :data:`POLICY_TEXT_SIZES`,
which vLLM's CPU build can serve) and supervises it with AdamW on the ``train`` images of
:mod:`speciarl_verl.data.adapters.synthetic_shapes`, with the ``general`` policy prompt exactly as
the data builder writes it and as verl's agent loop renders it (chat template, ``qwen_vl_utils``
image path). The target response is::

    <think>red circle</think><answer>LABEL</answer>

where LABEL is drawn per example from :class:`LabelMix`: the species (``red circle``), the
family (``circle``), the domain noun (``shape``) or ``None``. The default mix leans generic
(15 % species, 45 % family, 30 % domain noun, 10 % None), like the reasoning VLMs of the
paper: the model can name the species (its ``<think>`` does) but usually does not, so a
group of sampled answers spans several verdict categories and the group reward has
something to rank.

The package ships the policy this module builds with its defaults (:func:`shipped_policy_dir`,
``tiny_policy.json`` beside the weights records the settings), so the demo, the CPU recipe, the
tests and the benchmarks start from the same bits on every machine: training it again on another
CPU would not give the same weights, since float rounding differs from CPU to CPU.

Command line::

    python -m speciarl_verl.cpu_debug.tiny_policy build --out /tmp/tiny-policy   # what `make policy` ships
    python -m speciarl_verl.cpu_debug.tiny_policy check [--policy DIR]          # RESULT family_right=...

Python::

    model = transformers.AutoModelForImageTextToText.from_pretrained(shipped_policy_dir())
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from speciarl_verl.cpu_debug.policy_tasks import HIDDEN_TARGET_FORMAT, LEVELS, POLICY_TASKS, PolicyTask, get_policy_task

if TYPE_CHECKING:
    from speciarl_verl.data.adapters.synthetic_shapes import ShapeSpecies

__all__ = [
    "POLICY_TEXT_SIZES",
    "SHIPPED_POLICY",
    "TARGET_FORMAT",
    "LabelMix",
    "build_tiny_policy",
    "chat_messages",
    "encode_prompt",
    "main",
    "one_torch_thread",
    "progress_bar",
    "shipped_policy_dir",
    "target_response",
    "weights_digest",
]

#: The folder of the shipped policy inside this package (built by ``make policy``).
SHIPPED_POLICY = "shipped_policy"

#: The text model of the policy: head_dim 32 (hidden 64 over 2 heads, one key-value head) and a multimodal rotary
#: section summing to half of it, the smallest shape vLLM's CPU attention serves (it refuses head_dim 16).
POLICY_TEXT_SIZES = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "rope_parameters": {"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 1_000_000.0},
}
#: The vision tower: as wide as the text model, so it can read the outline (the family) as well as the colour.
POLICY_VISION_HIDDEN = {"hidden_size": 64, "intermediate_size": 128, "num_heads": 2}

#: The supervision of the shipped policy (the builder's defaults).
DEFAULT_STEPS = 4000
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 1e-2
DEFAULT_VISION_DEPTH = 2

#: The response the policy is taught; ``{label}`` is the species, family, domain noun or ``None``.
TARGET_FORMAT = "<think>{colour} {family}</think><answer>{label}</answer>"


@dataclass(frozen=True)
class LabelMix:
    """Probabilities of the answer levels in the supervised targets; they must sum to 1.

    >>> LabelMix().draw(random.Random(0))
    'domain'
    >>> LabelMix.parse("0.25,0.25,0.25,0.25").weights
    (0.25, 0.25, 0.25, 0.25)
    """

    species: float = 0.15
    family: float = 0.45
    domain: float = 0.30
    none: float = 0.10

    def __post_init__(self) -> None:
        weights = self.weights
        if any(w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
            raise ValueError(f"label mix weights must be non-negative and sum to 1, got {asdict(self)}")

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(getattr(self, level) for level in LEVELS)

    def draw(self, rng: random.Random) -> str:
        """One level name (``species``, ``family``, ``domain`` or ``none``)."""
        return rng.choices(LEVELS, weights=self.weights)[0]

    @classmethod
    def parse(cls, text: str) -> LabelMix:
        """``"0.15,0.45,0.3,0.1"`` (species, family, domain noun, None) -> a mix."""
        try:
            values = [float(part) for part in text.split(",")]
        except ValueError:
            values = []
        if len(values) != len(LEVELS):
            raise ValueError(f"--mix takes 4 comma-separated numbers (species,family,domain,none), got {text!r}")
        return cls(*values)


def target_response(species: ShapeSpecies, level: str) -> str:
    """The supervised response for a :class:`~speciarl_verl.data.adapters.synthetic_shapes.ShapeSpecies`.

    >>> from speciarl_verl.data.adapters.synthetic_shapes import SPECIES
    >>> target_response(SPECIES[0], "family")
    '<think>red circle</think><answer>circle</answer>'
    """
    from speciarl_verl.data.adapters.synthetic_shapes import DOMAIN_NOUN

    label = {"species": species.name, "family": species.family, "domain": DOMAIN_NOUN, "none": "None"}[level]
    return TARGET_FORMAT.format(colour=species.colour, family=species.family, label=label)


def chat_messages(user_content: str, image) -> list[dict]:
    """A parquet ``prompt`` user turn (``"<image>" + text``) as the structured message verl's dataset makes of it.

    Only the single-leading-image layout the data builder writes is accepted.
    """
    if not user_content.startswith("<image>") or user_content.count("<image>") != 1:
        raise ValueError(f"expected one leading <image> in the user turn, got {user_content[:60]!r}")
    return [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": user_content[len("<image>") :]}],
        }
    ]


def _tokenizer_corpus(prompt_text: str, task: PolicyTask) -> list[str]:
    return [prompt_text, "You are a helpful assistant.", *task.tokenizer_corpus()]


def encode_prompt(processor, user_content: str, image):
    """``(prompt_ids, pixel_values, image_grid_thw)`` of one parquet user turn and its image.

    The route of verl's agent loop: the structured message, ``qwen_vl_utils`` resizing, the
    processor's chat template with the generation prompt, the processor. A test checks the
    result against verl's own prompt builder token for token.
    """
    from qwen_vl_utils import process_vision_info

    messages = chat_messages(user_content, image)
    images, _ = process_vision_info(messages, image_patch_size=14)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=images, return_tensors="pt")
    return inputs["input_ids"][0], inputs["pixel_values"], inputs["image_grid_thw"]


def shipped_policy_dir(task: str = "shapes") -> Path:
    """The shipped policy's folder (``config.json``, weights, processor, ``tiny_policy.json``) inside the package,
    for the ``shapes`` task or the graded-visibility ``hidden`` one."""
    from importlib import resources

    return Path(str(resources.files("speciarl_verl.cpu_debug").joinpath(get_policy_task(task).shipped_folder)))


@contextmanager
def one_torch_thread():
    """Run torch on one thread inside the block.

    The model is too small to gain from a second thread, and OpenMP threads spinning against other busy
    processes on a small machine make a step ten times slower; one thread also fixes the summation order.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def progress_bar(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, TextColumn("loss {task.fields[loss]:.3f}"), disable=not enabled)


def build_tiny_policy(
    out_dir: str | Path,
    *,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    mix: LabelMix | None = None,
    prompt: str = "general",
    images_per_class: int | None = None,
    vision_depth: int = DEFAULT_VISION_DEPTH,
    progress: bool = True,
    task: str = "shapes",
    start_from: str | Path | None = None,
) -> Path:
    """Build the tiny Qwen2.5-VL in ``out_dir``, supervise it on synthetic shapes, save it there; return the path.

    ``steps`` AdamW steps of ``batch_size`` examples from the adapter's ``train`` split (the
    first ``images_per_class`` images of each class, default all 64; each pass visits every
    image once, in a seeded order); each example's answer level is drawn from ``mix``. Only
    the response tokens are supervised. Same arguments, same weights on one machine (torch
    runs on one thread inside); another CPU's float rounding gives other weights, which is
    why the package ships the policy the defaults built. ``vision_depth`` is the number of
    vision transformer blocks. The folder loads with
    ``transformers.AutoProcessor`` / ``AutoModelForImageTextToText`` and verl's
    ``hf_tokenizer`` / ``hf_processor``; it also holds ``tiny_policy.json`` (the arguments and
    the final loss). ``task`` is the drawn task (:mod:`~speciarl_verl.cpu_debug.policy_tasks`):
    ``shapes`` or the graded-visibility ``hidden``. ``start_from``: a policy folder to go on
    supervising (its tokenizer, processor and weights; ``vision_depth`` is then its own) instead of
    a freshly initialised model; the record names it and the digest of its weights.
    """
    import torch
    import transformers
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from speciarl_verl.offline_fixtures.tiny_qwen_vl import build_tiny_qwen25_vl
    from speciarl_verl.prompts import get_policy_prompt

    if (
        steps < 0
        or batch_size < 1
        or learning_rate <= 0
        or vision_depth < 1
        or (images_per_class is not None and images_per_class < 1)
    ):
        raise ValueError(
            "need steps >= 0, batch_size >= 1, learning_rate > 0, vision_depth >= 1, images_per_class >= 1 or None; "
            f"got {steps}, {batch_size}, {learning_rate}, {vision_depth}, {images_per_class}"
        )
    mix = mix or LabelMix()
    policy_task = get_policy_task(task)
    policy_prompt = get_policy_prompt(prompt)
    vision = {**POLICY_VISION_HIDDEN, "depth": vision_depth, "fullatt_block_indexes": list(range(vision_depth))}
    if start_from is None:
        corpus = _tokenizer_corpus(policy_prompt.text, policy_task)
        path = build_tiny_qwen25_vl(out_dir, corpus=corpus, text_sizes=POLICY_TEXT_SIZES, vision_sizes=vision)
        started = None
    else:
        path, started = _copy_policy(Path(start_from), Path(out_dir))
        vision = json.loads((path / "config.json").read_text())["vision_config"]
        vision = {key: vision[key] for key in ("hidden_size", "intermediate_size", "num_heads", "depth")}
        vision_depth = vision["depth"]
    processor = AutoProcessor.from_pretrained(str(path))
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=torch.float32)
    with one_torch_thread():
        examples = _TrainingImages.encode(processor, policy_prompt.user_content, policy_task, images_per_class)
        first_loss, loss = _supervise(
            model, processor, examples, policy_task, mix, seed, steps, batch_size, learning_rate, progress
        )
    model.eval()
    model.save_pretrained(str(path))
    record = {
        "task": policy_task.name,
        "start_from": started,
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "mix": asdict(mix),
        "prompt": {"name": policy_prompt.name, "version": policy_prompt.version},
        "images_per_class": images_per_class,
        "vision_depth": vision_depth,
        "text_sizes": POLICY_TEXT_SIZES,
        "vision_sizes": vision,
        "target_format": TARGET_FORMAT if policy_task.name == "shapes" else HIDDEN_TARGET_FORMAT,
        "first_loss": first_loss,
        "final_loss": loss,
        "built_with": {"torch": torch.__version__, "transformers": transformers.__version__, "cpu": _cpu_name()},
    }
    (path / "tiny_policy.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def weights_digest(policy: Path) -> str:
    """SHA-256 over a policy folder's ``*.safetensors`` files, in name order: which weights these are."""
    import hashlib

    digest = hashlib.sha256()
    for weights in sorted(Path(policy).glob("*.safetensors")):
        digest.update(weights.read_bytes())
    return digest.hexdigest()


def _copy_policy(source: Path, out_dir: Path) -> tuple[Path, dict]:
    """Copy a policy folder (not its build record) to ``out_dir``; returns the path and what it started from."""
    import shutil

    if not (source / "config.json").is_file():
        raise ValueError(f"start_from {source} holds no model (no config.json)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in sorted(source.iterdir()):
        if item.is_file() and item.name != "tiny_policy.json":
            shutil.copy(item, out_dir / item.name)
    name = source.name if source.resolve().parent == shipped_policy_dir().resolve().parent else str(source)
    return out_dir, {"policy": name, "weights_sha256": weights_digest(source)}


def _cpu_name() -> str:
    """The CPU's model name (what a build's float rounding depends on), for the build record."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class _TrainingImages:
    """The encoded ``train`` split: per-image pixels and the prompt, which is one token sequence for all images."""

    prompt_ids: object  # torch.Tensor
    species: tuple
    visibilities: tuple
    pixels: tuple
    grids: tuple

    @classmethod
    def encode(
        cls, processor, user_content: str, task: PolicyTask, images_per_class: int | None = None
    ) -> _TrainingImages:
        import torch

        prompt_ids, species, visibilities, pixels, grids = None, [], [], [], []
        for example in task.training_images(images_per_class):
            ids, pixel_values, grid = encode_prompt(processor, user_content, example.image)
            if prompt_ids is None:
                prompt_ids = ids
            elif not torch.equal(ids, prompt_ids):
                raise RuntimeError("two synthetic images gave different prompts; the renderer must use one size")
            species.append(example.species)
            visibilities.append(example.visibility)
            pixels.append(pixel_values)
            grids.append(grid)
        return cls(prompt_ids, tuple(species), tuple(visibilities), tuple(pixels), tuple(grids))


def _supervise(
    model, processor, data: _TrainingImages, task: PolicyTask, mix: LabelMix, seed, steps, batch_size, lr, progress
) -> tuple[float, float]:
    """AdamW on the response tokens only (the prompt is masked); returns the first and the last step's loss.

    The forward pass gets ``mm_token_type_ids``, so the model is taught on the 3-D positions verl's actor and the
    ``hf_cpu`` rollout use, not on the 1-D fallback transformers takes without them.
    """
    import torch

    from speciarl_verl.cpu_debug.vision_tokens import mm_token_type_ids

    tokenizer = processor.tokenizer
    tokens: dict[str, list[int]] = {}

    def response_ids(text: str) -> list[int]:
        if text not in tokens:
            tokens[text] = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return tokens[text]

    rng = random.Random(f"tiny-policy/{seed}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    # Short warm-up, then the full rate for most of the run: the model only starts reading the image after some
    # tens of steps at a high rate, so the rate decays (linearly, to a tenth) over the last 30 % only.
    warmup, decay_from = max(1, min(10, steps // 10)), int(0.7 * steps)

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.1, 1 - (step - decay_from) / max(1, steps - decay_from)) if step >= decay_from else 1.0

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    prompt_len = len(data.prompt_ids)
    order: list[int] = []
    loss = first = float("nan")
    model.train()
    with progress_bar(progress) as bar:
        bar_task = bar.add_task("supervising the tiny policy", total=steps, loss=loss)
        for _ in range(steps):
            batch = []
            while len(batch) < batch_size:
                order = order or rng.sample(range(len(data.species)), len(data.species))
                batch.append(order.pop())
            targets = [
                response_ids(task.target(data.species[i], data.visibilities[i], mix.draw(rng), rng)) for i in batch
            ]
            input_ids = torch.full((batch_size, prompt_len + max(map(len, targets))), tokenizer.pad_token_id)
            labels = torch.full_like(input_ids, -100)
            attention = torch.zeros_like(input_ids)
            input_ids[:, :prompt_len] = data.prompt_ids
            for row, target in enumerate(targets):
                end = prompt_len + len(target)
                input_ids[row, prompt_len:end] = labels[row, prompt_len:end] = torch.tensor(target)
                attention[row, :end] = 1
            out = model(
                input_ids=input_ids,
                attention_mask=attention,
                mm_token_type_ids=mm_token_type_ids(input_ids, processor.image_token_id, processor.video_token_id),
                pixel_values=torch.cat([data.pixels[i] for i in batch]),
                image_grid_thw=torch.cat([data.grids[i] for i in batch]),
                labels=labels,
            )
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            loss = float(out.loss.detach())
            first = loss if first != first else first  # (NaN until the first step)
            bar.update(bar_task, advance=1, loss=loss)
    return first, loss


def _build(args: argparse.Namespace) -> int:
    task = get_policy_task(args.task)
    start_from = args.start_from
    if start_from is None and task.start_from is not None:
        start_from = shipped_policy_dir(task.start_from)
    path = build_tiny_policy(
        args.out,
        seed=args.seed,
        steps=task.steps if args.steps is None else args.steps,
        batch_size=args.batch_size,
        learning_rate=task.learning_rate if args.lr is None else args.lr,
        mix=args.mix,
        vision_depth=args.vision_depth,
        progress=not args.no_progress,
        task=args.task,
        start_from=None if start_from == "none" else start_from,
    )
    print(f"wrote {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from speciarl_verl.cpu_debug.policy_check import check_policy, check_rows, sample_responses

    policy = Path(args.policy) if args.policy else shipped_policy_dir(args.task)
    rows = check_rows(args.split, args.images, seed=args.seed, dataset=get_policy_task(args.task).data_source)
    groups = sample_responses(policy, rows, n=args.n, seed=args.seed, progress=not args.no_progress)
    check = check_policy(rows, groups)
    print(f"policy {policy}: {check.responses} answers to {check.groups} {args.split} images")
    summary = {"categories": check.categories, "varied_groups": check.varied_groups}
    if check.by_visibility:
        summary["by_visibility"] = check.by_visibility
    print(json.dumps(summary, indent=2))
    print(check.result_line())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m speciarl_verl.cpu_debug.tiny_policy build|check``."""
    parser = argparse.ArgumentParser(
        prog="python -m speciarl_verl.cpu_debug.tiny_policy",
        description="The tiny Qwen2.5-VL policy of the synthetic shapes task (generic-leaning), for CPU runs of verl.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="supervise a new policy (the defaults build the shipped one)")
    build.add_argument("--out", required=True, help="folder to write the model to (created)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--steps", type=int, help=f"AdamW steps (default: the task's, {DEFAULT_STEPS} for shapes)")
    build.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    build.add_argument("--lr", type=float, help="learning rate (default: the task's)")
    build.add_argument("--vision-depth", type=int, default=DEFAULT_VISION_DEPTH, help="vision transformer blocks")
    build.add_argument(
        "--mix",
        type=LabelMix.parse,
        default=LabelMix(),
        help="species,family,domain,none shares of the targets (default 0.15,0.45,0.3,0.1)",
    )
    build.add_argument("--task", choices=sorted(POLICY_TASKS), default="shapes", help="drawn task (default shapes)")
    build.add_argument(
        "--start-from",
        help="go on supervising this policy folder (default: the task's: none for shapes, which starts from a fresh "
        "model; the shipped shapes policy for hidden); 'none' for a fresh model",
    )
    build.add_argument("--no-progress", action="store_true")
    check = commands.add_parser("check", help="sample a policy on synthetic shapes and print what it gets right")
    check.add_argument("--policy", help="policy folder (default: the shipped policy)")
    check.add_argument("--split", default="test", help="synthetic shapes split (default test, the in-domain one)")
    check.add_argument("--images", type=int, help="draw this many images of the split (default: all)")
    check.add_argument("--n", type=int, default=8, help="answers per image (default 8)")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--task", choices=sorted(POLICY_TASKS), default="shapes", help="drawn task (default shapes)")
    check.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    return _build(args) if args.command == "build" else _check(args)


if __name__ == "__main__":
    raise SystemExit(main())
