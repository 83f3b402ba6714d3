"""A tiny, randomly initialised sentence-transformers model, built offline in about a second.

It stands in for ``sentence-transformers/all-MiniLM-L6-v2`` in tests and benchmarks: the same
module layout (a BERT encoder, then mean pooling over the tokens) loaded through the same
``SentenceTransformer(path)`` call, with a WordPiece vocabulary trained here with ``tokenizers``
on a few lines of class names. Its vectors carry no meaning beyond shared tokens; what a test can
rely on is that identical texts give identical vectors and that the arithmetic around them is right.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["build_tiny_sentence_encoder"]

_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_BASE_CORPUS = (
    "Laysan Albatross black footed albatross bird seabird gull California Gull phoebe",
    "Boeing 737-800 A320 airliner airplane aircraft jet Airbus A340-300",
    "Tesla Model S Sedan 2012 car vehicle sports utility vehicle pickup truck",
    "pug samoyed terrier yorkshire terrier dog cat animal pet",
    "sunflower rose daisy flower tiramisu carbonara pizza lasagna dessert food dish",
    "a photo of an image showing the picture of a trash can couch sofa chair table",
)


def build_tiny_sentence_encoder(
    save_dir: str | Path, corpus: Iterable[str] = (), vocab_size: int = 600, hidden_size: int = 32, seed: int = 0
) -> Path:
    """Write a sentence-transformers model folder to ``save_dir`` and return its path.

    Example: ``SentenceTransformer(str(build_tiny_sentence_encoder(tmp)), device="cpu").encode(["gull"])``
    gives one vector of ``hidden_size`` floats.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    save_dir = Path(save_dir)
    encoder_dir = save_dir / "encoder"
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(_SPECIAL), show_progress=False)
    tokenizer.train_from_iterator([*_BASE_CORPUS, *corpus], trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    wrapped = BertTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(encoder_dir))
    wrapped.save_pretrained(str(encoder_dir))
    transformer = st_models.Transformer(str(encoder_dir), max_seq_length=64)
    pooling = st_models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model_dir = save_dir / "sentence_encoder"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(model_dir))
    return model_dir
