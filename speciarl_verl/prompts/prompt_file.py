"""User policy prompts from a file (JSON or YAML, chosen by the file's extension).

The file holds a mapping from prompt name to instruction text, or a list of
``{"name": ..., "text": ...}`` objects::

    # my_prompts.yaml
    birder: |
      Which bird species is this? Reason between <think> and </think>, then answer
      with one species name between <answer> and </answer>, or None.

The text must not contain ``<image>`` (the builder adds it in front). Names already taken
by a different text are refused, so a file cannot silently replace ``general``.
"""

from __future__ import annotations

import json
from pathlib import Path

from speciarl_verl.prompts.registry import PolicyPrompt, register_policy_prompt

__all__ = ["load_policy_prompts"]


def _parse(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text)
    if path.suffix.lower() == ".json":
        return json.loads(text)
    raise ValueError(f"{path}: prompt files must end in .json, .yaml or .yml")


def load_policy_prompts(path: str | Path, register: bool = True) -> list[PolicyPrompt]:
    """Read the prompts in ``path`` (and register them, unless ``register=False``), in file order.

    Example: ``load_policy_prompts("my_prompts.yaml")`` then ``get_policy_prompt("birder")``.
    """
    path = Path(path)
    try:
        content = _parse(path)
    except FileNotFoundError:
        raise ValueError(f"missing prompt file: {path}") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot parse prompt file ({exc})") from exc
    except Exception as exc:  # yaml.YAMLError without importing yaml at module level
        raise ValueError(f"{path}: cannot parse prompt file ({exc})") from exc
    if isinstance(content, dict):
        entries = list(content.items())
    elif isinstance(content, list) and all(isinstance(e, dict) and {"name", "text"} <= e.keys() for e in content):
        entries = [(e["name"], e["text"]) for e in content]
    else:
        raise ValueError(f"{path}: expected a mapping name -> text, or a list of {{name, text}} objects")
    prompts = []
    for position, (name, text) in enumerate(entries):
        if not isinstance(name, str) or not isinstance(text, str):
            raise ValueError(f"{path} entry {position}: name and text must both be strings")
        try:
            prompt = register_policy_prompt(name, text) if register else PolicyPrompt(name, text)
        except ValueError as exc:
            raise ValueError(f"{path} entry {position} ({name!r}): {exc}") from exc
        prompts.append(prompt)
    return prompts
