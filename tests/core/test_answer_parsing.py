import re

import pytest

from speciarl_verl import parse_answer
from speciarl_verl.core.answer_parsing import PARSE_MODES

BOTH = pytest.mark.parametrize("mode", PARSE_MODES)


@BOTH
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>long bill</think><answer>Laysan Albatross</answer>", "Laysan Albatross"),
        ("<answer>\n  Black-footed\n\tAlbatross \n</answer>", "Black-footed Albatross"),
        ("no think block <answer>None</answer> trailing text", "None"),
        ("<think><answer>inside think is still the one block</answer></think>", "inside think is still the one block"),
    ],
)
def test_one_well_formed_block_reads_the_same_in_both_modes(mode, text, expected):
    assert parse_answer(text, mode=mode) == expected


@BOTH
@pytest.mark.parametrize(
    "text",
    [
        "",
        "The bird is a Laysan Albatross.",
        "<answer>Laysan Albatross",
        "Laysan Albatross</answer>",
        "</answer>gull<answer>",
        "<answer></answer>",
        "<answer>   \n </answer>",
    ],
)
def test_missing_or_empty_blocks_are_unparseable_in_both_modes(mode, text):
    assert parse_answer(text, mode=mode) is None


@pytest.mark.parametrize(
    ("text", "first", "strict"),
    [
        ("<answer>gull</answer> or maybe <answer>tern</answer>", "gull", None),
        ("<answer>gull</answer></answer>", "gull", None),
        # the method's non-greedy match runs from the first opening tag to the first closing one
        ("<answer>gull<answer>tern</answer>", "gull<answer>tern", None),
        # tags: case-sensitive under the method's reading, any case under ours
        ("<ANSWER>707-320</Answer>", None, "707-320"),
        ("<Answer>707</Answer><answer>707-320</answer>", "707-320", None),
    ],
)
def test_the_modes_differ_on_repeated_blocks_and_tag_case(text, first, strict):
    assert parse_answer(text) == parse_answer(text, mode="first") == first
    assert parse_answer(text, mode="strict") == strict


def test_first_mode_agrees_with_a_plain_first_match_on_generated_responses():
    # an independent reading of the method's rule: the first lower-case block, stripped, empty = unparseable
    pieces = ["<answer>", "</answer>", "<ANSWER>", "gull", " tern ", "\n", "", "<think>x</think>"]
    reference = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
    for a in pieces:
        for b in pieces:
            for c in pieces:
                for d in pieces:
                    text = a + b + c + d
                    match = reference.search(text)
                    expected = " ".join(match.group(1).split()) if match else ""
                    assert parse_answer(text) == (expected or None), text


@BOTH
def test_word_cap(mode):
    text = "<answer>Samoyed puppy playing in the snow</answer>"
    assert parse_answer(text, max_words=6, mode=mode) == "Samoyed puppy playing in the snow"
    assert parse_answer(text, max_words=5, mode=mode) is None
    with pytest.raises(ValueError, match="max_words"):
        parse_answer(text, max_words=0, mode=mode)


def test_an_unknown_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown parse mode 'lenient'; choose one of first, strict"):
        parse_answer("<answer>gull</answer>", mode="lenient")
