"""Score the answers of one GRPO group with SpeciaRL's pure API (no verl, no GPU).

python examples/score_one_image.py
"""

import asyncio

from speciarl_verl import group_rewards, parse_answer, static_reward
from speciarl_verl.judge import OfflineVerifier, VerificationRequest

GROUND_TRUTH = "737-800"
# What the class's parquet row carries for the judge (extra_info): the FGVC-Aircraft family (close: filed
# "less specific" offline) and manufacturer (far: left to an LLM judge), and the domain's nouns ("generic")
CLASS_FIELDS = {
    "parents": ["Boeing 737", "Boeing"],
    "parent_levels": ["close", "far"],
    "domain_nouns": ["aircraft", "airplane", "aeroplane", "plane"],
}
RESPONSES = [
    "<think>Winglets and a long fuselage.</think><answer>737-800</answer>",
    "<think>Boeing narrow-body.</think><answer>Boeing 737</answer>",
    "<think>A passenger jet.</think><answer>airplane</answer>",
    "<think>Looks like an Airbus.</think><answer>A320</answer>",
    "It is a 737-800.",  # no answer block: unparseable
]


async def main() -> None:
    answers = [parse_answer(text) for text in RESPONSES]
    verifier = OfflineVerifier()  # rule tier; undecided pairs count as wrong
    requests = [VerificationRequest.for_row(GROUND_TRUTH, a, "fgvc_aircraft", CLASS_FIELDS) for a in answers if a]
    verdicts = iter(await verifier.verify(requests))
    categories = [next(verdicts).category if a else None for a in answers]

    dynamic = group_rewards(categories)  # SpeciaRL: the group's best level gets 1
    binary = [static_reward(c, "reward3") for c in categories]  # plain RLVR baseline
    print(f"{'answer':<14} {'category':<14} {'SpeciaRL':>8} {'reward3':>8}")
    for answer, category, d, b in zip(answers, categories, dynamic, binary, strict=True):
        print(f"{answer or '(unparseable)':<14} {category or '-':<14} {d:>8.1f} {b:>8.1f}")


if __name__ == "__main__":
    asyncio.run(main())
