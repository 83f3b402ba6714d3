"""The policy-prompt registry, the built-in prompts and prompt files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from speciarl_verl.core.answer_parsing import parse_answer
from speciarl_verl.prompts import (
    DEFAULT_POLICY_PROMPT,
    PolicyPrompt,
    get_policy_prompt,
    load_policy_prompts,
    policy_prompt_names,
    register_policy_prompt,
)
from speciarl_verl.prompts.builtin_prompts import BUILTIN_PROMPT_TEXTS, LAYOUT

BUILTINS = [
    "general",
    "specific",
    "calibrated",
    "elimination",
    "high_precision",
    "max_correctness",
    "max_specificity",
    "open_general",
    "open_specific",
]


def test_all_builtins_are_registered_and_general_is_the_default():
    assert set(BUILTINS) <= set(policy_prompt_names())
    assert sorted(BUILTIN_PROMPT_TEXTS) == sorted(BUILTINS)
    assert DEFAULT_POLICY_PROMPT == "general"


@pytest.mark.parametrize("name", BUILTINS)
def test_each_builtin_states_the_think_then_answer_layout(name):
    prompt = get_policy_prompt(name)
    assert prompt.name == name and "<image>" not in prompt.text
    # the layout is spelled out literally, once, and is the last thing the policy reads
    assert prompt.text.count(LAYOUT) == 1 and prompt.text.endswith(LAYOUT), name
    assert LAYOUT == "<think> ... </think> <answer> ... </answer>"
    assert prompt.user_content == "<image>" + prompt.text
    assert len(prompt.version) == 12 and int(prompt.version, 16) >= 0


@pytest.mark.parametrize("name", ["general", "specific"])
def test_the_methods_prompts_ask_to_classify_without_an_open_question(name):
    text = get_policy_prompt(name).text
    assert text.startswith("Classify the image")
    assert "?" not in text and "step by step" not in text
    assert "single label" in text and "None" in text


@pytest.mark.parametrize("name", BUILTINS)
def test_abstention_is_offered_except_under_max_specificity(name):
    text = get_policy_prompt(name).text
    if name == "max_specificity":
        assert "None is not an allowed answer" in text
    else:
        assert "or None" in text


def test_prompts_have_distinct_texts_and_versions():
    prompts = [get_policy_prompt(n) for n in BUILTINS]
    assert len({p.text for p in prompts}) == len({p.version for p in prompts}) == len(BUILTINS)


def test_an_answer_written_as_asked_parses():
    # a reply in the format every prompt asks for is read by the reward's parser
    assert parse_answer("<think>Long hooked bill.</think><answer>Laysan Albatross</answer>") == "Laysan Albatross"


def test_register_refuses_another_text_under_a_taken_name_and_accepts_the_same():
    same = register_policy_prompt("general", get_policy_prompt("general").text)
    assert same == get_policy_prompt("general")
    with pytest.raises(ValueError, match="policy prompt general has already been registered"):
        register_policy_prompt("general", "Say anything.")
    with pytest.raises(ValueError, match="Unknown policy prompt: nope"):
        get_policy_prompt("nope")


def test_prompt_text_must_not_carry_the_image_placeholder():
    with pytest.raises(ValueError, match="leave out '<image>'"):
        PolicyPrompt("bad", "<image>Classify.")
    with pytest.raises(ValueError, match="empty text"):
        PolicyPrompt("blank", "   ")


def test_version_is_a_function_of_the_text_only():
    assert PolicyPrompt("a", "Name it.").version == PolicyPrompt("b", "Name it.").version
    assert PolicyPrompt("a", "Name it.").version != PolicyPrompt("a", "Name it!").version


def test_load_prompts_from_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("test_yaml_birder: |\n  Which bird is this? Put one name in <answer></answer>.\n")
    (loaded,) = load_policy_prompts(yaml_file)
    assert loaded.name == "test_yaml_birder" and get_policy_prompt("test_yaml_birder") == loaded
    assert loaded.text == "Which bird is this? Put one name in <answer></answer>.\n"
    json_file = tmp_path / "p.json"
    json_file.write_text(json.dumps([{"name": "test_json_a", "text": "A?"}, {"name": "test_json_b", "text": "B?"}]))
    assert [p.name for p in load_policy_prompts(json_file, register=False)] == ["test_json_a", "test_json_b"]
    assert "test_json_a" not in policy_prompt_names()


def test_load_prompts_errors_name_the_file_and_entry(tmp_path):
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps({"specific": "Be vague."}))
    with pytest.raises(ValueError, match=r"clash.json entry 0 \('specific'\): policy prompt specific has already"):
        load_policy_prompts(clash)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json: cannot parse prompt file"):
        load_policy_prompts(broken)
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(ValueError, match=r"must end in \.json, \.yaml or \.yml"):
        load_policy_prompts(tmp_path / "p.txt")
    with pytest.raises(ValueError, match="missing prompt file"):
        load_policy_prompts(tmp_path / "absent.yaml")


def test_prompts_package_imports_neither_verl_nor_torch():
    code = "import sys, speciarl_verl.prompts; print(sorted(m for m in ('verl', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
