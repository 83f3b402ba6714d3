"""A tiny randomly initialised Qwen2 text model that a CPU vLLM server can load as a "judge".

Its verdicts mean nothing; it exists so tests can check the request shape and the
choice-constrained decoding against a real vLLM OpenAI-compatible server.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["build_tiny_judge_model"]


def build_tiny_judge_model(save_dir: str | Path, seed: int = 0) -> Path:
    """Save config, float32 weights and tokenizer (with a chat template) to ``save_dir``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from speciarl_verl.judge.prompt import DEFAULT_JUDGE_PROMPT
    from speciarl_verl.offline_fixtures.tiny_tokenizer import build_tiny_tokenizer

    save_dir = Path(save_dir)
    corpus = [DEFAULT_JUDGE_PROMPT.system, DEFAULT_JUDGE_PROMPT.user_template, *DEFAULT_JUDGE_PROMPT.labels]
    tokenizer = build_tiny_tokenizer(save_dir, corpus=corpus, vocab_size=2048)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.save_pretrained(save_dir, safe_serialization=True)
    return save_dir
