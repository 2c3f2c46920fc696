"""EncGAN3: a two-stream variational encoder in front of the G3AN generator (Yang & Bors, ICIP 2022).

Implements §3 (Fig. 1): the content stream encodes the FIRST frame of the video to (μ, log σ²)
of the content latent z_x (G3AN's z_a, 128-d); the motion stream encodes all T−1 difference maps
between consecutive frames and compresses their features with fully connected layers (not an
LSTM, unlike TwoStream-VAN) to (μ, log σ²) of the motion latent z_v (G3AN's z_m, 10-d). Priors
are N(0, I); sampling uses the reparameterisation trick with the noise passed in, so no random
number is drawn inside a forward pass. The generator and the two discriminators are G3AN's
(`g3an.py`), with F-SA between G3_3 and G3_4 as in the paper.

The paper gives no layer sizes for the encoder; ours (documented choices, see `EncoderConfig`):
  content stream  Conv2d k4 s2 p1 ×4 (ch, 2ch, 4ch, 8ch; +8ch at 128) + BatchNorm + LeakyReLU(0.2),
                  then one Linear to 2·D_a (mean and log-variance)
  motion stream   one shared Conv2d trunk per difference map (ch/2, ch, 2ch, 4ch; +4ch at 128),
                  a k4 conv to a `motion_features`-d vector per map, the T−1 vectors concatenated,
                  then Linear → LeakyReLU → Linear to 2·D_m
Difference maps are x_{t+1} − x_t of frames in [−1, 1], so they lie in [−2, 2].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .g3an import G3ANConfig, build_g3an_parts
from .layers import image_conv_trunk, init_official


@dataclass
class EncGAN3Config(G3ANConfig):
    e_channels: int = 64          # base width of the encoder's conv trunks
    motion_features: int = 128    # per-difference-map feature size before the FC layers
    motion_hidden: int = 512      # width of the motion stream's hidden FC layer

    def validate(self) -> None:
        super().validate()
        if self.d_classifier:
            raise ValueError("d_classifier is a G3AN training term; EncGAN3's recipe does not use it")


class TwoStreamEncoder(nn.Module):
    """video [B, 3, T, R, R] in [−1, 1] → (z_a_mean, z_a_logvar, z_m_mean, z_m_logvar)."""

    def __init__(self, cfg: EncGAN3Config):
        super().__init__()
        ch, extra = cfg.e_channels, cfg.resolution == 128
        content_widths = [ch, ch * 2, ch * 4, ch * 8] + ([ch * 8] if extra else [])
        self.content = image_conv_trunk(3, content_widths, spectral=False, batch_norm=True)
        self.content_head = nn.Linear(content_widths[-1] * 16, 2 * cfg.z_a_dim)

        motion_widths = [max(ch // 2, 1), ch, ch * 2, ch * 4] + ([ch * 4] if extra else [])
        self.motion = nn.Sequential(
            image_conv_trunk(3, motion_widths, spectral=False, batch_norm=True),
            nn.Conv2d(motion_widths[-1], cfg.motion_features, 4, 1, 0),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.motion_head = nn.Sequential(
            nn.Linear((cfg.frames - 1) * cfg.motion_features, cfg.motion_hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(cfg.motion_hidden, 2 * cfg.z_m_dim),
        )
        init_official(self)

    def forward(self, video: torch.Tensor):
        b, c, t, h, w = video.shape
        z_a = self.content_head(self.content(video[:, :, 0]).flatten(1))
        diffs = video[:, :, 1:] - video[:, :, :-1]                     # [B, 3, T−1, H, W]
        maps = diffs.transpose(1, 2).reshape(b * (t - 1), c, h, w)
        features = self.motion(maps).reshape(b, -1)                    # T−1 features, concatenated
        z_m = self.motion_head(features)
        z_a_mean, z_a_logvar = z_a.chunk(2, dim=1)
        z_m_mean, z_m_logvar = z_m.chunk(2, dim=1)
        return z_a_mean, z_a_logvar, z_m_mean, z_m_logvar


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z = μ + σ·ε with ε given by the caller (drawn outside any exported graph)."""
    return mean + torch.exp(0.5 * logvar) * noise


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over latent dims, per sample."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def build_encgan3_parts(cfg: EncGAN3Config) -> dict[str, nn.Module]:
    parts = build_g3an_parts(cfg)
    parts["encoder"] = TwoStreamEncoder(cfg)
    return parts


ENCODE_NAMES = ("z_a_mean", "z_a_logvar", "z_m_mean", "z_m_logvar")


def encode(model, video: torch.Tensor) -> dict[str, torch.Tensor]:
    """Real clip → the means and log-variances of both streams."""
    return dict(zip(ENCODE_NAMES, model.encoder(video)))


def decode(model, **latents: torch.Tensor) -> torch.Tensor:
    """z_a, z_m (or the means `encode` names) (+ label) → video."""
    z_a = latents.get("z_a", latents.get("z_a_mean"))
    z_m = latents.get("z_m", latents.get("z_m_mean"))
    return model.generator(z_a, z_m, latents.get("label"))
