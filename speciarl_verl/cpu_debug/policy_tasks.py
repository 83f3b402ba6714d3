"""The drawn tasks a tiny policy can be supervised on, and the response it is taught for each image.

Two tasks, each with its own shipped policy (:func:`speciarl_verl.cpu_debug.tiny_policy.shipped_policy_dir`):

* ``shapes`` (:mod:`~speciarl_verl.data.adapters.synthetic_shapes`): every image shows its species;
  the target is ``<think>{colour} {family}</think><answer>{label}</answer>``.
* ``hidden`` (:mod:`~speciarl_verl.data.adapters.synthetic_hidden`): the species is clear, faint or
  hidden. The ``<think>`` says what the image shows (``orange circle``, or ``grey circle`` when the
  colour is hidden) and the answer level is drawn from the same generic-leaning mix on every image;
  a species answer on a hidden image names a colour drawn at random among the family's in-domain
  species, i.e. a guess. So the policy reads the family everywhere and the species where it can,
  answers mostly generically, and guesses now and then where it cannot see.

``label`` is the species, the family, the domain noun ``shape`` or ``None``, by the level drawn.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

__all__ = ["HIDDEN_TARGET_FORMAT", "LEVELS", "POLICY_TASKS", "PolicyTask", "TrainingImage", "get_policy_task"]

#: Answer levels of the supervised targets, in :class:`~speciarl_verl.cpu_debug.tiny_policy.LabelMix` order.
LEVELS = ("species", "family", "domain", "none")
#: What the ``<think>`` of a hidden image calls the colour it cannot see.
HIDDEN_COLOUR_WORD = "grey"
#: The ``hidden`` task's response: ``{seen}`` is the colour, or :data:`HIDDEN_COLOUR_WORD` where the image hides it.
HIDDEN_TARGET_FORMAT = "<think>{seen} {family}</think><answer>{label}</answer>"


@dataclass(frozen=True)
class TrainingImage:
    """One supervised image: its class (an adapter's species object), how visible the species is, the image."""

    species: Any
    visibility: str
    image: Any  # PIL.Image.Image


@dataclass(frozen=True)
class PolicyTask:
    """A drawn task: the dataset it reads, where its policy ships, and the response taught per image.

    ``steps``, ``learning_rate`` and ``start_from`` (another task whose shipped policy the supervision goes
    on from, or None for a fresh model) are what ``tiny_policy build --task NAME`` uses by default, i.e. how
    the shipped policy was built.
    """

    name: str
    data_source: str
    shipped_folder: str
    steps: int
    learning_rate: float
    start_from: str | None = None

    def _module(self):
        if self.name == "shapes":
            from speciarl_verl.data.adapters import synthetic_shapes as module
        else:
            from speciarl_verl.data.adapters import synthetic_hidden as module
        return module

    @property
    def species(self) -> tuple:
        """Every class of the task (in-domain and held-out)."""
        return self._module().SPECIES

    def training_images(self, images_per_class: int | None = None) -> list[TrainingImage]:
        """The ``train`` split's images (the first ``images_per_class`` of each class), class-major."""
        module = self._module()
        count = min(module.SPLIT_SIZES["train"], images_per_class or module.SPLIT_SIZES["train"])
        out = []
        for species in module.species_in_split("train"):
            for index in range(count):
                if self.name == "shapes":
                    out.append(TrainingImage(species, "clear", module.render_shape(species, "train", index)))
                else:
                    visibility = module.visibility_of("train", index)
                    out.append(TrainingImage(species, visibility, module.render_hidden(species, "train", index)))
        return out

    def target(self, species, visibility: str, level: str, rng: random.Random) -> str:
        """The supervised response for one image at answer ``level``; ``rng`` draws a hidden image's guess.

        >>> from speciarl_verl.data.adapters.synthetic_hidden import SPECIES
        >>> get_policy_task("hidden").target(SPECIES[0], "hidden", "family", random.Random(0))
        '<think>grey circle</think><answer>circle</answer>'
        """
        from speciarl_verl.data.adapters.synthetic_shapes import DOMAIN_NOUN

        seen = HIDDEN_COLOUR_WORD if visibility == "hidden" else species.colour
        if level == "species":
            if visibility == "hidden":
                in_domain = [s for s in self._module().species_in_split("train") if s.family == species.family]
                label = rng.choice(in_domain).name
            else:
                label = species.name
        else:
            label = {"family": species.family, "domain": DOMAIN_NOUN, "none": "None"}[level]
        return HIDDEN_TARGET_FORMAT.format(seen=seen, family=species.family, label=label)

    def tokenizer_corpus(self) -> list[str]:
        """Every target text of the task (what the tiny tokenizer is built from, with the prompt)."""
        lines = []
        for species in self.species:
            for level in LEVELS:
                lines.append(self.target(species, "clear", level, random.Random(0)))
                if self.name == "hidden":
                    lines.append(self.target(species, "hidden", level, random.Random(0)))
        return lines


POLICY_TASKS: dict[str, PolicyTask] = {
    "shapes": PolicyTask("shapes", "synthetic_shapes", "shipped_policy", steps=4000, learning_rate=1e-2),
    # From a fresh model, 4000 and 6000 steps at 1e-2 never learned to read the shape on this task (docs/notes.md);
    # from the shapes policy, which does, 3000 steps at 3e-3 read the family and the visible species.
    "hidden": PolicyTask(
        name="hidden",
        data_source="synthetic_shapes_hidden",
        shipped_folder="shipped_policy_hidden",
        steps=3000,
        learning_rate=3e-3,
        start_from="shapes",
    ),
}


def get_policy_task(name: str) -> PolicyTask:
    """The task called ``name`` (``shapes`` or ``hidden``); an unknown name is a ``ValueError`` listing them."""
    try:
        return POLICY_TASKS[name]
    except KeyError:
        raise ValueError(f"unknown policy task {name!r}; known: {', '.join(POLICY_TASKS)}") from None
