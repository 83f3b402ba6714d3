"""Sentence embeddings for the similarity metrics: a sentence-transformers model, loaded on first use.

Every text is embedded once per :class:`SentenceEncoder` (class names and answers repeat across
thousands of predictions), in batches, and each vector is L2-normalised here, so the cosine of
two texts is the dot product of their rows whatever the model's own last module does.
``all-MiniLM-L6-v2`` (the default) mean-pools its token vectors, as does the tiny test model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["DEFAULT_EMBEDDING_MODEL", "SentenceEncoder", "l2_normalised", "rowwise_cosine"]

#: The model of the open-world protocol's semantic similarity.
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def l2_normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row stays zero (its cosine with anything is 0).

    >>> l2_normalised(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b``, both already L2-normalised.

    >>> rowwise_cosine(np.array([[1.0, 0.0], [0.6, 0.8]]), np.array([[0.0, 1.0], [0.6, 0.8]])).round(6).tolist()
    [0.0, 1.0]
    """
    return np.einsum("ij,ij->i", a, b)


class SentenceEncoder:
    """A sentence-transformers model by hub name or local folder; ``device`` ``None`` lets it choose.

    Example: ``SentenceEncoder("/models/minilm").embed(["couch", "sofa"])`` is a (2, d) array of unit rows.
    """

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, batch_size: int = 256, device: str | None = None):
        if not model.strip():
            raise ValueError("embedding model: expected a sentence-transformers model name or folder, got ''")
        if batch_size < 1:
            raise ValueError(f"embedding batch size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self._encoder: Any = None
        self._rows: dict[str, int] = {}
        self._vectors: list[np.ndarray] = []

    def _load(self) -> Any:
        if self._encoder is None:
            from sentence_transformers import SentenceTransformer

            try:
                self._encoder = SentenceTransformer(self.model, device=self.device)
            except (OSError, ValueError) as error:
                reason = " ".join(str(error).split())[:300]
                raise ValueError(
                    f"cannot load the sentence-embedding model {self.model!r} ({reason}); give a local "
                    "sentence-transformers folder with --embedding-model, or allow its download from the hub"
                ) from error
        return self._encoder

    def forget(self) -> None:
        """Drop the remembered vectors, keep the loaded model (a benchmark's cold start without the load)."""
        self._rows, self._vectors = {}, []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised row per text (float32); texts seen before are not encoded again."""
        if not texts:
            return np.zeros((0, 0), np.float32)
        new = [t for t in dict.fromkeys(texts) if t not in self._rows]
        if new:
            encoded = self._load().encode(
                list(new), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
            )
            block = l2_normalised(np.asarray(encoded, dtype=np.float32))
            start = sum(len(v) for v in self._vectors)
            self._vectors.append(block)
            self._rows.update((text, start + i) for i, text in enumerate(new))
        if len(self._vectors) > 1:
            self._vectors = [np.concatenate(self._vectors)]  # one block: later look-ups need no concatenation
        return self._vectors[0][[self._rows[t] for t in texts]]
