"""From a verl FSDP checkpoint to a Hugging Face folder ``speciarl eval predict`` can load.

verl 0.9.1 saves an actor as ``global_step_N/actor/``: the FSDP shards
(``model_world_size_W_rank_R.pt``, with ``fsdp_config.json`` holding ``W``), the model's config,
tokenizer and processor in ``huggingface/``, and for a LoRA run ``lora_train_meta.json`` (rank,
alpha, task type). Its own model merger (:mod:`verl.model_merger`, the ``python -m
verl.model_merger merge --backend fsdp`` of verl's docs) gathers the shards and writes the
weights as a Hugging Face model, the LoRA matrices apart as a PEFT adapter in
``lora_adapter/`` (the base weights stay as trained: LoRA leaves them untouched). Both are what
``--model`` / ``--adapter`` take, so vLLM serves the adapter as it serves any LoRA, and the
transformers backend merges it in memory.

The merge is cached beside the shards, in ``actor/huggingface_merged/``, and reused while it is
newer than every shard; a merge is written to a temporary folder and renamed at the end, so an
interrupted merge is never taken for a finished one. verl's merger writes bfloat16 weights.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MERGED_FOLDER", "MergedCheckpoint", "actor_folder", "merge_checkpoint"]

#: Where the merged Hugging Face folder is kept, inside the checkpoint's ``actor/``.
MERGED_FOLDER = "huggingface_merged"
#: Written last into a finished merge: which shards it was made from.
MARKER = "speciarl_merge.json"
#: The PEFT adapter folder verl's merger writes inside its target folder for a LoRA checkpoint.
ADAPTER_FOLDER = "lora_adapter"

_SHARD_GLOB = "model_world_size_*_rank_*.pt"
_EXPECTED = (
    "expected verl's global_step_N/ or its actor/ folder, holding fsdp_config.json, "
    "model_world_size_W_rank_R.pt shards and huggingface/config.json"
)


@dataclass(frozen=True)
class MergedCheckpoint:
    """A checkpoint as prediction inputs: the merged model folder and its LoRA adapter (``None``
    for a full fine-tune); ``reused`` when an earlier merge was still current."""

    actor: Path
    model: Path
    adapter: Path | None
    reused: bool
    step: int | None = None


def actor_folder(path: Path) -> Path:
    """The ``actor/`` folder of a verl checkpoint given as ``global_step_N`` or ``actor``.

    Raises ``ValueError`` naming ``path`` when it is not a verl FSDP actor checkpoint.
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"--checkpoint {path}: no such folder ({_EXPECTED})")
    actor = (path / "actor" if (path / "actor").is_dir() else path).resolve()
    missing = [name for name in ("fsdp_config.json", "huggingface/config.json") if not (actor / name).is_file()]
    if not any(actor.glob(_SHARD_GLOB)):
        missing.append(_SHARD_GLOB)
    if missing:
        raise ValueError(f"--checkpoint {path}: not a verl FSDP checkpoint, no {', '.join(missing)} ({_EXPECTED})")
    world_size = _world_size(actor)
    absent = [r for r in range(world_size) if not (actor / f"model_world_size_{world_size}_rank_{r}.pt").is_file()]
    if absent:
        raise ValueError(
            f"--checkpoint {path}: fsdp_config.json says world size {world_size} but the shards of rank(s) "
            f"{', '.join(map(str, absent))} are missing"
        )
    return actor


def _world_size(actor: Path) -> int:
    try:
        size = json.loads((actor / "fsdp_config.json").read_text(encoding="utf-8")).get("world_size")
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{actor / 'fsdp_config.json'}: cannot read it ({error})") from error
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"{actor / 'fsdp_config.json'}: world_size must be a positive integer, got {size!r}")
    return size


def _shards(actor: Path) -> list[Path]:
    size = _world_size(actor)
    return [actor / f"model_world_size_{size}_rank_{rank}.pt" for rank in range(size)]


def _step(actor: Path) -> int | None:
    for folder in (actor, actor.parent):
        if folder.name.startswith("global_step_") and folder.name.removeprefix("global_step_").isdigit():
            return int(folder.name.removeprefix("global_step_"))
    return None


def _inputs(actor: Path) -> dict[str, dict[str, float]]:
    """What a merge is made from, with sizes and modification times (a re-saved shard is a new input)."""
    files = [*_shards(actor), actor / "fsdp_config.json", actor / "lora_train_meta.json"]
    return {f.name: {"size": f.stat().st_size, "mtime": f.stat().st_mtime} for f in files if f.is_file()}


def _current(target: Path, actor: Path) -> bool:
    marker = target / MARKER
    if not marker.is_file():
        return False
    try:
        stored = json.loads(marker.read_text(encoding="utf-8")).get("inputs")
    except (OSError, json.JSONDecodeError):
        return False
    newest = max(entry["mtime"] for entry in _inputs(actor).values())
    return stored == _inputs(actor) and marker.stat().st_mtime >= newest


def merge_checkpoint(path: Path, log=sys.stderr) -> MergedCheckpoint:
    """Merge the checkpoint at ``path`` with verl's model merger (or reuse a current merge).

    verl's merger prints its progress; it goes to ``log`` (stderr), leaving stdout to the command.
    """
    actor = actor_folder(path)
    target = actor / MERGED_FOLDER
    reused = _current(target, actor)
    if not reused:
        _merge(actor, target, log)
    adapter = target / ADAPTER_FOLDER
    return MergedCheckpoint(
        actor=actor,
        model=target,
        adapter=adapter if (adapter / "adapter_config.json").is_file() else None,
        reused=reused,
        step=_step(actor),
    )


def _merge(actor: Path, target: Path, log) -> None:
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    inputs = _inputs(actor)
    scratch = actor / f".{MERGED_FOLDER}.partial-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        config = ModelMergerConfig(
            operation="merge",
            backend="fsdp",
            local_dir=str(actor),
            target_dir=str(scratch),
            hf_model_config_path=str(actor / "huggingface"),
            trust_remote_code=True,
        )
        with contextlib.redirect_stdout(log):
            merger = FSDPModelMerger(config)
            merger.merge_and_save()
            merger.cleanup()
        marker = {"merged_by": "verl.model_merger (fsdp)", "from": str(actor), "inputs": inputs}
        (scratch / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
