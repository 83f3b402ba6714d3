"""Semantic and concept similarity with a tiny random sentence-transformers model and spaCy's blank
English pipeline (rule chunker), both built here: the code path of the real models, checked against
cosines computed independently from the model's raw vectors."""

import numpy as np
import pytest

from speciarl_verl.evaluation.noun_concepts import ConceptExtractor
from speciarl_verl.evaluation.owc_metrics import OwcContext, OwcSettings, get_answer_metric
from speciarl_verl.evaluation.sentence_embeddings import SentenceEncoder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from speciarl_verl.offline_fixtures.tiny_sentence_encoder import build_tiny_sentence_encoder

    return str(build_tiny_sentence_encoder(tmp_path_factory.mktemp("tiny-st")))


@pytest.fixture(scope="module")
def raw_model(tiny_model):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(tiny_model, device="cpu")


def cosine(raw_model, a: str, b: str) -> float:
    """Cosine of two texts from the model's raw (unnormalised) mean-pooled vectors."""
    x, y = raw_model.encode([a, b], convert_to_numpy=True)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def context(tiny_model, reduction="max"):
    return OwcContext(OwcSettings(embedding_model=tiny_model, concept_pipeline="rules", concept_reduction=reduction))


@pytest.mark.parametrize(
    ("text", "concepts"),
    [
        ("a photo of a trash can", ["trash can"]),
        ("This image shows 2 Laysan albatrosses and a gull.", ["Laysan albatrosses", "gull"]),
        ("Boeing 737-800", ["Boeing 737-800"]),  # a model code is not a number
        ("737-800", ["737-800"]),
        ("the picture depicts a black-footed albatross (probably juvenile) near the sea", None),
        ("an image", []),
        ("two", []),
    ],
)
def test_rule_chunker_finds_noun_phrases_without_articles_numbers_or_picture_words(text, concepts):
    found = ConceptExtractor("rules").concepts([text])[0]
    if concepts is None:
        assert found == ["black-footed albatross", "juvenile", "sea"]
    else:
        assert found == concepts


def test_an_answer_without_concepts_stands_for_itself():
    extractor = ConceptExtractor("rules")
    assert extractor.concepts_or_whole(["a  photo", "Boeing 737"]) == [["a photo"], ["Boeing"]]


def test_a_pipeline_that_is_not_installed_is_named_with_the_way_out():
    with pytest.raises(ValueError, match=r"'en_core_web_xx' is not installed.*--concept-pipeline rules"):
        ConceptExtractor("en_core_web_xx").concepts(["a gull"])


def test_semantic_similarity_is_the_cosine_of_the_models_vectors(tiny_model, raw_model):
    pairs = [("couch", "sofa"), ("can", "trash can"), ("Laysan Albatross", "Laysan  Albatross"), ("gull", "pug")]
    scores = get_answer_metric("semantic_similarity").score(pairs, context(tiny_model))
    expected = [cosine(raw_model, gt, " ".join(pred.split())) for gt, pred in pairs]
    assert scores == pytest.approx(expected, abs=1e-5)
    assert scores[2] == pytest.approx(1.0, abs=1e-5)  # same text after whitespace folding
    assert scores[0] < 1.0 - 1e-4  # two different words are two different vectors


def test_concept_similarity_reduces_the_per_concept_cosines(tiny_model, raw_model):
    answer = "a photo of a trash can next to a couch"  # concepts: "trash can", "couch"
    (concepts,) = ConceptExtractor("rules").concepts([answer])
    per_concept = [cosine(raw_model, "sofa", c) for c in concepts]
    assert concepts == ["trash can", "couch"]
    for reduction, expected in (("max", max(per_concept)), ("min", min(per_concept)), ("mean", np.mean(per_concept))):
        (score,) = get_answer_metric("concept_similarity").score([("sofa", answer)], context(tiny_model, reduction))
        assert score == pytest.approx(expected, abs=1e-5)


def test_concept_similarity_of_an_answer_without_concepts_is_its_semantic_similarity(tiny_model):
    pairs = [("737-800", "737-800"), ("albatross", "an image")]
    ctx = context(tiny_model)
    concept = get_answer_metric("concept_similarity").score(pairs, ctx)
    semantic = get_answer_metric("semantic_similarity").score([("737-800", "737-800"), ("albatross", "an image")], ctx)
    assert concept == pytest.approx(semantic, abs=1e-6)
    assert concept[0] == pytest.approx(1.0, abs=1e-5)


def test_encoder_embeds_each_text_once_in_batches(tiny_model, monkeypatch):
    encoder = SentenceEncoder(tiny_model, batch_size=2)
    first = encoder.embed(["gull", "pug", "gull"])
    assert first.shape[0] == 3 and np.allclose(first[0], first[2])
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    seen = []
    model = encoder._load()
    original = model.encode
    monkeypatch.setattr(model, "encode", lambda texts, **kw: seen.append(list(texts)) or original(texts, **kw))
    again = encoder.embed(["pug", "sofa", "gull"])
    assert seen == [["sofa"]]  # only the new text reaches the model
    assert np.allclose(again[0], first[1]) and np.allclose(again[2], first[0])


def test_a_model_that_cannot_be_loaded_is_named_with_the_way_out(tmp_path):
    with pytest.raises(ValueError, match=r"cannot load the sentence-embedding model .*--embedding-model"):
        SentenceEncoder(str(tmp_path / "no-such-model")).embed(["gull"])
