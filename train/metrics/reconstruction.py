"""Reconstruction quality of encode → decode: PSNR and SSIM against two baselines.

Both clips are quantized to 8 bits first (as a saved or served video is), then:
  PSNR  10·log10(255² / MSE) over the whole clip (all frames, pixels and channels), per clip;
  SSIM  Wang et al. 2004 on the grey (RGB mean) frames: 11×11 Gaussian window, σ = 1.5,
        K1 = 0.01, K2 = 0.03, data range 255, valid positions only; mean over frames, per clip.
The baselines say what a reconstruction must beat to carry information about its input:
  black       an all-black clip (Moving-MNIST's background),
  mean_frame  the input clip's own mean frame repeated over time (knows where the digits
              spent the clip, not when).
Figures are means over the clips.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .video import to_uint8_nthwc

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def psnr(a, b) -> torch.Tensor:
    """Per-clip PSNR in dB of two video batches (any accepted form), 8-bit range."""
    x, y = to_uint8_nthwc(a).double(), to_uint8_nthwc(b).double()
    mse = (x - y).pow(2).flatten(1).mean(1)
    return torch.where(mse > 0, 10 * torch.log10(255.0 ** 2 / mse.clamp(min=1e-12)),
                       torch.full_like(mse, math.inf))


def _gaussian_window() -> torch.Tensor:
    r = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    g = torch.exp(-r ** 2 / (2 * SSIM_SIGMA ** 2))
    g /= g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a, b) -> torch.Tensor:
    """Per-clip SSIM (mean over frames) of two video batches, on grey frames."""
    x, y = (to_uint8_nthwc(v).double().mean(-1) for v in (a, b))       # [N, T, H, W]
    n, t, h, w = x.shape
    x, y = x.reshape(n * t, 1, h, w), y.reshape(n * t, 1, h, w)
    win = _gaussian_window()
    mu_x, mu_y = F.conv2d(x, win), F.conv2d(y, win)
    sxx = F.conv2d(x * x, win) - mu_x ** 2
    syy = F.conv2d(y * y, win) - mu_y ** 2
    sxy = F.conv2d(x * y, win) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * 255) ** 2, (SSIM_K2 * 255) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1).reshape(n, t).mean(1)


def baselines(real) -> dict[str, torch.Tensor]:
    """The two baseline 'reconstructions' of a batch of real clips, as uint8 [N, T, H, W, 3]."""
    u8 = to_uint8_nthwc(real)
    mean_frame = u8.double().mean(1, keepdim=True).round().to(torch.uint8).expand_as(u8)
    return {"black": torch.zeros_like(u8), "mean_frame": mean_frame.contiguous()}


def reconstruction_report(real, reconstruction) -> dict:
    """PSNR/SSIM of the reconstructions and of both baselines, and the margin over the better one."""
    out = {"clips": int(to_uint8_nthwc(real).shape[0]),
           "reconstruction": {"psnr_db": float(psnr(real, reconstruction).mean()),
                              "ssim": float(ssim(real, reconstruction).mean())}}
    for name, base in baselines(real).items():
        out[name] = {"psnr_db": float(psnr(real, base).mean()), "ssim": float(ssim(real, base).mean())}
    best = max(out["black"]["psnr_db"], out["mean_frame"]["psnr_db"])
    out["psnr_margin_db"] = out["reconstruction"]["psnr_db"] - best
    return {k: (round(v, 4) if isinstance(v, float) else
                {kk: round(vv, 4) for kk, vv in v.items()} if isinstance(v, dict) else v)
            for k, v in out.items()}
