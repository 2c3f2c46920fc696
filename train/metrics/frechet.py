"""Fréchet distance between two Gaussians fitted to feature sets (FID, FVD).

    d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½)

``frechet_distance`` (from means and covariances) is the reference computation: scipy's ``sqrtm``
in float64, with the fallbacks of the TTUR / FVD code (add ``eps`` to both diagonals if the
product is singular; drop a negligible imaginary part, refuse a large one).

``frechet_distance_features`` (from the feature sets) gets the same number without a D×D
``sqrtm``, which takes minutes on 2048-d features and is ill-conditioned when N ≤ D:
with centred features A [n,D] and B [m,D], Σ₁Σ₂ = AᵀA BᵀB / ((n−1)(m−1)) has the same non-zero
eigenvalues as (ABᵀ)(ABᵀ)ᵀ / ((n−1)(m−1)), so Tr (Σ₁Σ₂)^½ is the sum of the singular values of
ABᵀ / √((n−1)(m−1)) (exact, an n×m SVD). When both sets are larger than D it uses instead
Tr (Σ₁^½ Σ₂ Σ₁^½)^½ from two symmetric eigendecompositions. Tests check both against ``sqrtm``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg


@dataclass
class GaussianStats:
    """Mean and covariance of a feature set, with the number of samples it came from."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def feature_stats(features) -> GaussianStats:
    """Mean and unbiased covariance (N−1) of ``features`` [N, D], in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {f.shape}")
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf")
    return GaussianStats(mu=f.mean(axis=0), sigma=np.cov(f, rowvar=False), n=int(f.shape[0]))


def _sqrtm(m: np.ndarray) -> np.ndarray:
    """scipy's sqrtm, quiet about singular input (the caller checks the result)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        out = linalg.sqrtm(m)
    return out[0] if isinstance(out, tuple) else out


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors differ in shape: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"covariances must both be {mu1.shape[0]}x{mu1.shape[0]}: "
                         f"{sigma1.shape} vs {sigma2.shape}")

    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"Fréchet distance: singular covariance product; adding {eps} to the diagonals")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: imaginary component {np.max(np.abs(covmean.imag)):.3g} "
                             "in sqrtm(sigma1 @ sigma2)")
        covmean = covmean.real
    fd = float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    # Rounding can leave a tiny negative number for identical inputs.
    return max(fd, 0.0) if fd > -1e-6 * max(1.0, float(np.trace(sigma1) + np.trace(sigma2))) else fd


def frechet_distance_stats(a: GaussianStats, b: GaussianStats, eps: float = 1e-6) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma, eps=eps)


def trace_sqrt_product_features(feats_a, feats_b) -> float:
    """Tr (Σ₁Σ₂)^½ of the covariances of two feature sets (see the module docstring)."""
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    if min(n, m) <= d:
        sv = linalg.svd(a @ b.T, compute_uv=False)
        return float(sv.sum() / np.sqrt((n - 1) * (m - 1)))
    s1 = a.T @ a / (n - 1)
    s2 = b.T @ b / (m - 1)
    w, v = linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = linalg.eigvalsh(root1 @ s2 @ root1)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def frechet_distance_features(feats_a, feats_b) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets [N, D] and [M, D]
    (unbiased covariances), computed without a D×D sqrtm."""
    sa, sb = feature_stats(feats_a), feature_stats(feats_b)
    if sa.dim != sb.dim:
        raise ValueError(f"feature sets differ in dimension: {sa.dim} vs {sb.dim}")
    diff = sa.mu - sb.mu
    fd = float(diff.dot(diff) + np.trace(sa.sigma) + np.trace(sb.sigma)
               - 2.0 * trace_sqrt_product_features(feats_a, feats_b))
    return max(fd, 0.0) if fd > -1e-9 * max(1.0, float(np.trace(sa.sigma) + np.trace(sb.sigma))) else fd
