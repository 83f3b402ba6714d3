"""Policy prompts by name: a dict, a register function, a getter (the shape of verl's reward-manager registry)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["PolicyPrompt", "get_policy_prompt", "policy_prompt_names", "register_policy_prompt"]


@dataclass(frozen=True)
class PolicyPrompt:
    """An instruction shown to the policy after the image.

    ``text`` is the instruction only; the parquet's user turn is ``"<image>" + text``.
    ``version`` is a short hash of ``text``, so a build records exactly which wording it used.

    >>> PolicyPrompt("demo", "Name the bird.").version == PolicyPrompt("other", "Name the bird.").version
    True
    """

    name: str
    text: str
    version: str = field(init=False)

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise ValueError("a policy prompt needs a non-empty name")
        if not self.text.strip():
            raise ValueError(f"policy prompt {self.name!r} has an empty text")
        if "<image>" in self.text:
            raise ValueError(f"policy prompt {self.name!r}: leave out '<image>'; the builder puts it in front")
        object.__setattr__(self, "version", hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:12])

    @property
    def user_content(self) -> str:
        """The user turn of a parquet row: one image placeholder, then the instruction."""
        return "<image>" + self.text


POLICY_PROMPTS: dict[str, PolicyPrompt] = {}


def register_policy_prompt(name: str, text: str) -> PolicyPrompt:
    """Register ``text`` under ``name``; registering the same text again is a no-op, a different one is refused.

    >>> register_policy_prompt("general", get_policy_prompt("general").text).name
    'general'
    """
    prompt = PolicyPrompt(name, text)
    if name in POLICY_PROMPTS and POLICY_PROMPTS[name] != prompt:
        raise ValueError(
            f"policy prompt {name} has already been registered with another text "
            f"(version {POLICY_PROMPTS[name].version} vs {prompt.version})"
        )
    POLICY_PROMPTS[name] = prompt
    return prompt


def get_policy_prompt(name: str) -> PolicyPrompt:
    """The prompt registered as ``name``; raises ``ValueError('Unknown policy prompt: NAME')``."""
    if name not in POLICY_PROMPTS:
        raise ValueError(f"Unknown policy prompt: {name}")
    return POLICY_PROMPTS[name]


def policy_prompt_names() -> list[str]:
    """Registered prompt names, sorted."""
    return sorted(POLICY_PROMPTS)
