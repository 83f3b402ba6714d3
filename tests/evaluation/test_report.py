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
        "unparseable": 1,
    }
    assert block["correctness"] == pytest.approx(3 / 5)
    assert block["specificity"] == pytest.approx(2 / 3)
    assert block["hm"] == pytest.approx(harmonic_mean(3 / 5, 2 / 3))
    assert block["verdict_sources"] == {"offline": 4, "unparseable": 1}
    assert "best_of_n" not in block and "ci" not in block
    assert report["runs"]["base"]["ood_mean"] is None  # cub200 is the only (training) source


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


def test_images_weigh_the_same_when_answer_counts_differ(verdict_factory):
    verdicts = [
        *verdict_factory("food101", [["specific"]]),
        *verdict_factory("food101", [["wrong", "wrong", "wrong"]], prefix="x"),
    ]
    block = build_report([RunVerdicts("r", verdicts)], NO_BOOTSTRAP)["runs"]["r"]["per_source"]["food101"]
    assert block["answers_per_image"] == [1, 3] and block["counts"]["wrong"] == 3
    assert block["correctness"] == pytest.approx(0.5)  # not 1/4
    assert "best_of_n" not in block  # some image has a single answer


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
