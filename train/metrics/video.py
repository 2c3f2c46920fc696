"""Video array conventions shared by the metric networks.

Every metric entry point accepts a batch of videos in one of these forms:

* uint8 ``[N, T, H, W, 3]`` (numpy or torch), values 0..255: what a decoder or a saved file gives;
* float ``[N, T, H, W, 3]`` or ``[N, 3, T, H, W]`` (numpy or torch), values in [-1, 1]: what the
  data sets and the generators give.

Float videos are quantized to 8 bits (``round((x + 1) * 127.5)``) before any network sees them, so
real clips, generated clips and clips read back from files all take exactly the same path.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_uint8_nthwc(videos) -> torch.Tensor:
    """Any accepted video batch -> uint8 torch tensor [N, T, H, W, 3]."""
    if isinstance(videos, np.ndarray):
        videos = torch.from_numpy(np.ascontiguousarray(videos))
    if not isinstance(videos, torch.Tensor):
        raise TypeError(f"videos must be a numpy array or a torch tensor, got {type(videos).__name__}")
    v = videos.detach().cpu()
    if v.ndim == 4:  # a single video
        v = v.unsqueeze(0)
    if v.ndim != 5:
        raise ValueError(f"videos must be [N,T,H,W,3] or [N,3,T,H,W], got shape {tuple(videos.shape)}")
    if v.shape[-1] == 3:
        pass
    elif v.shape[1] == 3:
        v = v.permute(0, 2, 3, 4, 1)
    else:
        raise ValueError(f"cannot find the 3 colour channels in shape {tuple(videos.shape)}")
    if v.dtype == torch.uint8:
        return v.contiguous()
    if not torch.is_floating_point(v):
        raise TypeError(f"videos must be uint8 or float in [-1, 1], got {v.dtype}")
    v = v.float()
    if v.numel() and (v.min() < -1.01 or v.max() > 1.01):
        raise ValueError(f"float videos must lie in [-1, 1], got [{float(v.min()):.3f}, {float(v.max()):.3f}]")
    return ((v + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).contiguous()


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [B, C, H, W] exactly as TF1 ``tf.image.resize_bilinear(align_corners=False)``.

    That legacy op maps output pixel i to source coordinate ``i * in / out`` (no half-pixel offset)
    and clamps at the border. It is the resize of the original FVD code (before I3D) and of the
    TF FID Inception graph (before pool_3), which is why both networks here use it.
    """
    out_h, out_w = size
    b, c, in_h, in_w = x.shape
    if (in_h, in_w) == (out_h, out_w):
        return x
    x = x.float()

    def axis(n_in: int, n_out: int):
        src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
        i0 = src.floor().clamp(max=n_in - 1).long()
        i1 = (i0 + 1).clamp(max=n_in - 1)
        frac = (src - i0.double()).float()
        return i0, i1, frac

    y0, y1, fy = axis(in_h, out_h)
    x0, x1, fx = axis(in_w, out_w)
    top = x.index_select(2, y0)
    bot = x.index_select(2, y1)
    rows = top + (bot - top) * fy.view(1, 1, -1, 1)
    left = rows.index_select(3, x0)
    right = rows.index_select(3, x1)
    return left + (right - left) * fx.view(1, 1, 1, -1)


def frames_of(videos_uint8: torch.Tensor, per_video: int) -> torch.Tensor:
    """Pick ``per_video`` frames from each video [N,T,H,W,3] -> [N*per_video, H, W, 3].

    The frame indices are evenly spaced over the clip (first, ..., last) when ``per_video`` > 1 and
    the middle frame when it is 1, so the choice is deterministic and the same for real and fake.
    """
    n, t = videos_uint8.shape[:2]
    k = int(per_video)
    if not 1 <= k <= t:
        raise ValueError(f"cannot take {per_video} frames per video from {t}-frame clips")
    if k == 1:
        idx = torch.tensor([t // 2])
    else:
        idx = torch.linspace(0, t - 1, k).round().long()
    return videos_uint8[:, idx].reshape(n * k, *videos_uint8.shape[2:])
