"""The CPU-testable part of ``speciarl eval predict``: rows -> requests -> messages, resuming, refusals."""

import base64
import importlib.util
import io
import json

import pytest
from PIL import Image

from speciarl_verl.cli import main as speciarl
from speciarl_verl.evaluation.prediction_requests import (
    DecodingSettings,
    chat_messages,
    limit_mm_per_prompt,
    prediction_rows,
    request_from_row,
)
from speciarl_verl.evaluation.records import load_predictions
from speciarl_verl.evaluation.vllm_predictor import (
    PredictConfig,
    completed_samples,
    lora_rank,
    pending_requests,
    settings_path,
)


def png(colour: tuple[int, int, int], size: tuple[int, int] = (6, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def sent_images(messages: list[dict]) -> list[Image.Image]:
    """The images of chat messages as vLLM decodes them from their data URLs."""
    images = []
    for message in messages:
        for part in message["content"]:
            if part["type"] == "image_url":
                payload = part["image_url"]["url"].split(",", 1)[1]
                images.append(Image.open(io.BytesIO(base64.b64decode(payload))))
    return images


def verl_row(i: int, source: str = "fgvc_aircraft") -> dict:
    return {
        "data_source": source,
        "prompt": [{"role": "user", "content": "<image>Classify the image. Answer inside <answer> </answer>."}],
        "images": [{"bytes": png((i * 40 % 256, 10, 200))}],
        "ability": "fine-grained classification",
        "reward_model": {"style": "model", "ground_truth": f"class {i}"},
        "extra_info": {
            "index": i,
            "image_id": f"img{i:03d}",
            "parents": ["family"],
            "parent_levels": ["close"],
            "domain_nouns": ["aircraft"],
            "synonyms": [],
        },
    }


@pytest.fixture
def parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist([verl_row(i) for i in range(5)]), path)
    return path


def test_row_becomes_chat_messages_with_the_image_inlined():
    row = verl_row(3)
    request = request_from_row(row, "t.parquet:row 3")
    assert request.sample_id == "fgvc_aircraft/img003"
    assert request.parents == ("family",)
    messages = chat_messages(request)
    assert [m["role"] for m in messages] == ["user"]
    image_part, text_part = messages[0]["content"]
    header, _ = image_part["image_url"]["url"].split(",", 1)
    assert header == "data:image/png;base64"
    (image,) = sent_images(messages)
    # 6 x 4 is below qwen_vl_utils' default min_pixels (4 * 28 * 28): scaled up to multiples of 28
    assert image.size == (84, 56) and image.getpixel((40, 30)) == (120, 10, 200)
    assert text_part == {"type": "text", "text": "Classify the image. Answer inside <answer> </answer>."}


def bounded_row(i: int, size: tuple[int, int], bounds: tuple[int | None, int | None] | None) -> dict:
    row = verl_row(i)
    row["images"] = [{"bytes": png((200, 30, 30), size)}]
    if bounds is not None:
        row["images"][0].update(min_pixels=bounds[0], max_pixels=bounds[1])
    return row


@pytest.mark.parametrize(
    ("size", "bounds", "sent"),
    [
        ((600, 400), (3136, 12544), (112, 84)),  # shrunk under the row's max_pixels
        ((600, 400), None, (588, 392)),  # qwen_vl_utils' defaults: only rounded to multiples of 28
        ((600, 400), (None, None), (588, 392)),  # null bounds (a parquet column shared with bounded rows)
        ((6, 4), (50176, 100352), (280, 196)),  # grown over the row's min_pixels
    ],
)
def test_each_image_reaches_vllm_at_the_size_its_row_bounds_give(size, bounds, sent):
    (image,) = sent_images(chat_messages(request_from_row(bounded_row(0, size, bounds), "w")))
    assert image.size == sent
    if bounds is not None and bounds[1] is not None:
        assert bounds[0] <= sent[0] * sent[1] <= bounds[1]


def test_rows_with_different_bounds_in_one_file_keep_their_own(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "mixed.parquet"
    rows = [bounded_row(0, (600, 400), (3136, 12544)), bounded_row(1, (600, 400), None)]
    pq.write_table(pa.Table.from_pylist(rows), path)  # row 1 reads back with null bounds
    config = PredictConfig(data=(path,), model="m", out=tmp_path / "p.jsonl")
    sizes = [sent_images(chat_messages(r))[0].size for r in pending_requests(config)]
    assert sizes == [(112, 84), (588, 392)]


def test_prediction_resizes_images_exactly_as_verls_agent_loop():
    """The bounded image vLLM gets is, pixel for pixel, the one verl's rollout gets from the same row."""
    from types import SimpleNamespace

    rl_dataset = pytest.importorskip("verl.utils.dataset.rl_dataset")
    row = bounded_row(0, (600, 400), (3136, 12544))
    ours = sent_images(chat_messages(request_from_row(row, "w")))
    fake_dataset = SimpleNamespace(image_key="images", video_key="videos", audio_key="audios", processor=object())
    messages = rl_dataset.RLHFDataset._build_messages(fake_dataset, row, "prompt")
    theirs, _, _ = rl_dataset.RLHFDataset._process_multi_modal_info(messages, image_patch_size=14, config=None)
    assert [image.size for image in ours] == [image.size for image in theirs] == [(112, 84)]
    assert ours[0].convert("RGB").tobytes() == theirs[0].tobytes()


def test_bad_pixel_bounds_name_the_row():
    with pytest.raises(ValueError, match=r"^w: image min_pixels \(9000\) is larger than its max_pixels \(100\)"):
        request_from_row(bounded_row(0, (6, 4), (9000, 100)), "w")
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        request_from_row(bounded_row(0, (6, 4), (None, "big")), "w")
    # a max_pixels under qwen_vl_utils' default min_pixels cannot be met: one line, not an AssertionError
    with pytest.raises(ValueError, match=r"fgvc_aircraft/img000: image 0: pixel bounds \(None, 100\)"):
        chat_messages(request_from_row(bounded_row(0, (6, 4), (None, 100)), "w"))


def test_limit_mm_per_prompt_is_the_largest_image_count_of_all_rows():
    two = verl_row(1)
    two["prompt"] = [{"role": "user", "content": "<image>This one, <image>then that one?"}]
    two["images"] = two["images"] * 2
    requests = [request_from_row(verl_row(0), "w"), request_from_row(two, "w"), request_from_row(verl_row(2), "w")]
    assert limit_mm_per_prompt(len(r.images) for r in requests) == {"image": 2}  # not the first row's 1
    assert limit_mm_per_prompt([]) == {"image": 1}
    assert [len(sent_images(chat_messages(r))) for r in requests] == [1, 2, 1]


def test_instruction_override_and_block_content():
    row = verl_row(1)
    row["prompt"] = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Look: "}, {"type": "image"}, {"type": "text", "text": "?"}],
        },
    ]
    messages = chat_messages(request_from_row(row, "w"))
    assert messages[0] == {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
    assert [part["type"] for part in messages[1]["content"]] == ["text", "image_url", "text"]
    override = chat_messages(request_from_row(row, "w", instruction="Name the aircraft variant."))
    assert len(override) == 1 and override[0]["content"][1]["text"] == "Name the aircraft variant."


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(images=[]), "marks 1 image"),
        (lambda r: r.update(reward_model={"ground_truth": ""}), "ground_truth is missing"),
        (lambda r: r.pop("data_source"), "missing column 'data_source'"),
        (lambda r: r.update(extra_info={}), "no sample id"),
        (lambda r: r["extra_info"].update(parents="family"), "parents must be a list"),
    ],
)
def test_bad_dataset_rows_name_the_row(change, message):
    row = verl_row(2)
    change(row)
    with pytest.raises(ValueError, match=message) as excinfo:
        request_from_row(row, "data.parquet:row 2")
    assert str(excinfo.value).startswith("data.parquet:row 2: ")


def test_not_an_image_is_reported():
    row = verl_row(0)
    row["images"] = [{"bytes": b"definitely not a png"}]
    with pytest.raises(ValueError, match="not an image"):
        chat_messages(request_from_row(row, "w"))


def test_prediction_rows_parse_answers_and_carry_the_hierarchy(tmp_path):
    request = request_from_row(verl_row(4), "w")
    texts = ["<think>t</think><answer>737-800</answer>", "no answer tag", "<answer>a b c d e f</answer>"]
    rows = prediction_rows(request, texts, max_answer_words=5)
    assert [r["prediction_index"] for r in rows] == [0, 1, 2]
    assert [r["answer"] for r in rows] == ["737-800", None, None]
    assert rows[0]["parents"] == ["family"] and rows[0]["response"] == texts[0]
    assert rows[0]["parent_levels"] == ["close"] and rows[0]["domain_nouns"] == ["aircraft"]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [r.answer for r in load_predictions(path)] == ["737-800", None, None]  # the judge reads them back


def test_resume_skips_finished_images_and_drops_partial_ones(parquet, tmp_path):
    out = tmp_path / "predictions.jsonl"
    config = PredictConfig(data=(parquet,), model="m", out=out, decoding=DecodingSettings.best_of_n(n=2))
    assert [r.sample_id for r in pending_requests(config)] == [f"fgvc_aircraft/img{i:03d}" for i in range(5)]

    finished = [request_from_row(verl_row(i), "w") for i in (0, 2)]
    rows = [row for r in finished for row in prediction_rows(r, ["<answer>x</answer>", "<answer>y</answer>"])]
    rows += prediction_rows(request_from_row(verl_row(3), "w"), ["<answer>x</answer>"])  # partial: 1 of 2
    out.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"sample_id": "torn')
    settings_path(out).write_text(json.dumps(config.identity()))
    pending = [r.sample_id for r in pending_requests(config)]
    assert pending == ["fgvc_aircraft/img001", "fgvc_aircraft/img003", "fgvc_aircraft/img004"]
    assert completed_samples(out, 2) == {"fgvc_aircraft/img000", "fgvc_aircraft/img002"}
    assert len(load_predictions(out)) == 4  # partial sample and torn line are gone

    limited = PredictConfig(data=(parquet,), model="m", out=out, decoding=config.decoding, limit=2)
    assert [r.sample_id for r in pending_requests(limited)] == ["fgvc_aircraft/img001"]


def test_resume_refuses_other_settings_or_unknown_files(parquet, tmp_path):
    out = tmp_path / "predictions.jsonl"
    out.write_text(json.dumps(prediction_rows(request_from_row(verl_row(0), "w"), ["<answer>x</answer>"])[0]) + "\n")
    config = PredictConfig(data=(parquet,), model="m", out=out)
    with pytest.raises(ValueError, match=r"exists without predictions\.jsonl\.settings\.json"):
        list(pending_requests(config))
    settings_path(out).write_text(json.dumps(config.identity()))
    other = PredictConfig(data=(parquet,), model="m", out=out, adapter=tmp_path / "lora")
    with pytest.raises(ValueError, match="was written with other settings"):
        list(pending_requests(other))


def test_repeated_sample_ids_in_the_dataset_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_pylist([verl_row(1), verl_row(1)]), path)
    config = PredictConfig(data=(path,), model="m", out=tmp_path / "p.jsonl")
    with pytest.raises(ValueError, match=rf"{path}:row 1: sample id 'fgvc_aircraft/img001' repeats"):
        list(pending_requests(config))


def test_decoding_settings():
    assert DecodingSettings.greedy().sampling_kwargs()["temperature"] == 0.0
    bon = DecodingSettings.best_of_n()
    assert (bon.n, bon.temperature, bon.top_p) == (64, 0.6, 0.95)
    with pytest.raises(ValueError, match="same greedy answer"):
        DecodingSettings(n=4, temperature=0.0)
    with pytest.raises(ValueError, match="top_p"):
        DecodingSettings(top_p=0.0)


def test_lora_rank_is_rounded_up_to_a_rank_vllm_supports(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 24, "lora_alpha": 48}))
    assert lora_rank(tmp_path) == 32
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 64}))
    assert lora_rank(tmp_path) == 64
    with pytest.raises(ValueError, match=r"no adapter_config\.json"):
        lora_rank(tmp_path / "missing")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_predict_without_vllm_fails_with_a_clear_message(parquet, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    command = ["eval", "predict", "--data", str(parquet), "--model", "some/model", "--out", str(out)]
    code = speciarl([*command, "--backend", "vllm"])
    assert code == 2  # a command this install cannot run: bad input, as README promises
    err = capsys.readouterr().err
    assert "needs the [gpu] extra: vLLM" in err and "--backend hf" in err
    assert err.count("speciarl eval predict") == 1, err  # the command's name once, as the line's prefix
    assert not out.exists()


def test_run_predictions_hands_vllm_the_resized_images_and_the_largest_image_count(tmp_path, monkeypatch):
    """``run_predictions`` end to end with a stand-in for vLLM (the real one needs a GPU)."""
    import importlib.machinery
    import sys
    import types

    import pyarrow as pa
    import pyarrow.parquet as pq

    from speciarl_verl.evaluation import vllm_predictor

    seen: dict = {"chats": []}

    class FakeLLM:
        def __init__(self, **engine):
            seen["engine"] = engine

        def chat(self, conversations, sampling_params, lora_request, use_tqdm):
            seen["chats"].append([[image.size for image in sent_images(c)] for c in conversations])
            completion = types.SimpleNamespace(text="<answer>x</answer>")
            return [types.SimpleNamespace(outputs=[completion] * sampling_params["n"]) for _ in conversations]

    fake = types.ModuleType("vllm")
    fake.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    fake.LLM, fake.SamplingParams = FakeLLM, lambda **kwargs: kwargs
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(vllm_predictor, "image_patch_size", lambda model: 14)

    two = bounded_row(2, (600, 400), (3136, 12544))
    two["prompt"] = [{"role": "user", "content": "<image>and<image>?"}]
    two["images"] = two["images"] * 2
    rows = [bounded_row(0, (600, 400), (3136, 12544)), bounded_row(1, (600, 400), (50176, 100352)), two]
    path = tmp_path / "mixed.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    config = PredictConfig(data=(path,), model="m", out=tmp_path / "p.jsonl", batch_size=2)
    assert vllm_predictor.run_predictions(config, progress=False) == 3
    assert seen["engine"]["limit_mm_per_prompt"] == {"image": 2}
    assert seen["chats"] == [[[(112, 84)], [(364, 252)]], [[(112, 84), (112, 84)]]]
    assert len(load_predictions(config.out)) == 3
