"""Inception Score and its two entropies over class posteriors (EncGAN3 Table 2).

    IS = exp(E_x KL(p(y|x) || p(y))) = exp(H(y) − H(y|x))

with p(y) the mean posterior over the set, H(y) its entropy ("inter-entropy", higher = more
diverse) and H(y|x) the mean entropy of the posteriors ("intra-entropy", lower = more confident).
Entropies are in nats. Here the posteriors are the I3D Kinetics-400 softmax.
"""
from __future__ import annotations

import numpy as np


def softmax(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _entropy(p: np.ndarray, axis=-1) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-30, None))).sum(axis=axis)


def inception_score_from_probs(probs, splits: int = 1) -> dict:
    """IS, H(y), H(y|x) of posteriors [N, K]; with ``splits`` > 1 also the mean/std of IS over
    ``splits`` equal parts (the convention of the original IS code)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"probs must be [N, K], got {p.shape}")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-4) or (p < 0).any():
        raise ValueError("rows of probs must be probability vectors")
    h_y = float(_entropy(p.mean(axis=0)))
    h_yx = float(_entropy(p, axis=1).mean())
    out = {"is": float(np.exp(h_y - h_yx)), "h_y": h_y, "h_y_given_x": h_yx, "n": int(p.shape[0])}
    if splits > 1:
        parts = [q for q in np.array_split(p, splits) if len(q)]
        scores = [np.exp(float(_entropy(q.mean(axis=0))) - float(_entropy(q, axis=1).mean())) for q in parts]
        out.update(is_splits=len(parts), is_split_mean=float(np.mean(scores)), is_split_std=float(np.std(scores)))
    return out


def inception_score(logits, splits: int = 1) -> dict:
    """IS, H(y), H(y|x) from classifier logits [N, K]."""
    return inception_score_from_probs(softmax(logits), splits=splits)
