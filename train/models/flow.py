"""Frozen optical-flow estimators for AVLAE's motion encoder E_M (AVLAE §4.2).

The paper runs RAFT (pretrained) at 1/8 of the input resolution and only passes gradients
through it: the estimator is never updated (Algorithm 1, line 1). No package ships RAFT
weights and nothing may be downloaded, so:

- `HornSchunckFlow` (default): a classical Horn–Schunck estimator written in torch. It has no
  weights at all (its fixed kernels are buffers), is differentiable end to end, and is made of
  convolutions and arithmetic only, so it exports to ONNX. It works on the frames average-pooled
  to 1/8 resolution and returns the flow there, in pixels of that grid.
- `RAFTFlow`: torchvision's RAFT from a LOCAL weights file. It is built only when a path is
  given and refuses to run without weights (an untrained RAFT is never used).

Both map a clip [B, 3, T, H, W] in [−1, 1] to flows [B, 2, T−1, H/8, W/8] (u then v).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _frame_pairs(video: torch.Tensor):
    """[B, C, T, H, W] → (first, second) frames of each consecutive pair, [B·(T−1), C, H, W]."""
    b, c, t, h, w = video.shape
    frames = video.transpose(1, 2)
    first = frames[:, :-1].reshape(b * (t - 1), c, h, w)
    second = frames[:, 1:].reshape(b * (t - 1), c, h, w)
    return first, second


def _pairs_to_video(flow: torch.Tensor, b: int, t: int) -> torch.Tensor:
    """[B·(T−1), 2, h, w] → [B, 2, T−1, h, w]."""
    return flow.reshape(b, t - 1, *flow.shape[1:]).transpose(1, 2)


class HornSchunckFlow(nn.Module):
    """Horn–Schunck (1981) flow at 1/`scale` resolution with a fixed number of Jacobi iterations.

    alpha is the smoothness weight for intensities in [0, 1]. The brightness gradients are the
    classic averaged finite differences over the 2×2×2 cube of both frames.
    """

    name = "horn-schunck"

    def __init__(self, scale: int = 8, iterations: int = 20, alpha: float = 0.05):
        super().__init__()
        self.scale, self.iterations, self.alpha = scale, iterations, alpha
        dx = torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]) * 0.25
        self.register_buffer("kernel_dx", dx.reshape(1, 1, 2, 2), persistent=False)
        self.register_buffer("kernel_dy", dx.t().contiguous().reshape(1, 1, 2, 2), persistent=False)
        average = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])
        self.register_buffer("kernel_avg", average.reshape(1, 1, 3, 3).repeat(2, 1, 1, 1), persistent=False)

    def _grey_small(self, frames: torch.Tensor) -> torch.Tensor:
        grey = (frames.mean(dim=1, keepdim=True) + 1.0) * 0.5
        return F.avg_pool2d(grey, self.scale) if self.scale > 1 else grey

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, _, t, _, _ = video.shape
        first, second = _frame_pairs(video)
        i1, i2 = self._grey_small(first), self._grey_small(second)

        def diff(img, kernel):  # forward differences on a replicate-padded 2×2 stencil
            return F.conv2d(F.pad(img, (0, 1, 0, 1), mode="replicate"), kernel)

        ix = diff(i1, self.kernel_dx) + diff(i2, self.kernel_dx)
        iy = diff(i1, self.kernel_dy) + diff(i2, self.kernel_dy)
        it = F.conv2d(F.pad(i2 - i1, (0, 1, 0, 1), mode="replicate"),
                      torch.full_like(self.kernel_dx, 0.25))
        denominator = self.alpha ** 2 + ix * ix + iy * iy
        flow = torch.zeros(i1.shape[0], 2, *i1.shape[2:], dtype=video.dtype, device=video.device)
        for _ in range(self.iterations):
            mean = F.conv2d(F.pad(flow, (1, 1, 1, 1), mode="replicate"), self.kernel_avg, groups=2)
            u, v = mean[:, :1], mean[:, 1:]
            step = (ix * u + iy * v + it) / denominator
            flow = torch.cat([u - ix * step, v - iy * step], dim=1)
        return _pairs_to_video(flow, b, t)


class RAFTFlow(nn.Module):
    """torchvision RAFT (small or large) from a local weights file, frozen, flow pooled to 1/8."""

    name = "raft"

    def __init__(self, weights_path: str | Path, large: bool = False, updates: int = 12):
        super().__init__()
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"RAFT weights not found at {path}. videogan never downloads weights and never runs an "
                "untrained RAFT: pass a local torchvision RAFT state dict (e.g. raft_small_C_T_V2-01064c6d.pth), "
                "or use the default weight-free Horn-Schunck estimator (flow='horn-schunck').")
        try:
            from torchvision.models.optical_flow import raft_large, raft_small
        except Exception as error:  # torchvision missing or built against another torch
            raise RuntimeError(f"RAFT needs a working torchvision install: {error}") from error
        self.net = (raft_large if large else raft_small)(weights=None, progress=False)
        self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net.eval().requires_grad_(False)
        self.updates = updates

    def train(self, mode: bool = True):  # the estimator stays frozen in eval mode
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, _, t, _, _ = video.shape
        first, second = _frame_pairs(video)
        flow = self.net(first, second, num_flow_updates=self.updates)[-1]
        return _pairs_to_video(F.avg_pool2d(flow, 8) / 8.0, b, t)


def build_flow_estimator(kind: str = "horn-schunck", weights: str | None = None, **options) -> nn.Module:
    if kind == "horn-schunck":
        return HornSchunckFlow(**options)
    if kind in ("raft", "raft-small", "raft-large"):
        if not weights:
            raise ValueError("flow='raft' needs raft_weights=<local .pth>; nothing is downloaded")
        return RAFTFlow(weights, large=kind == "raft-large")
    raise ValueError(f"unknown flow estimator {kind!r} (horn-schunck, raft-small, raft-large)")
