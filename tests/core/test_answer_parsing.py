import pytest

from speciarl_verl import parse_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>long bill</think><answer>Laysan Albatross</answer>", "Laysan Albatross"),
        ("<answer>\n  Black-footed\n\tAlbatross \n</answer>", "Black-footed Albatross"),
        ("<ANSWER>707-320</Answer>", "707-320"),
        ("no think block <answer>None</answer> trailing text", "None"),
        ("<think><answer>inside think is still the one block</answer></think>", "inside think is still the one block"),
    ],
)
def test_single_block_is_extracted(text, expected):
    assert parse_answer(text) == expected


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
        "<answer>gull</answer> or maybe <answer>tern</answer>",
        "<answer>gull<answer>tern</answer>",
        "<answer>gull</answer></answer>",
    ],
)
def test_missing_empty_or_repeated_blocks_are_unparseable(text):
    assert parse_answer(text) is None


def test_word_cap():
    text = "<answer>Samoyed puppy playing in the snow</answer>"
    assert parse_answer(text, max_words=6) == "Samoyed puppy playing in the snow"
    assert parse_answer(text, max_words=5) is None
    with pytest.raises(ValueError, match="max_words"):
        parse_answer(text, max_words=0)
