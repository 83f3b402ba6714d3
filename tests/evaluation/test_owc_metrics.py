"""The open-world metrics without a model: string metrics, selection, scoring records, and how the
report averages per-answer scores (image weighting, missing scores, out-of-domain mean, intervals)."""

import numpy as np
import pytest

from speciarl_verl.core.categories import Category
from speciarl_verl.evaluation.owc_metrics import (
    OWC_METRICS,
    OwcContext,
    OwcSettings,
    exact_match,
    get_answer_metric,
    parse_metric_selection,
    register_answer_metric,
    score_verdicts,
    text_inclusion,
)
from speciarl_verl.evaluation.records import VerdictRecord
from speciarl_verl.evaluation.report import ReportSettings, RunVerdicts, build_report
from speciarl_verl.evaluation.report_markdown import render_markdown


def test_text_inclusion_is_a_substring_test_so_synonyms_fail_and_containing_words_pass():
    pairs = [
        ("couch", "sofa"),  # a synonym is not a substring
        ("can", "trash can"),  # a different object that contains the word passes
        ("Laysan Albatross", "  A LAYSAN ALBATROSS in flight "),
        ("737-800", "Boeing 737 800"),  # folded as exact match folds: the dash is a space
        ("sunflower", "sun flower"),  # but words are not joined
    ]
    assert text_inclusion(pairs) == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_text_inclusion_folds_labels_as_exact_match_so_an_exact_match_is_always_included():
    pairs = [
        ("Black-footed Albatross", "black footed albatross seen from below"),  # CUB's hyphenated names
        ("Black-footed Albatross", "Black footed Albatross"),
        ("Black_footed_Albatross", "a black-footed albatross"),
        ("Crème Brûlée", "creme brulee with berries"),
        ("Chuck-will's-widow", "chuck wills widow"),
        ("St. Bernard", "a st bernard puppy"),
        ("F/A-18", "an F/A-18 Hornet"),
        ("couch", "sofa"),
        ("?", "!"),  # both fold to nothing: an exact match, so included too
        ("?", "anything"),
    ]
    em, ti = exact_match(pairs), text_inclusion(pairs)
    assert ti == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert all(t >= e for e, t in zip(em, ti, strict=True)), (em, ti)


def test_exact_match_uses_the_label_normalisation_and_nothing_looser():
    pairs = [
        ("Black-footed Albatross", "black_footed  albatross"),
        ("737-800", "737 800"),
        ("737-800", "737-8"),
        ("can", "trash can"),
        ("Crème Brûlée", "creme brulee"),
        ("couch", "sofa"),
    ]
    assert exact_match(pairs) == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]


def test_metric_selection_expands_groups_keeps_column_order_and_names_unknown_ones():
    assert parse_metric_selection("spec") == ()
    assert parse_metric_selection("spec,owc") == OWC_METRICS
    assert parse_metric_selection("concept_similarity,exact_match,spec") == ("exact_match", "concept_similarity")
    with pytest.raises(ValueError, match=r"unknown metric or group 'bleu'.*owc"):
        parse_metric_selection("spec,bleu")


def test_registry_refuses_a_second_function_under_a_used_name():
    with pytest.raises(ValueError, match="already registered"):
        register_answer_metric("exact_match", "EM", "x")(lambda pairs, context: [0.0] * len(pairs))
    with pytest.raises(ValueError, match="Unknown answer metric: 'nope'"):
        get_answer_metric("nope")


def test_settings_refuse_an_unknown_concept_reduction():
    with pytest.raises(ValueError, match="concept reduction 'mode'"):
        OwcSettings(concept_reduction="mode")


def verdict(sample, index, source, truth, answer, category=Category.SPECIFIC):
    reason = None if category is not None else ("unparseable" if answer is None else "undecided")
    return VerdictRecord(sample, source, index, category, ground_truth=truth, answer=answer, reason=reason)


def test_scoring_records_gives_unparseable_answers_zero_and_scores_undecided_ones():
    rows = [
        verdict("a", 0, "food101", "tiramisu", "Tiramisu"),
        verdict("a", 1, "food101", "tiramisu", None, category=None),  # unparseable
        verdict("a", 2, "food101", "tiramisu", "a slice of tiramisu cake", category=None),  # undecided
    ]
    scores = score_verdicts(rows, ["exact_match", "text_inclusion"], OwcContext())
    assert scores == {
        ("a", 0): {"exact_match": 1.0, "text_inclusion": 1.0},
        ("a", 1): {"exact_match": 0.0, "text_inclusion": 0.0},
        ("a", 2): {"exact_match": 0.0, "text_inclusion": 1.0},
    }


def test_scoring_needs_the_ground_truth_in_each_row_and_says_where():
    rows = [VerdictRecord("a", "food101", 0, Category.SPECIFIC, answer="tiramisu")]
    with pytest.raises(ValueError, match=r"run1\.jsonl: sample 'a' answer 0 has no 'ground_truth'"):
        score_verdicts(rows, ["exact_match"], OwcContext(), where="run1.jsonl")


def two_source_run(scores_by_key):
    rows = [
        verdict("p/0", 0, "oxford_pets", "pug", "pug"),
        verdict("p/0", 1, "oxford_pets", "pug", "dog"),
        verdict("p/1", 0, "oxford_pets", "samoyed", "cat", Category.WRONG),
        verdict("p/1", 1, "oxford_pets", "samoyed", "samoyed"),
        verdict("f/0", 0, "food101", "tiramisu", "tiramisu"),
        verdict("f/1", 0, "food101", "pizza", "pasta", Category.WRONG),
        verdict("f/2", 0, "food101", "ramen", "ramen"),
    ]
    return RunVerdicts("r", rows, answer_scores=scores_by_key(rows))


def test_report_weights_images_equally_skips_missing_scores_and_averages_sources():
    fixed = {
        ("p/0", 0): 1.0,
        ("p/0", 1): 0.5,  # image p/0: 0.75
        ("p/1", 0): 0.0,
        ("p/1", 1): None,  # image p/1: 0.0 (the missing score is left out, not counted as 0)
        ("f/0", 0): 1.0,
        ("f/1", 0): 0.2,
        ("f/2", 0): None,  # image f/2 has no score: food101 = (1.0 + 0.2) / 2
    }
    run = two_source_run(lambda rows: {v.key: {"semantic_similarity": fixed[v.key]} for v in rows})
    settings = ReportSettings(train_domains=(), replicates=300, answer_metrics=("semantic_similarity",))
    report = build_report([run], settings)
    pets, food = report["runs"]["r"]["per_source"]["oxford_pets"], report["runs"]["r"]["per_source"]["food101"]
    assert pets["semantic_similarity"] == pytest.approx(0.375)
    assert food["semantic_similarity"] == pytest.approx(0.6)
    assert pets["unscored"] == {"semantic_similarity": 1} and food["unscored"] == {"semantic_similarity": 1}
    ood = report["runs"]["r"]["ood_mean"]
    assert ood["semantic_similarity"] == pytest.approx((0.375 + 0.6) / 2)
    low, high = food["ci"]["semantic_similarity"]
    assert 0.2 <= low <= 0.6 <= high <= 1.0  # resampling two scored images: means between 0.2 and 1.0
    low, high = ood["ci"]["semantic_similarity"]
    assert low <= ood["semantic_similarity"] <= high
    assert report["answer_metrics"] == ["semantic_similarity"]
    assert "cosine" in report["definitions"]["semantic_similarity"]
    # the category metrics are computed as before, beside the new column
    assert pets["correctness"] == pytest.approx(0.75)


def test_adding_answer_metrics_leaves_the_category_intervals_unchanged():
    run = two_source_run(lambda rows: {v.key: {"exact_match": 1.0} for v in rows})
    plain = build_report([RunVerdicts("r", run.verdicts)], ReportSettings(train_domains=(), replicates=200))
    both = build_report([run], ReportSettings(train_domains=(), replicates=200, answer_metrics=("exact_match",)))
    for source in ("oxford_pets", "food101"):
        assert (
            both["runs"]["r"]["per_source"][source]["ci"]["hm"] == plain["runs"]["r"]["per_source"][source]["ci"]["hm"]
        )


def test_report_refuses_a_run_without_scores_for_a_chosen_metric():
    run = two_source_run(lambda rows: {v.key: {"exact_match": 1.0} for v in rows[:-1]})
    with pytest.raises(ValueError, match=r"sample 'f/2' answer 0 has no score for \['exact_match'\]"):
        build_report([run], ReportSettings(replicates=0, answer_metrics=("exact_match",)))
    with pytest.raises(ValueError, match="has no answer scores"):
        build_report([RunVerdicts("r", run.verdicts)], ReportSettings(replicates=0, answer_metrics=("exact_match",)))


def test_markdown_has_a_column_and_a_definition_per_answer_metric():
    names = ("exact_match", "text_inclusion")
    run = two_source_run(lambda rows: score_verdicts(rows, names, OwcContext()))
    report = build_report([run], ReportSettings(train_domains=("food101",), replicates=100, answer_metrics=names))
    text = render_markdown(report)
    assert "| run | sources | Corr. | Spec. | HM | Score | EM | TI |" in text
    assert "- **text_inclusion** (TI): 1 when the ground truth is a substring of the answer, both after" in text
    pets = report["runs"]["r"]["per_source"]["oxford_pets"]
    # pug/pug 1, pug/dog 0 -> 0.5; samoyed/cat 0, samoyed/samoyed 1 -> 0.5
    assert pets["exact_match"] == 0.5 and pets["text_inclusion"] == 0.5
    assert f"| 0.500 [{pets['ci']['exact_match'][0]:.3f}, {pets['ci']['exact_match'][1]:.3f}] |" in text
    assert np.isclose(report["runs"]["r"]["ood_mean"]["exact_match"], 0.5)
