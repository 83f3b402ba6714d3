"""``speciarl eval predict``'s transformers backend on the shipped tiny policy, and its refusals of a
folder that is not a verl checkpoint (the whole path from a trained checkpoint is in
tests/cpu_debug/test_main_ppo_on_cpu.py)."""

import json

import pytest

from speciarl_verl.cli import main as speciarl
from speciarl_verl.evaluation.hf_predictor import hf_inputs
from speciarl_verl.evaluation.prediction_requests import chat_messages, model_image
from speciarl_verl.evaluation.vllm_predictor import read_requests, vllm_installed


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from speciarl_verl.data.builder import BuildOptions, SourceSpec, build_parquet

    folder = tmp_path_factory.mktemp("shapes")
    spec = SourceSpec("synthetic_shapes", ".", "test", subset=4)
    return build_parquet(spec, folder / "test.parquet", BuildOptions(seed=0, progress=False)).parquet


@pytest.fixture(scope="module")
def policy():
    from speciarl_verl.cpu_debug.tiny_policy import shipped_policy_dir

    return shipped_policy_dir()


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hf_prompt_is_the_vllm_prompt_with_the_same_pixels(shapes):
    request = next(read_requests([shapes]))
    messages, images = hf_inputs(request, 14)
    sent = chat_messages(request, 14)
    assert [[b["type"] for b in m["content"]] for m in sent] == [
        [{"image": "image_url"}.get(b["type"], b["type"]) for b in m["content"]] for m in messages
    ]
    texts = [[b for b in m["content"] if b["type"] == "text"] for m in messages]
    assert texts == [[b for b in m["content"] if b["type"] == "text"] for m in sent]
    expected = model_image(request.images[0], request.bounds(0), 14)
    assert len(images) == 1 and images[0].size == expected.size
    assert images[0].convert("RGB").tobytes() == expected.convert("RGB").tobytes()


def test_hf_backend_greedy_and_best_of_n_rows_repeat_with_the_seed(shapes, policy, tmp_path, capsys):
    base = ["eval", "predict", "--data", str(shapes), "--model", str(policy), "--no-progress", "--max-new-tokens", "40"]
    if not vllm_installed():  # the default backend says which engine it took
        assert speciarl([*base, "--out", str(tmp_path / "auto.jsonl")]) == 0
        assert "vLLM is not installed: predicting with transformers generate (--backend hf)" in capsys.readouterr().out
    sampled = ["--backend", "hf", "--mode", "best-of-n", "--n", "3", "--temperature", "1.0", "--batch-size", "2"]
    for name in ("a", "b"):
        assert speciarl([*base, "--backend", "hf", "--out", str(tmp_path / f"greedy_{name}.jsonl")]) == 0
        assert speciarl([*base, *sampled, "--out", str(tmp_path / f"sampled_{name}.jsonl")]) == 0
    greedy, sampled_rows = rows(tmp_path / "greedy_a.jsonl"), rows(tmp_path / "sampled_a.jsonl")
    assert greedy == rows(tmp_path / "greedy_b.jsonl") and len(greedy) == 4
    assert sampled_rows == rows(tmp_path / "sampled_b.jsonl") and len(sampled_rows) == 12
    assert [r["prediction_index"] for r in sampled_rows[:3]] == [0, 1, 2]
    # the vLLM backend's row layout, answers parsed in the default mode (the tiny policy answers in tags)
    assert set(greedy[0]) >= {"sample_id", "data_source", "ground_truth", "response", "answer", "parse_mode", "parents"}
    assert sum(r["answer"] is not None for r in greedy) >= 3
    settings = json.loads((tmp_path / "greedy_a.jsonl.settings.json").read_text())
    assert settings["backend"] == "hf"


def test_a_folder_that_is_no_verl_checkpoint_is_one_line_naming_it(shapes, tmp_path, capsys):
    command = ["eval", "predict", "--data", str(shapes), "--out", str(tmp_path / "p.jsonl"), "--backend", "hf"]
    empty = tmp_path / "global_step_9"
    (empty / "actor").mkdir(parents=True)
    assert speciarl([*command, "--checkpoint", str(empty)]) == 2
    err = capsys.readouterr().err
    assert f"--checkpoint {empty}: not a verl FSDP checkpoint" in err and "fsdp_config.json" in err
    assert len(err.strip().splitlines()) == 1
    assert speciarl([*command, "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (empty / "actor" / "fsdp_config.json").write_text('{"world_size": 2}')
    (empty / "actor" / "huggingface").mkdir()
    (empty / "actor" / "huggingface" / "config.json").write_text("{}")
    (empty / "actor" / "model_world_size_2_rank_0.pt").write_bytes(b"")
    assert speciarl([*command, "--checkpoint", str(empty)]) == 2
    assert "shards of rank(s) 1 are missing" in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()


def test_predict_refuses_a_folder_as_out_and_needs_a_model(shapes, policy, tmp_path, capsys):
    base = ["eval", "predict", "--data", str(shapes), "--backend", "hf"]
    assert speciarl([*base, "--model", str(policy), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert speciarl([*base, "--out", str(tmp_path / "p.jsonl")]) == 2
    assert "--checkpoint DIR" in capsys.readouterr().err
    assert speciarl([*base, "--model", str(policy), "--checkpoint", str(tmp_path), "--out", "p.jsonl"]) == 2
    assert "one or the other" in capsys.readouterr().err
