"""The per-rollout stage, loaded by verl's own loader and fed verl DataProtos (no Ray here)."""

import logging

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from verl import DataProto
from verl.trainer.ppo.reward import load_reward_manager, resolve_reward_manager_cls

from speciarl_verl.judge.settings import JUDGE_KINDS
from speciarl_verl.offline_fixtures.verl_rollouts import Rollout, trajectory_dataproto
from speciarl_verl.verl_ext.config_checks import judge_kind_given
from speciarl_verl.verl_ext.reward_manager import SpeciaRewardManager, response_decoder

ROW = {
    "data_source": "fgvc_aircraft",
    "prompt": [{"role": "user", "content": "<image>Classify the image."}],
    "reward_model": {"style": "model", "ground_truth": "737-800"},
    "extra_info": {
        "index": 3,
        "parents": ["Boeing 737", "Boeing"],
        "parent_levels": ["close", "far"],
        "domain_nouns": ["aircraft", "airplane", "aeroplane", "plane"],
        "synonyms": ["Boeing 737-800"],
    },
    "index": 3,
}


@pytest.fixture
def make_manager(compose, tokenizer_dir, tokenizer):
    def make(*overrides):
        config = compose(overrides=[f"actor_rollout_ref.model.path={tokenizer_dir}", *overrides])
        return load_reward_manager(config, tokenizer)

    return make


def score(manager, tokenizer, text, row=ROW, session=0, steps=1):
    prompt = tokenizer.encode("<|im_start|>user\nClassify.<|im_end|>\n<|im_start|>assistant\n")
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rollout = Rollout("u1", session, row, prompt, [*tokenizer.encode(text), eos], global_steps=steps)
    # RewardManagerBase binds an event loop at construction; asyncio.run would use another one.
    return manager.loop.run_until_complete(manager.run_single(trajectory_dataproto(rollout)))


def test_registered_name_resolves_through_verl(make_manager):
    manager = make_manager()
    assert type(manager) is SpeciaRewardManager


def test_importlib_source_with_pkg_path_resolves_too(compose, tokenizer_dir):
    config = compose(
        overrides=[
            f"actor_rollout_ref.model.path={tokenizer_dir}",
            "reward.reward_manager.source=importlib",
            "reward.reward_manager.module.path=pkg://speciarl_verl.verl_ext.reward_manager",
            "reward.reward_manager.name=SpeciaRewardManager",
        ]
    )
    assert resolve_reward_manager_cls(config) is SpeciaRewardManager


@pytest.mark.parametrize(
    ("answer", "category", "source", "provisional"),
    [
        ("737-800", "specific", "offline", 1.0),
        ("Boeing 737-800", "specific", "offline", 1.0),
        ("Boeing 737", "less specific", "offline", 1.0),
        ("airplane", "generic", "offline", 1.0),
        ("None", "abstain", "offline", 1.0),
        ("A320", "wrong", "deferred", 0.0),
        ("Boeing", "wrong", "deferred", 0.0),  # the manufacturer is a far parent: left to the LLM judge
    ],
)
def test_run_single_parses_judges_and_records(make_manager, tokenizer, answer, category, source, provisional):
    result = score(make_manager(), tokenizer, f"<think>two engines, winglets</think><answer>{answer}</answer>")
    info = result["reward_extra_info"]
    assert result["reward_score"] == provisional
    assert (info["answer"], info["verdict"], info["category"], info["verdict_source"]) == (
        answer,
        category,
        category,
        source,
    )
    assert info["parse_failed"] == 0.0
    assert info[f"cat_{category.replace(' ', '_')}"] == 1.0
    assert sum(info[k] for k in info if k.startswith("cat_")) == 1.0
    assert info["correct"] == float(category not in ("wrong", "abstain"))


def test_unparseable_answer_gets_format_penalty_and_never_reaches_the_judge(make_manager, tokenizer):
    result = score(make_manager(), tokenizer, "It is a 737-800.")
    info = result["reward_extra_info"]
    assert result["reward_score"] == -1.0
    assert info["answer"] is None and info["verdict"] is None and info["verdict_source"] is None
    assert info["parse_failed"] == 1.0 and info["level"] == -1


def test_every_rollout_carries_the_same_keys(make_manager, tokenizer):
    manager = make_manager()
    keys = {tuple(score(manager, tokenizer, t)["reward_extra_info"]) for t in ("<answer>A320</answer>", "nothing")}
    assert len(keys) == 1


def test_every_record_names_the_image_it_answers_and_the_group_stage_keeps_it(make_manager, tokenizer):
    from speciarl_verl.core import score_group

    manager = make_manager()
    row = {**ROW, "extra_info": {**ROW["extra_info"], "image_id": "Boeing_737-800_0042"}}
    infos = [score(manager, tokenizer, t, row=row)["reward_extra_info"] for t in ("<answer>A320</answer>", "nothing")]
    assert [info["image_id"] for info in infos] == ["Boeing_737-800_0042"] * 2  # judged and unparseable alike
    rewritten = score_group(infos, manager.settings, validation=False, uid="u1").records
    assert [info["image_id"] for info in rewritten] == ["Boeing_737-800_0042"] * 2
    assert score(manager, tokenizer, "<answer>A320</answer>")["reward_extra_info"]["image_id"] is None  # none given


def test_word_cap_from_config(make_manager, tokenizer):
    manager = make_manager("reward.reward_kwargs.max_answer_words=3")
    assert score(manager, tokenizer, "<answer>Boeing 737</answer>")["reward_score"] == 1.0
    assert score(manager, tokenizer, "<answer>a Boeing 737 jet airliner</answer>")["reward_score"] == -1.0


def test_static_scheme_scores_from_the_table(make_manager, tokenizer):
    manager = make_manager("reward.reward_kwargs.scheme=static", "reward.reward_kwargs.static_table=scala1")
    assert score(manager, tokenizer, "<answer>Boeing 737</answer>")["reward_score"] == 0.75
    assert score(manager, tokenizer, "<answer>airplane</answer>")["reward_score"] == 0.5


def test_overlong_penalty_is_added_and_recorded(make_manager, tokenizer):
    manager = make_manager(
        "+reward.reward_kwargs.overlong_buffer_cfg.enable=true",
        "+reward.reward_kwargs.overlong_buffer_cfg.len=4",
        "+reward.reward_kwargs.max_resp_len=8",
    )
    text = "<answer>737-800</answer>"
    n_tokens = len(tokenizer.encode(text)) + 1
    expected = min(-(n_tokens - 4) / 4, 0.0)
    assert expected < 0
    result = score(manager, tokenizer, text)
    assert result["reward_extra_info"]["overlong_penalty"] == pytest.approx(expected)
    assert result["reward_score"] == pytest.approx(1.0 + expected)
    assert result["reward_extra_info"]["acc"] == 1.0


def test_verdict_noise_is_seeded_per_step_and_rollout_and_keeps_the_raw_verdict(make_manager, tokenizer):
    noisy = ("reward.reward_kwargs.noise_rate=1.0", "reward.reward_kwargs.noise_seed=5")
    a, b = make_manager(*noisy), make_manager(*noisy)
    text = "<answer>airplane</answer>"
    runs_a = [score(a, tokenizer, text, session=s, steps=t)["reward_extra_info"] for s in range(4) for t in (1, 2)]
    runs_b = [score(b, tokenizer, text, session=s, steps=t)["reward_extra_info"] for s in range(4) for t in (1, 2)]
    assert runs_a == runs_b
    assert all(info["verdict"] == "generic" and info["noised"] == 1.0 for info in runs_a)
    assert {info["category"] for info in runs_a} == {"abstain", "less specific"}


def test_missing_ground_truth_is_an_error_naming_the_row(make_manager, tokenizer):
    row = {**ROW, "reward_model": {"style": "model"}}
    with pytest.raises(ValueError, match=r"no ground truth .*data_source='fgvc_aircraft', index=3"):
        score(make_manager(), tokenizer, "<answer>x</answer>", row=row)


def test_dynamic_reward_without_group_stage_refuses_to_start(make_manager):
    with pytest.raises(ValueError, match="needs its group stage"):
        make_manager("trainer.v1.sampler.custom_sampler.path=null")
    with pytest.raises(ValueError, match="needs its group stage"):
        make_manager("trainer.use_v1=false")
    with pytest.raises(ValueError, match="needs its group stage"):
        make_manager(
            "trainer.v1.sampler.custom_sampler.path=pkg://verl.trainer.ppo.v1.replay_buffer",
            "trainer.v1.sampler.custom_sampler.name=ReplayBuffer",
        )


def test_static_reward_without_group_stage_warns(make_manager, caplog):
    with caplog.at_level(logging.WARNING, logger="speciarl_verl.verl_ext.config_checks"):
        manager = make_manager("reward.reward_kwargs.scheme=static", "trainer.v1.sampler.custom_sampler.path=null")
    assert isinstance(manager, SpeciaRewardManager)
    assert "without its group stage" in caplog.text


@pytest.mark.parametrize("unset", ["~reward.reward_kwargs.judge.kind", "reward.reward_kwargs.judge.kind=null"])
def test_dynamic_reward_without_a_judge_kind_refuses_to_start_naming_the_choices(make_manager, unset):
    with pytest.raises(ValueError, match=r"judge\.kind is not set") as caught:
        make_manager(unset)
    message = str(caught.value)
    assert "\n" not in message and "reward.reward_kwargs.judge.kind=offline|llm|auto" in message
    for kind in JUDGE_KINDS:  # each choice with what it costs
        assert f"; {kind}: " in message or f". {kind}: " in message, kind
    assert "scores judge.deferred_outcome (wrong)" in message and "one judge call per unique pair" in message


def test_a_judge_kind_given_even_as_the_default_starts(make_manager):
    assert isinstance(make_manager("reward.reward_kwargs.judge.kind=offline"), SpeciaRewardManager)


def test_static_reward_without_a_judge_kind_warns(make_manager, caplog):
    with caplog.at_level(logging.WARNING, logger="speciarl_verl.verl_ext.config_checks"):
        manager = make_manager("reward.reward_kwargs.scheme=static", "~reward.reward_kwargs.judge.kind")
    assert manager.settings.judge.kind == "offline"
    assert "judge.kind is not set" in caplog.text


@pytest.mark.parametrize(
    ("tree", "given"),
    [
        (None, False),
        ({"reward": {"reward_kwargs": {}}}, False),
        ({"reward": {"reward_kwargs": {"judge": {"llm": {"model": "m"}}}}}, False),
        ({"reward": {"reward_kwargs": {"judge": {"kind": None}}}}, False),
        ({"reward": {"reward_kwargs": {"judge": {"kind": "auto"}}}}, True),
    ],
)
def test_judge_kind_given_tells_a_set_key_from_a_default(tree, given):
    assert judge_kind_given(tree) is given


def test_unknown_reward_kwarg_fails_at_load(make_manager):
    with pytest.raises(ValueError, match="reward_mode"):
        make_manager("+reward.reward_kwargs.reward_mode=all")


def _special_laden_ids(tokenizer):
    special = tokenizer.convert_tokens_to_ids
    body = tokenizer.encode("<think>grey wings, Crème brûlée?</think><answer> Black-footed Albatross </answer>")
    return [
        special("<|im_start|>"),
        *tokenizer.encode("assistant\n"),
        *body[:5],
        special("<|vision_start|>"),
        special("<|image_pad|>"),
        special("<|vision_end|>"),
        *body[5:],
        special("<|im_end|>"),
        special("<|endoftext|>"),
    ]


def _counting_decode(tokenizer):
    calls = []
    own = tokenizer.decode

    def decode(*args, **kwargs):
        calls.append(args)
        return own(*args, **kwargs)

    tokenizer.decode = decode
    return calls


def test_fast_decode_gives_the_tokenizers_own_text_including_special_tokens(tokenizer, tokenizer_dir):
    ids = _special_laden_ids(tokenizer)
    stock = type(tokenizer).from_pretrained(tokenizer_dir)
    calls = _counting_decode(stock)
    text = response_decoder(stock)(ids)
    assert calls == []  # the stock fast tokenizer is read through its backend
    assert text == tokenizer.decode(ids, skip_special_tokens=True)
    assert "<|" not in text and "Crème brûlée?" in text and "<answer> Black-footed Albatross </answer>" in text


def test_a_tokenizer_with_its_own_decoding_keeps_it(tokenizer, tokenizer_dir):
    class Annotating(type(tokenizer)):
        def _decode(self, token_ids, skip_special_tokens=False, **kwargs):
            return super()._decode(token_ids, skip_special_tokens=skip_special_tokens, **kwargs) + " [checked]"

    ids = _special_laden_ids(tokenizer)
    custom = Annotating.from_pretrained(tokenizer_dir)
    assert response_decoder(custom)(ids) == tokenizer.decode(ids, skip_special_tokens=True) + " [checked]"
    cleaning = type(tokenizer).from_pretrained(tokenizer_dir, clean_up_tokenization_spaces=True)
    calls = _counting_decode(cleaning)
    assert response_decoder(cleaning)(ids) == type(cleaning).decode(cleaning, ids, skip_special_tokens=True)
    assert len(calls) == 1


def _padded(rows, value=0):
    return torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows], batch_first=True, padding_value=value)


OVERLONG = (
    "+reward.reward_kwargs.overlong_buffer_cfg.enable=true",
    "+reward.reward_kwargs.overlong_buffer_cfg.len=4",
    "+reward.reward_kwargs.max_resp_len=6",
)


def test_a_multi_output_trajectory_is_scored_on_its_final_output(make_manager, tokenizer):
    # Built as verl's AgentLoopWorker._compute_score builds it (agent_loop.py:976-1019): each output's
    # cat(prompt, response) right-padded with 0 to a common width, unpadded lengths in response_len.
    # The final output is a later turn, so its prompt is the longer one and the last
    # responses.shape[-1] columns of its attention mask are partly prompt.
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompt = tokenizer.encode("<|im_start|>user\nClassify.<|im_end|>\n<|im_start|>assistant\n")
    first = [*tokenizer.encode("<think>one engine?</think><answer>A320</answer> and a much longer first turn"), eos]
    later_prompt = [*prompt, *first, *tokenizer.encode("<|im_start|>user\nLook again.<|im_end|>")]
    final = [*tokenizer.encode("<answer>airplane</answer>"), eos]
    outputs = [(prompt, first), (later_prompt, final)]
    batch = TensorDict(
        {
            "prompts": _padded([p for p, _ in outputs]),
            "responses": _padded([r for _, r in outputs]),
            "attention_mask": _padded([[1] * (len(p) + len(r)) for p, r in outputs]),
            "input_ids": _padded([p + r for p, r in outputs]),
        },
        batch_size=2,
    )
    columns = {key: np.array([value, value], dtype=object) for key, value in ROW.items()}
    columns["response_len"] = np.array([len(r) for _, r in outputs])
    manager = make_manager(*OVERLONG)
    result = manager.loop.run_until_complete(manager.run_single(DataProto(batch=batch, non_tensor_batch=columns)))
    info = result["reward_extra_info"]
    assert (info["answer"], info["verdict"]) == ("airplane", "generic")
    # the length penalty counts the final output's own tokens, not the padded width
    assert info["overlong_penalty"] == pytest.approx(min(-(len(final) - 2) / 4, 0.0))


def test_without_response_len_the_response_half_of_the_mask_counts(make_manager, tokenizer):
    # verl's trainer batch layout: prompts left-padded, responses right-padded, no response_len column.
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    prompts = [tokenizer.encode("Classify."), tokenizer.encode("Classify this image, please.")]
    responses = [
        [*tokenizer.encode("<answer>Boeing 737-800</answer>"), eos],
        [*tokenizer.encode("<answer>plane</answer>"), eos],
    ]
    prompt_width, width = max(map(len, prompts)), max(map(len, responses))
    mask = [
        [0] * (prompt_width - len(p)) + [1] * (len(p) + len(r)) + [0] * (width - len(r))
        for p, r in zip(prompts, responses, strict=True)
    ]
    batch = TensorDict(
        {
            "prompts": torch.tensor([[0] * (prompt_width - len(p)) + p for p in prompts]),
            "responses": _padded(responses),
            "attention_mask": torch.tensor(mask),
        },
        batch_size=2,
    )
    columns = {key: np.array([value, value], dtype=object) for key, value in ROW.items()}
    manager = make_manager(*OVERLONG)
    result = manager.loop.run_until_complete(manager.run_single(DataProto(batch=batch, non_tensor_batch=columns)))
    info = result["reward_extra_info"]
    assert (info["answer"], info["verdict"]) == ("plane", "generic")
    assert info["overlong_penalty"] == pytest.approx(min(-(len(responses[1]) - 2) / 4, 0.0))
