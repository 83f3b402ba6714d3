"""Does the tiny policy see? Sample it on synthetic shapes and count what its answers get right.

:func:`sample_responses` draws ``n`` answers per image with ``model.generate`` (the prompt built as
verl's agent loop builds it); :func:`check_policy` judges them with the offline rule tier and
summarises them in a :class:`PolicyCheck`, whose :meth:`~PolicyCheck.result_line` is what
``python -m speciarl_verl.cpu_debug.tiny_policy check`` prints last::

    RESULT family_right=0.981 species_right=0.934 specific_share=0.142 parse_rate=0.997 images=192

* ``family_right``: of the parsed answers that name a family or a species, the share whose family
  (the species' family, for a species) is the image's;
* ``species_right``: of the parsed answers that name a species, the share that are the image's;
* ``specific_share``: share of all answers the rule tier files *specific*;
* ``parse_rate``: share of answers with a parseable ``<answer>``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CHECK_ANSWERS", "CHECK_TEMPERATURE", "PolicyCheck", "check_policy", "check_rows", "sample_responses"]

#: Answers sampled per image by the check, and their temperature: verl's rollout default, what training samples at.
CHECK_ANSWERS = 8
CHECK_TEMPERATURE = 1.0


def sample_responses(
    model_dir: str | Path,
    rows: Sequence[dict],
    *,
    n: int = CHECK_ANSWERS,
    temperature: float = CHECK_TEMPERATURE,
    max_new_tokens: int = 48,
    seed: int = 0,
    progress: bool = False,
) -> list[list[str]]:
    """``n`` responses sampled with ``model.generate`` per parquet row (its ``prompt`` and ``images``), decoded."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from speciarl_verl.cpu_debug.tiny_policy import one_torch_thread, progress_bar

    processor = AutoProcessor.from_pretrained(str(model_dir))
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir)).eval()
    torch.manual_seed(seed)
    groups = []
    with one_torch_thread(), progress_bar(progress) as bar:
        task = bar.add_task("sampling the tiny policy", total=len(rows), loss=float("nan"))
        for row in rows:
            groups.append(_sample_group(model, processor, row, n, temperature, max_new_tokens))
            bar.advance(task)
    return groups


def _sample_group(model, processor, row: dict, n: int, temperature: float, max_new_tokens: int) -> list[str]:
    import io

    import torch
    from PIL import Image

    from speciarl_verl.cpu_debug.tiny_policy import encode_prompt
    from speciarl_verl.cpu_debug.vision_tokens import mm_token_type_ids

    tokenizer = processor.tokenizer
    image = Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")
    ids, pixel_values, grid = encode_prompt(processor, row["prompt"][0]["content"], image)
    token_types = mm_token_type_ids(ids[None], processor.image_token_id, processor.video_token_id)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids[None].repeat(n, 1),
            attention_mask=torch.ones(n, len(ids), dtype=torch.long),
            mm_token_type_ids=token_types.repeat(n, 1),
            pixel_values=pixel_values.repeat(n, 1),
            image_grid_thw=grid.repeat(n, 1),
            do_sample=True,
            temperature=temperature,
            top_p=1.0,
            top_k=0,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    return tokenizer.batch_decode(out[:, len(ids) :], skip_special_tokens=True)


@dataclass(frozen=True)
class PolicyCheck:
    """Sampled groups in numbers (see the module for the rates); ``*_named`` count the answers behind each rate."""

    groups: int
    responses: int
    parse_rate: float
    categories: dict[str, float]
    varied_groups: float
    species_named: int
    species_correct: float
    family_named: int = 0
    family_correct: float = 0.0
    #: For rows that record a visibility (the ``hidden`` task): per visibility, the counts ``answers`` and
    #: ``species_answers``, the verdict shares, ``correct`` (share of answers in a correct category) and
    #: ``species_right`` (share of the species answers naming the image's species).
    by_visibility: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def specific_share(self) -> float:
        return self.categories.get("specific", 0.0)

    def result_line(self) -> str:
        """``RESULT family_right=... species_right=... specific_share=... parse_rate=... images=...``."""
        return (
            f"RESULT family_right={self.family_correct:.3f} species_right={self.species_correct:.3f} "
            f"specific_share={self.specific_share:.3f} parse_rate={self.parse_rate:.3f} images={self.groups}"
        )


def check_policy(rows: Sequence[dict], groups: Sequence[Sequence[str]]) -> PolicyCheck:
    """Judge sampled ``groups`` (one per parquet row) with the offline rule tier and summarise them.

    A parsed answer that names a species (``<colour> <family>``) counts in ``species_named`` and in
    ``family_named`` (its family is the word after the colour); one that names a family alone in
    ``family_named`` only. Rows of either drawn task (``synthetic_shapes``, ``synthetic_shapes_hidden``).
    """
    from speciarl_verl.core.answer_parsing import parse_answer
    from speciarl_verl.core.categories import CORRECT_CATEGORIES, Category
    from speciarl_verl.core.label_normalization import normalize_label
    from speciarl_verl.data.adapters import synthetic_hidden, synthetic_shapes
    from speciarl_verl.judge.offline import decide_offline
    from speciarl_verl.judge.verifier import VerificationRequest

    family_of = {family: family for family in synthetic_shapes.FAMILIES}
    family_of |= {normalize_label(s.name): s.family for s in (*synthetic_shapes.SPECIES, *synthetic_hidden.SPECIES)}
    correct_names = {c.value for c in CORRECT_CATEGORIES}
    categories: Counter[str] = Counter()
    parsed = varied = total = 0
    named: Counter[str] = Counter()
    right: Counter[str] = Counter()
    visible: dict[str, Counter[str]] = {}
    for row, responses in zip(rows, groups, strict=True):
        truth = row["reward_model"]["ground_truth"]
        visibility = (row.get("extra_info") or {}).get("visibility") or ""
        seen = set()
        for response in responses:
            total += 1
            label = parse_answer(response)
            tally = visible.setdefault(visibility, Counter()) if visibility else Counter()
            tally["answers"] += 1
            if label is None:
                seen.add("unparseable")
                categories["unparseable"] += 1
                tally["unparseable"] += 1
                continue
            parsed += 1
            request = VerificationRequest.for_row(truth, label, row["data_source"], row["extra_info"])
            category = decide_offline(request) or Category.WRONG
            seen.add(category.value)
            categories[category.value] += 1
            tally[category.value] += 1
            tally["correct"] += category.value in correct_names
            key = normalize_label(label)
            if key in family_of:
                named["family"] += 1
                right["family"] += family_of[key] == family_of[normalize_label(truth)]
                if key != family_of[key]:  # a species, not a family alone
                    named["species"] += 1
                    right["species"] += key == normalize_label(truth)
                    tally["species_named"] += 1
                    tally["species_right"] += key == normalize_label(truth)
        varied += len(seen) > 1
    by_visibility = {}
    for name, tally in sorted(visible.items()):
        answers = tally.pop("answers")
        species_named, species_right = tally.pop("species_named", 0), tally.pop("species_right", 0)
        shares = {key: count / answers for key, count in sorted(tally.items())}
        shares.setdefault("correct", 0.0)
        shares["species_right"] = species_right / max(1, species_named)
        by_visibility[name] = {"answers": answers, "species_answers": species_named, **shares}
    return PolicyCheck(
        groups=len(groups),
        responses=total,
        parse_rate=parsed / max(1, total),
        categories={name: count / max(1, total) for name, count in sorted(categories.items())},
        varied_groups=varied / max(1, len(groups)),
        species_named=named["species"],
        species_correct=right["species"] / max(1, named["species"]),
        family_named=named["family"],
        family_correct=right["family"] / max(1, named["family"]),
        by_visibility=by_visibility,
    )


def check_rows(
    split: str = "test", count: int | None = None, seed: int = 0, dataset: str = "synthetic_shapes"
) -> list[dict]:
    """The rows of ``split`` of a drawn task (all of them, or ``count`` drawn with ``seed``), built by our data
    builder as training reads them."""
    import tempfile

    import pyarrow.parquet as pq

    from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet

    with tempfile.TemporaryDirectory() as tmp:
        out = build_parquet(
            SourceSpec(dataset, ".", split, subset=count), Path(tmp) / f"{split}.parquet",
            BuildOptions(seed=seed, progress=False),
        )  # fmt: skip
        return pq.read_table(out.parquet).to_pylist()
