"""A tiny byte-level BPE tokenizer with Qwen2.5-VL's special tokens, built offline.

Byte-level, so any text (reasoning, tags, labels) round-trips exactly through
encode/decode; small, so it trains in well under a second. It carries a ChatML
chat template with Qwen2-VL's vision markers, enough for verl's tokenizer and
processor code paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "QWEN_SPECIAL_TOKENS", "build_tiny_tokenizer"]

#: The special tokens of Qwen2.5-VL, in id order after the ordinary vocabulary.
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# ChatML with a default system turn; image and video parts become the vision
# marker sequence Qwen2-VL's processor expands.
CHAT_TEMPLATE = (
    "{% if not messages or messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's pre-tokenisation split: contractions, letters, single digits, punctuation, spaces.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_BASE_CORPUS = (
    "<think>The bird has a long hooked bill and dark plumage.</think><answer>Black footed Albatross</answer>",
    "<think>A twin-engine jet with a T-tail.</think><answer>Boeing 717</answer>",
    "Classify the image. Think first, then answer with one label or None.",
)


def build_tiny_tokenizer(save_dir: str | Path | None = None, corpus: Iterable[str] = (), vocab_size: int = 512):
    """Train the tokenizer on ``corpus`` (plus a few built-in lines); save it if ``save_dir`` is given.

    Returns a ``transformers.PreTrainedTokenizerFast`` whose eos is ``<|im_end|>``
    and pad ``<|endoftext|>``, like Qwen2.5-VL-Instruct.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([*_BASE_CORPUS, *corpus], trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in QWEN_SPECIAL_TOKENS if t not in ("<|im_end|>", "<|endoftext|>")],
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
    )
    if save_dir is not None:
        wrapped.save_pretrained(str(save_dir))
    return wrapped
