"""Latents from seeds: the one documented algorithm every stage uses.

One seed gives one video in PyTorch, ONNX Runtime, Triton and TensorRT because every
stage draws its latents with exactly this numpy code::

    rng = numpy.random.Generator(numpy.random.PCG64(seed))
    z_a = rng.standard_normal(Da, dtype=numpy.float32)   # appearance, drawn first
    z_m = rng.standard_normal(Dm, dtype=numpy.float32)   # motion, drawn second

Do not change the order, the generator or the dtype: other code depends on it.
"""

from __future__ import annotations

import numpy

__all__ = ["ALGORITHM", "latents_for_seed", "latents_for_seeds", "one_hot"]

ALGORITHM = ("numpy.random.Generator(PCG64(seed)); z_a = standard_normal(Da, float32); "
             "z_m = standard_normal(Dm, float32)")


def latents_for_seed(seed: int, z_a_dim: int, z_m_dim: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    """``(z_a float32 [Da], z_m float32 [Dm])`` for ``seed`` (see the module docstring)."""
    rng = numpy.random.Generator(numpy.random.PCG64(seed))
    z_a = rng.standard_normal(z_a_dim, dtype=numpy.float32)
    z_m = rng.standard_normal(z_m_dim, dtype=numpy.float32)
    return z_a, z_m


def latents_for_seeds(seeds, z_a_dim: int, z_m_dim: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Stacked latents for several seeds: ``(z_a [N, Da], z_m [N, Dm])``."""
    pairs = [latents_for_seed(int(s), z_a_dim, z_m_dim) for s in seeds]
    z_a = numpy.stack([p[0] for p in pairs]) if pairs else numpy.zeros((0, z_a_dim), numpy.float32)
    z_m = numpy.stack([p[1] for p in pairs]) if pairs else numpy.zeros((0, z_m_dim), numpy.float32)
    return z_a, z_m


def one_hot(label: int, n_classes: int, n: int = 1) -> numpy.ndarray:
    """FP32 one-hot ``[n, n_classes]`` for a conditional model's ``label`` input."""
    if not 0 <= label < n_classes:
        raise ValueError(f"label {label} is out of range: the model has {n_classes} classes (0..{n_classes - 1})")
    out = numpy.zeros((n, n_classes), numpy.float32)
    out[:, label] = 1.0
    return out
