import json

import pytest

from speciarl_verl.evaluation.metrics import CategorySets, harmonic_mean
from speciarl_verl.evaluation.report import ReportSettings, RunVerdicts, build_report
from speciarl_verl.evaluation.report_markdown import render_markdown

NO_BOOTSTRAP = ReportSettings(replicates=0)


def test_per_source_block_from_a_hand_computed_histogram(verdict_factory):
    # cub200: 5 greedy answers -> specific, specific, generic, wrong, unparseable.
    cub = verdict_factory("cub200", [["specific"], ["specific"], ["generic"], ["wrong"], [None]])
    report = build_report([RunVerdicts("base", cub)], NO_BOOTSTRAP)
    block = report["runs"]["base"]["per_source"]["cub200"]
    assert (block["n"], block["images"], block["answers_per_image"]) == (5, 5, [1, 1])
    assert block["counts"] == {
        "more specific": 0,
        "specific": 2,
        "less specific": 0,
        "generic": 1,
        "abstain": 0,
        "wrong": 1,
        "undecided": 0,
        "unparseable": 1,
    }
    assert block["correctness"] == pytest.approx(3 / 5)
    assert block["specificity"] == pytest.approx(2 / 3)
    assert block["hm"] == pytest.approx(harmonic_mean(3 / 5, 2 / 3))
    assert block["verdict_sources"] == {"offline": 4, "unparseable": 1}
    assert "best_of_n" not in block and "ci" not in block
    assert report["runs"]["base"]["ood_mean"] is None  # cub200 is the only (training) source


def test_undecided_answers_have_their_own_column_and_are_left_out_by_default(verdict_factory):
    # food101: 4 decided greedy answers (2 specific, 1 generic, 1 wrong) and 4 nobody decided.
    images = [["specific"], ["specific"], ["generic"], ["wrong"], *[["undecided"]] * 4]
    report = build_report([RunVerdicts("r", verdict_factory("food101", images))], NO_BOOTSTRAP)
    run = report["runs"]["r"]
    block = run["per_source"]["food101"]
    assert (block["n"], block["images"], block["counts"]["undecided"], block["undecided"]) == (8, 8, 4, 4)
    assert block["counts"]["wrong"] == 1  # not 5: an undecided answer is not a wrong one
    assert block["scored"] == {"answers": 4, "images": 4}
    assert block["correctness"] == pytest.approx(3 / 4) and block["specificity"] == pytest.approx(2 / 3)
    assert run["undecided"] == 4 and report["settings"]["undecided"] == "exclude"
    assert "left out of every metric" in report["definitions"]["undecided"]
    text = render_markdown(report)
    assert "| wrong | undecided | unparseable |" in text
    assert "| food101 | 8 | 8 | 0 | 2 | 0 | 1 | 0 | 1 | 4 | 0 | 0.750 |" in text
    assert "undecided answers: 4" in text and "left out of every metric" in text


def test_undecided_answers_count_as_wrong_only_when_asked(verdict_factory):
    images = [["specific"], ["specific"], ["generic"], ["wrong"], *[["undecided"]] * 4]
    verdicts = verdict_factory("food101", images)
    asked = build_report([RunVerdicts("r", verdicts)], ReportSettings(undecided="wrong", replicates=0))
    block = asked["runs"]["r"]["per_source"]["food101"]
    assert block["correctness"] == pytest.approx(3 / 8) and block["specificity"] == pytest.approx(2 / 3)
    assert block["counts"]["undecided"] == 4 and block["counts"]["wrong"] == 1  # the raw histogram is untouched
    assert block["scored"] == {"answers": 8, "images": 8}
    assert asked["settings"]["undecided"] == "wrong"
    assert "counted as `wrong`" in render_markdown(asked)
    with pytest.raises(ValueError, match="expected 'exclude' or a category"):
        ReportSettings(undecided="drop")


def test_best_of_n_draws_from_the_decided_answers(verdict_factory):
    images = [["specific", "undecided", "wrong", "wrong"], ["undecided", "generic", "undecided", "wrong"]]
    report = build_report([RunVerdicts("r", verdict_factory("food101", images))], NO_BOOTSTRAP)
    block = report["runs"]["r"]["per_source"]["food101"]
    bon = block["best_of_n"]
    assert bon["k"] == [1, 2, 4] and bon["images"] == [2, 2, 0]  # 4 answers each; 3 and 2 of them decided
    assert bon["correctness"][0] == pytest.approx(block["correctness"]) == pytest.approx(2 / 5)
    # k = 2: image 1 (3 decided, weight 3/2) misses in C(2,2)/C(3,2) draws; image 2 (weight 1) never.
    assert bon["correctness"][1] == pytest.approx((1.5 * (1 - 1 / 3) + 1.0) / 2.5)
    assert bon["correctness"][2] is None and bon["hm"][2] is None  # no image has 4 decided answers
    assert set(bon["counts_at_n"]) == {k for k in block["counts"] if k != "undecided"}
    text = render_markdown(report)
    assert "(2 images) | n/a (0 images with 4 scored answers) |" in text
    counted = build_report(
        [RunVerdicts("r", verdict_factory("food101", images))], ReportSettings(undecided="wrong", replicates=0)
    )
    assert counted["runs"]["r"]["per_source"]["food101"]["best_of_n"]["k"] == [1, 2, 4]


def test_a_source_with_nothing_decided_is_an_error_that_says_what_to_do(verdict_factory):
    verdicts = [*verdict_factory("food101", [["specific"]]), *verdict_factory("flowers102", [["undecided"]] * 3)]
    with pytest.raises(ValueError, match=r"every answer of 'flowers102' is undecided.*--judge llm.*--undecided wrong"):
        build_report([RunVerdicts("r", verdicts)], NO_BOOTSTRAP)
    block = build_report([RunVerdicts("r", verdicts)], ReportSettings(undecided="wrong", replicates=0))
    assert block["runs"]["r"]["per_source"]["flowers102"]["correctness"] == 0.0


def test_older_deferred_rows_read_as_undecided(verdict_factory):
    """Rows an earlier offline run filed under a placeholder category (source ``deferred``) are not verdicts."""
    [placeholder] = verdict_factory("food101", [["wrong"]], prefix="old/")
    placeholder = placeholder.__class__(**{**placeholder.__dict__, "source": "deferred"})
    report = build_report([RunVerdicts("r", [*verdict_factory("food101", [["specific"]]), placeholder])], NO_BOOTSTRAP)
    block = report["runs"]["r"]["per_source"]["food101"]
    assert (block["counts"]["undecided"], block["counts"]["wrong"], block["correctness"]) == (1, 0, 1.0)


def test_the_report_names_the_judges_of_each_run(verdict_factory):
    offline = verdict_factory("food101", [["specific"], ["undecided"]])
    llm = verdict_factory("food101", [["specific"], ["wrong"]], judge="llm:meta-llama/Llama-3.3-70B-Instruct")
    mixed = [*offline[:1], *verdict_factory("food101", [["generic"]], prefix="x", judge="llm:m")]
    runs = [RunVerdicts("offline", offline), RunVerdicts("llm", llm), RunVerdicts("mixed", mixed)]
    report = build_report(runs, NO_BOOTSTRAP)
    assert report["runs"]["offline"]["judges"] == {"offline": 2}
    assert report["runs"]["llm"]["judges"] == {"llm:meta-llama/Llama-3.3-70B-Instruct": 2}
    assert report["runs"]["mixed"]["judges"] == {"llm:m": 1, "offline": 1}
    assert [report["runs"][n]["undecided"] for n in ("offline", "llm", "mixed")] == [1, 0, 0]
    text = render_markdown(report)
    assert "judged by `offline` (2); undecided answers: 1" in text
    assert "judged by `llm:meta-llama/Llama-3.3-70B-Instruct` (2); undecided answers: 0" in text
    assert "Judged by `llm:m` (1), `offline` (1)." in text


def test_ood_mean_reproduces_the_papers_base_model_row(verdict_factory):
    """Macro means 0.846 (correctness) and 0.742 (specificity) give HM 0.790, as in the paper.

    The two sources are chosen so that the HM of the means differs from the mean of the HMs (0.786).
    """
    a = verdict_factory("flowers102", [["specific"]] * 346 + [["generic"]] * 346 + [["wrong"]] * 308)
    b = verdict_factory("food101", [["specific"]] * 984 + [["less specific"]] * 16)
    cub = verdict_factory("cub200", [["wrong"]] * 10)  # training domain: must not count
    report = build_report([RunVerdicts("base", [*a, *b, *cub])], NO_BOOTSTRAP)
    ood = report["runs"]["base"]["ood_mean"]
    assert ood["sources"] == ["flowers102", "food101"]
    assert ood["correctness"] == pytest.approx(0.846)
    assert ood["specificity"] == pytest.approx(0.742)
    assert ood["hm"] == pytest.approx(2 * 0.742 * 0.846 / (0.742 + 0.846))
    assert abs(ood["hm"] - 0.790) < 1e-3
    per_source = report["runs"]["base"]["per_source"]
    mean_of_hms = (per_source["flowers102"]["hm"] + per_source["food101"]["hm"]) / 2
    assert abs(mean_of_hms - ood["hm"]) > 4e-3


def test_train_domains_decide_what_is_out_of_domain(verdict_factory):
    verdicts = [*verdict_factory("cub200", [["specific"]]), *verdict_factory("food101", [["wrong"]])]
    everything = build_report([RunVerdicts("r", verdicts)], ReportSettings(train_domains=(), replicates=0))
    assert everything["runs"]["r"]["ood_mean"]["sources"] == ["cub200", "food101"]
    assert everything["runs"]["r"]["ood_mean"]["correctness"] == pytest.approx(0.5)
    food = build_report([RunVerdicts("r", verdicts)], ReportSettings(train_domains=("food101",), replicates=0))
    assert food["runs"]["r"]["ood_mean"]["sources"] == ["cub200"]


def test_a_training_domain_that_is_no_data_source_is_refused(verdict_factory):
    """Issue 21, item 7: a misspelt training domain would be averaged into the out-of-domain mean."""
    verdicts = [*verdict_factory("cub200", [["wrong"]]), *verdict_factory("food101", [["specific"]])]
    for name, hint in (("CUB200", "did you mean 'cub200'"), ("cub", "did you mean 'cub200'"), ("birds", "")):
        with pytest.raises(ValueError, match="not a data source") as refused:
            build_report([RunVerdicts("r", verdicts)], ReportSettings(train_domains=(name,), replicates=0))
        assert str(refused.value).count("\n") == 0 and "their sources: cub200, food101" in str(refused.value)
        assert hint in str(refused.value)
    other = [RunVerdicts("a", verdict_factory("food101", [["wrong"]])), RunVerdicts("b", verdicts)]
    report = build_report(other, ReportSettings(train_domains=("cub200",), replicates=0))  # in some run: fine
    assert report["runs"]["b"]["ood_mean"]["sources"] == ["food101"]
    # Not given: cub200 where there is one, and a report without it needs no setting.
    alone = build_report([RunVerdicts("r", verdict_factory("food101", [["wrong"]]))], NO_BOOTSTRAP)
    assert alone["settings"]["train_domains"] == ["cub200"] and alone["runs"]["r"]["ood_mean"]["sources"] == ["food101"]


def test_the_report_command_refuses_an_unknown_train_domain(verdict_factory, tmp_path, capsys):
    from speciarl_verl.cli import main as speciarl

    path = tmp_path / "verdicts.jsonl"
    rows = [*verdict_factory("cub200", [["wrong"]]), *verdict_factory("food101", [["specific"]])]
    path.write_text("".join(json.dumps(row.to_json()) + "\n" for row in rows), encoding="utf-8")
    command = ["eval", "report", "--verdicts", str(path), "--bootstrap", "0", "--no-plots"]
    assert speciarl([*command, "--out", str(tmp_path / "bad"), "--train-domain", "CUB200"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'CUB200'" in err and "their sources: cub200, food101" in err
    assert not (tmp_path / "bad" / "report.json").exists()
    assert speciarl([*command, "--out", str(tmp_path / "none"), "--train-domain", "none"]) == 0
    assert speciarl([*command, "--out", str(tmp_path / "ok"), "--train-domain", "cub200"]) == 0
    ood = json.loads((tmp_path / "ok" / "report.json").read_text())["runs"]["verdicts"]["ood_mean"]
    assert ood["sources"] == ["food101"] and ood["correctness"] == 1.0


def test_configured_sets_change_the_metrics_and_are_written_down(verdict_factory):
    verdicts = verdict_factory("food101", [["generic"], ["specific"], ["more specific"], ["wrong"]])
    sets = CategorySets.from_labels(correct=["specific", "more specific"], specific=["more specific"])
    report = build_report([RunVerdicts("r", verdicts)], ReportSettings(sets=sets, replicates=0))
    block = report["runs"]["r"]["per_source"]["food101"]
    assert block["correctness"] == pytest.approx(2 / 4) and block["specificity"] == pytest.approx(1 / 2)
    assert report["definitions"]["correct"] == ["more specific", "specific"]
    assert "correct set: more specific, specific" in render_markdown(report)


def test_best_of_n_block_uses_pass_at_k_and_ends_at_the_best_answer(verdict_factory):
    images = [
        ["wrong", "generic", "specific", "wrong"],
        ["wrong", "wrong", "wrong", None],
        ["more specific", "less specific", "abstain", "generic"],
    ]
    report = build_report([RunVerdicts("bon", verdict_factory("food101", images))], NO_BOOTSTRAP)
    block = report["runs"]["bon"]["per_source"]["food101"]
    bon = block["best_of_n"]
    assert bon["k"] == [1, 2, 4]
    assert bon["correctness"][0] == pytest.approx(block["correctness"])
    # k = 4: the best answers are specific, wrong, more specific.
    assert bon["counts_at_n"]["specific"] == 1 and bon["counts_at_n"]["more specific"] == 1
    assert bon["counts_at_n"]["wrong"] == 1
    assert bon["correctness"][-1] == pytest.approx(2 / 3) and bon["specificity"][-1] == pytest.approx(1.0)
    # k = 2, image 1: P(best >= generic) = 1 - C(2,2)/C(4,2) = 5/6; image 2: 0; image 3: 1.
    assert bon["correctness"][1] == pytest.approx((5 / 6 + 0 + 1) / 3)
    ood_bon = report["runs"]["bon"]["ood_mean"]["best_of_n"]
    assert ood_bon["k"] == [1, 2, 4] and ood_bon["hm"][-1] == pytest.approx(bon["hm"][-1])


def mixed_best_of_n_run(verdict_factory):
    """food101: images with 4, 1 and 4 decided answers; flowers102: no image with 2 decided answers."""
    food = [["specific", "generic", "wrong", "wrong"], ["wrong", *["undecided"] * 3], ["generic"] * 4]
    flowers = [[*["undecided"] * 3, "specific"], ["specific", *["undecided"] * 3]]
    cub = [["specific"] * 4]
    verdicts = [*(verdict_factory(s, i) for s, i in (("food101", food), ("flowers102", flowers), ("cub200", cub)))]
    return RunVerdicts("r", [v for rows in verdicts for v in rows])


def test_an_image_with_one_decided_answer_keeps_best_of_n_for_the_rest(verdict_factory):
    """Issue 21, item 11: best of k over the images with k decided answers, the count given, per source
    and out of domain (over the sources with a value at k)."""
    report = build_report([mixed_best_of_n_run(verdict_factory)], NO_BOOTSTRAP)
    run = report["runs"]["r"]
    food, flowers = run["per_source"]["food101"]["best_of_n"], run["per_source"]["flowers102"]["best_of_n"]
    assert food["k"] == [1, 2, 4] and food["images"] == [3, 2, 2]
    assert food["correctness"][0] == pytest.approx(run["per_source"]["food101"]["correctness"]) == 6 / 9
    assert food["correctness"][2] == pytest.approx(1.0) and food["specificity"][2] == pytest.approx(1 / 2)
    assert flowers["images"] == [2, 0, 0] and flowers["correctness"] == [1.0, None, None]
    ood = run["ood_mean"]["best_of_n"]
    assert ood["k"] == [1, 2, 4] and ood["images"] == [5, 2, 2]
    assert ood["sources"] == [["flowers102", "food101"], ["food101"], ["food101"]]
    assert ood["hm"][2] == pytest.approx(food["hm"][2])
    assert ood["correctness"][0] == pytest.approx((6 / 9 + 1.0) / 2) == pytest.approx(run["ood_mean"]["correctness"])
    text = render_markdown(report)
    assert "| flowers102 | 1.000 / 1.000 / 1.000 (2 images) | n/a (0 images with 2 scored answers) |" in text
    assert "(2 of 2 sources, 5 images)" in text and "(1 of 2 sources, 2 images)" in text


def test_shares_are_over_the_sources_answers_whatever_each_image_has(verdict_factory):
    verdicts = [
        *verdict_factory("food101", [["specific"]]),
        *verdict_factory("food101", [["wrong", "wrong", "wrong"]], prefix="x"),
    ]
    block = build_report([RunVerdicts("r", verdicts)], NO_BOOTSTRAP)["runs"]["r"]["per_source"]["food101"]
    assert block["answers_per_image"] == [1, 3] and block["counts"]["wrong"] == 3
    assert block["correctness"] == pytest.approx(1 / 4)  # answers in the correct set / scored answers
    assert block["best_of_n"]["images"] == [2, 1, 1]  # k = 1, 2, 3: the one-answer image only at k = 1


def test_undecided_answers_do_not_reweight_images(verdict_factory):
    """Issue 21, item 6: image a has 1 decided answer of 4, image b 4; the share is over the 5 decided answers."""
    images = [["specific", "undecided", "undecided", "undecided"], ["generic"] * 4]
    report = build_report([RunVerdicts("r", verdict_factory("food101", images))], NO_BOOTSTRAP)
    block = report["runs"]["r"]["per_source"]["food101"]
    assert block["scored"] == {"answers": 5, "images": 2}
    assert block["correctness"] == pytest.approx(1.0)
    assert block["specificity"] == pytest.approx(1 / 5)  # not (1 + 0) / 2
    assert block["hm"] == pytest.approx(harmonic_mean(1.0, 0.2))
    assert report["runs"]["r"]["ood_mean"]["specificity"] == pytest.approx(1 / 5)
    assert "answers in the correct set / scored answers" in render_markdown(report)


def test_the_bootstrap_pools_the_answers_of_the_resampled_images(verdict_factory):
    """Image A: 1 decided answer, correct; image B: 3 decided, wrong. Half the resamples hold A and B once
    each: pooled, 1 correct of 4 (0.25), where a mean of per-image shares would give 0.5."""
    images = [["specific", "undecided", "undecided"], ["wrong", "wrong", "wrong"]]
    settings = ReportSettings(replicates=2000, confidence=0.1)
    block = build_report([RunVerdicts("r", verdict_factory("food101", images))], settings)["runs"]["r"]
    assert block["per_source"]["food101"]["ci"]["correctness"] == [0.25, 0.25]
    assert block["ood_mean"]["ci"]["correctness"] == [0.25, 0.25]


def test_bootstrap_is_seeded_and_brackets_the_estimate(verdict_factory):
    images = [["specific"]] * 30 + [["generic"]] * 10 + [["wrong"]] * 10
    verdicts = [*verdict_factory("food101", images), *verdict_factory("flowers102", images[::2])]
    settings = ReportSettings(replicates=300, seed=11)
    first = build_report([RunVerdicts("r", verdicts)], settings)
    second = build_report([RunVerdicts("r", verdicts)], settings)
    assert first == second
    other_seed = build_report([RunVerdicts("r", verdicts)], ReportSettings(replicates=300, seed=12))
    assert other_seed["runs"]["r"]["ood_mean"]["ci"] != first["runs"]["r"]["ood_mean"]["ci"]
    for block in [*first["runs"]["r"]["per_source"].values(), first["runs"]["r"]["ood_mean"]]:
        for name in ("correctness", "specificity", "hm"):
            low, high = block["ci"][name]
            assert low <= block[name] <= high and low < high


def test_one_image_gives_a_zero_width_interval(verdict_factory):
    report = build_report([RunVerdicts("r", verdict_factory("food101", [["generic"]]))], ReportSettings(replicates=50))
    assert report["runs"]["r"]["per_source"]["food101"]["ci"]["correctness"] == [1.0, 1.0]


def test_several_runs_are_compared_side_by_side(verdict_factory):
    base = verdict_factory("food101", [["generic"], ["wrong"]])
    tuned = verdict_factory("food101", [["specific"], ["specific"]])
    report = build_report([RunVerdicts("base", base), RunVerdicts("tuned", tuned)], NO_BOOTSTRAP)
    assert report["runs"]["tuned"]["ood_mean"]["hm"] == pytest.approx(1.0)
    text = render_markdown(report)
    assert "## Side by side" in text
    assert "| food101 | 0.500 / 0.000 / 0.000 | 1.000 / 1.000 / 1.000 |" in text
    assert "## Run `base`" in text and "## Run `tuned`" in text


def test_bad_report_inputs_are_refused(verdict_factory):
    runs = [RunVerdicts("a", verdict_factory("food101", [["specific"]]))]
    with pytest.raises(ValueError, match="unique"):
        build_report(runs * 2)
    with pytest.raises(ValueError, match="no verdicts"):
        build_report([RunVerdicts("empty", [])])
    with pytest.raises(ValueError, match="Unknown item metric"):
        ReportSettings(item_metric="nope")


def test_a_registered_aggregation_lands_in_the_report(verdict_factory, restore_aggregations):
    from speciarl_verl.evaluation.metrics import register_aggregation

    register_aggregation("exact_rate")(lambda counts, sets: counts["specific"] / sum(counts.values()))
    report = build_report([RunVerdicts("r", verdict_factory("food101", [["specific"], ["generic"]]))], NO_BOOTSTRAP)
    assert report["runs"]["r"]["per_source"]["food101"]["exact_rate"] == pytest.approx(0.5)
    assert report["runs"]["r"]["ood_mean"]["exact_rate"] == pytest.approx(0.5)
    assert "| exact_rate |" in render_markdown(report)


def test_a_sources_interval_does_not_depend_on_the_other_sources(verdict_factory):
    food = verdict_factory("food101", [["specific"]] * 20 + [["wrong"]] * 20)
    flowers = verdict_factory("flowers102", [["generic"]] * 5 + [["wrong"]] * 5)
    settings = ReportSettings(replicates=200)
    alone = build_report([RunVerdicts("r", food)], settings)["runs"]["r"]["per_source"]["food101"]["ci"]
    together = build_report([RunVerdicts("r", [*flowers, *food])], settings)["runs"]["r"]["per_source"]["food101"]
    assert together["ci"] == alone


def test_bootstrap_in_chunks_equals_the_share_of_resampled_images():
    import numpy as np

    from speciarl_verl.evaluation import bootstrap

    per_image = np.eye(2)[[0, 0, 0, 1]]  # 3 images of one kind, 1 of the other
    draws = bootstrap.resampled_histograms(per_image, 1000, np.random.default_rng(0))
    assert draws.shape == (1000, 2) and np.all(draws.sum(axis=1) == 4)
    assert draws[:, 0].mean() / 4 == pytest.approx(0.75, abs=0.03)
