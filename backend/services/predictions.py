"""How a pool score's embedding is stored: little-endian float32 bytes in ``Prediction.embedding``
(4 bytes per channel), read back without touching the image or its map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_DTYPE = np.dtype("<f4")


def encode_embedding(embedding: np.ndarray) -> bytes:
    """Bytes of a ``(C,)`` embedding."""
    return np.ascontiguousarray(np.asarray(embedding).reshape(-1), dtype=_DTYPE).tobytes()


def decode_embedding(data: bytes) -> np.ndarray:
    """The float32 ``(C,)`` embedding ``data`` holds."""
    return np.frombuffer(data, dtype=_DTYPE).astype(np.float32)


def embedding_matrix(embeddings: Sequence[bytes | None]) -> np.ndarray:
    """float32 ``(N, C)``: one row per stored embedding (``Prediction.embedding``), in order.
    Missing embeddings, or lengths that disagree, give ``(N, 1)`` zeros (selection then ignores
    diversity)."""
    sizes = {len(e) for e in embeddings if e}
    if not embeddings or any(not e for e in embeddings) or len(sizes) != 1:
        return np.zeros((len(embeddings), 1), np.float32)
    flat = np.frombuffer(b"".join(e for e in embeddings if e), dtype=_DTYPE)
    return flat.reshape(len(embeddings), -1).astype(np.float32)
