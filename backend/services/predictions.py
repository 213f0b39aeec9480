"""How a pool score's embedding is stored: little-endian float32 bytes in ``Prediction.embedding``
(4 bytes per channel), read back without touching the image or its map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from backend.db.tables import Prediction

_DTYPE = np.dtype("<f4")


def encode_embedding(embedding: np.ndarray) -> bytes:
    """Bytes of a ``(C,)`` embedding."""
    return np.ascontiguousarray(np.asarray(embedding).reshape(-1), dtype=_DTYPE).tobytes()


def decode_embedding(data: bytes) -> np.ndarray:
    """The float32 ``(C,)`` embedding ``data`` holds."""
    return np.frombuffer(data, dtype=_DTYPE).astype(np.float32)


def embedding_matrix(predictions: Sequence[Prediction]) -> np.ndarray:
    """float32 ``(N, C)``: one row per prediction, in order. Predictions without an embedding, or
    whose lengths disagree, give ``(N, 1)`` zeros (selection then ignores diversity)."""
    rows = [decode_embedding(p.embedding) if p.embedding else None for p in predictions]
    sizes = {r.shape[0] for r in rows if r is not None}
    if not rows or any(r is None for r in rows) or len(sizes) != 1:
        return np.zeros((len(rows), 1), np.float32)
    return np.stack([r for r in rows if r is not None])
