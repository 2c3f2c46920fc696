"""AVLAE: Autoencoding Video Latents for Adversarial video generation (Kasaraneni, 2022).

Implements §4 (Fig. 1) and the sizes of §5.2:
  F_A, F_M    mapping MLPs z → w: 5 fully connected layers of width 128 with LeakyReLU(0.2) between
              them (none after the last: the paper says "between")
  G           a plain spatio-temporal generator of factorised (1+2)D transposed convolutions from
              concat(w_A, w_M) (256-d) to 16×128×128, each conv + BatchNorm + ReLU, widths
              16ch, 8ch, 4ch, 2ch, ch, ch/2 (ch = 64: ≈ 26 M parameters, "nearly the same" as
              G3AN's generator, which is what §5.3 asks of it)
  E_A         appearance encoder, one frame → w'_A (Conv2d k4 s2 trunk, then a k4 conv to 128)
  D_I         latent image discriminator: 3 fully connected layers on w'_A
  E_M         motion encoder: a FROZEN optical-flow estimator at 1/8 resolution (`flow.py`), then
              factorised (2+1)D convolutions over the T−1 flow fields → w'_M (128-d)
  D_V         the video's own (2+1)D conv features concatenated with E_M(x), then 3 FC layers
The losses are the paper's BCE/log losses (Eq. 7–10) and live in the training code.

Choices where the paper is silent (all switchable in `AVLAEConfig`): spectral norm on the
discriminator side (E_A, E_M*, D_V convs) as in G3AN; the hidden widths of D_I (128) and D_V
(512); `use_motion_encoder=False` gives the paper's ablation (iv), a D_V without E_M; E_A in the
exported encode graph reads frame `encode_frame` (0) where training samples a random frame.
ALAE's extras (equalised learning rate, β1 = 0, linear latent D) are not implemented; its R1
penalty is the training switch `--r1` (train/recipes.py).

`minibatch_std` (off by default: not in the paper) appends ProGAN's minibatch standard deviation
to D_I's input and to D_V's fully connected input, so both see how varied a batch is: with the
paper's recipe our Moving-MNIST runs drew one clip for every latent (QUALITY.md, session 14).

`mapping_init` (the paper only says "Initialize network parameters"): 'he' (default) initialises
F_A and F_M with He-normal weights for their LeakyReLU and zero biases, so w keeps z's scale
through the 5 layers; 'official' gives them the N(0, 0.02) of the public G3AN code like every
other network here. With 'official' each 128-wide layer scales its input by about 0.16, and
after 5 layers w varies with z by 1e-4 against a constant of 0.045 (the untouched default
biases): every latent draws the same video, and the trained runs that started so (QUALITY.md)
stayed collapsed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .flow import build_flow_estimator
from .layers import (image_conv_trunk, init_he_leaky, init_official, leaky_mlp, minibatch_std, sn,
                     transposed_video_conv, video_conv_2p1d_trunk)


MAPPING_INITS = ("he", "official")


@dataclass
class AVLAEConfig:
    z_a_dim: int = 128
    z_m_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 5
    channels: int = 64            # generator base width
    d_channels: int = 64          # E_A, E_M*, D_V base width
    resolution: int = 128         # the paper's; 64 gives a lighter variant
    frames: int = 16
    num_classes: int = 0          # unconditional only (the paper has no conditional AVLAE)
    latent_d_hidden: int = 128
    video_d_hidden: int = 512
    use_motion_encoder: bool = True
    flow: str = "horn-schunck"    # or raft-small / raft-large with raft_weights
    raft_weights: str | None = None
    flow_iterations: int = 20
    encode_frame: int = 0
    spectral_norm: bool = True
    mapping_init: str = "he"      # 'he' or 'official' (see the module docstring)
    minibatch_std: bool = False   # D_I and D_V see their batch's feature spread (ProGAN; not in the paper)

    def validate(self) -> None:
        if self.resolution not in (64, 128):
            raise ValueError(f"resolution must be 64 or 128, got {self.resolution}")
        if self.frames != 16:
            raise ValueError("the AVLAE generator makes 16 frames")
        if self.num_classes:
            raise ValueError("AVLAE is unconditional in its paper; num_classes must be 0")
        if self.mapping_init not in MAPPING_INITS:
            raise ValueError(f"mapping_init must be one of {MAPPING_INITS}, got {self.mapping_init!r}")


def _generator_widths(ch: int, resolution: int) -> list[int]:
    widths = [ch * 16, ch * 8, ch * 4, ch * 2, ch]
    return widths + [max(ch // 2, 1)] if resolution == 128 else widths


class MappingNetwork(nn.Module):
    """F_A or F_M: z → w, `layers` fully connected layers with LeakyReLU between them."""

    def __init__(self, z_dim: int, w_dim: int, layers: int, init: str = "he"):
        super().__init__()
        self.net = leaky_mlp([z_dim] + [w_dim] * layers)
        if init == "he":
            init_he_leaky(self)
        else:
            init_official(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class AVLAEGenerator(nn.Module):
    """G(w_A, w_M) → video [B, 3, 16, R, R] in [−1, 1]."""

    def __init__(self, cfg: AVLAEConfig):
        super().__init__()
        specs = [(4, 4, 1, 1, 0, 0), (4, 4, 2, 2, 1, 1), (4, 4, 2, 2, 1, 1)] + [(4, 1, 2, 1, 1, 0)] * 3
        cin, blocks = 2 * cfg.w_dim, []
        for spec, cout in zip(specs, _generator_widths(cfg.channels, cfg.resolution)):
            blocks.append(transposed_video_conv(cin, cout, *spec, mode="1p2d", spectral=cfg.spectral_norm))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Sequential(nn.Conv3d(cin, 3, (1, 3, 3), 1, (0, 1, 1)), nn.Tanh())
        init_official(self)

    def forward(self, w_a: torch.Tensor, w_m: torch.Tensor) -> torch.Tensor:
        w = torch.cat([w_a, w_m], dim=1)
        return self.to_rgb(self.blocks(w.reshape(*w.shape, 1, 1, 1)))


class AppearanceEncoder(nn.Module):
    """E_A: one frame [B, 3, R, R] → w'_A [B, w_dim]."""

    def __init__(self, cfg: AVLAEConfig):
        super().__init__()
        ch = cfg.d_channels
        widths = [ch, ch * 2, ch * 4, ch * 8] + ([ch * 8] if cfg.resolution == 128 else [])
        self.body = image_conv_trunk(3, widths, cfg.spectral_norm)
        self.head = sn(nn.Conv2d(widths[-1], cfg.w_dim, 4, 1, 0), cfg.spectral_norm)
        init_official(self)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(frame)).flatten(1)


class MotionEncoder(nn.Module):
    """E_M: clip → frozen flow at 1/8 → (2+1)D convs (E_M*) → w'_M [B, w_dim]."""

    def __init__(self, cfg: AVLAEConfig):
        super().__init__()
        self.flow = build_flow_estimator(cfg.flow, cfg.raft_weights,
                                         **({"iterations": cfg.flow_iterations} if cfg.flow == "horn-schunck" else {}))
        ch, layers, cin = cfg.d_channels, [], 2
        for cout in [ch, ch * 2, ch * 4]:  # each stage halves T−1 (15 → 8 → 4 → 2) and H, W
            layers += [sn(nn.Conv3d(cin, cout, (1, 3, 3), (1, 2, 2), (0, 1, 1)), cfg.spectral_norm),
                       nn.LeakyReLU(0.2, inplace=True),
                       sn(nn.Conv3d(cout, cout, (3, 1, 1), (2, 1, 1), (1, 0, 0)), cfg.spectral_norm),
                       nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        self.convs = nn.Sequential(*layers)
        side = cfg.resolution // 64
        self.head = sn(nn.Linear(cin * 2 * side * side, cfg.w_dim), cfg.spectral_norm)
        init_official(self)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(self.flow(video)).flatten(1))

    def trainable(self):
        """E_M*: every parameter but the flow estimator's (Algorithm 1, line 1)."""
        return [p for name, p in self.named_parameters() if not name.startswith("flow.")]


class LatentImageDiscriminator(nn.Module):
    """D_I: w'_A → logit, 3 fully connected layers."""

    def __init__(self, cfg: AVLAEConfig):
        super().__init__()
        h, self.minibatch_std = cfg.latent_d_hidden, cfg.minibatch_std
        self.net = leaky_mlp([cfg.w_dim + int(self.minibatch_std), h, h, 1])
        init_official(self)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.net(minibatch_std(w) if self.minibatch_std else w).squeeze(1)


class VideoLatentDiscriminator(nn.Module):
    """D_V: concat((2+1)D conv features of x, E_M(x)) → 3 fully connected layers → logit."""

    def __init__(self, cfg: AVLAEConfig):
        super().__init__()
        ch, extra = cfg.d_channels, cfg.resolution == 128
        widths = ([ch] if extra else []) + [ch, ch * 2, ch * 4, ch * 8]
        self.features = nn.Sequential(
            video_conv_2p1d_trunk(3, widths, spatial_only=int(extra), spectral=cfg.spectral_norm),
            sn(nn.Conv3d(ch * 8, ch * 8, (1, 4, 4), 1, 0), cfg.spectral_norm),  # → [8ch, 4, 1, 1]
            nn.LeakyReLU(0.2, inplace=True),
        )
        motion = cfg.w_dim if cfg.use_motion_encoder else 0
        h, self.minibatch_std = cfg.video_d_hidden, cfg.minibatch_std
        self.fc = leaky_mlp([ch * 8 * 4 + motion + int(self.minibatch_std), h, h, 1], spectral=cfg.spectral_norm)
        init_official(self)

    def forward(self, video: torch.Tensor, motion_code: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(video).flatten(1)
        if motion_code is not None:
            h = torch.cat([h, motion_code], dim=1)
        return self.fc(minibatch_std(h) if self.minibatch_std else h).squeeze(1)


def build_avlae_parts(cfg: AVLAEConfig) -> dict[str, nn.Module]:
    cfg.validate()
    parts = {
        "mapping_a": MappingNetwork(cfg.z_a_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_init),
        "mapping_m": MappingNetwork(cfg.z_m_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_init),
        "generator": AVLAEGenerator(cfg),
        "encoder_a": AppearanceEncoder(cfg),
        "d_image": LatentImageDiscriminator(cfg),
        "d_video": VideoLatentDiscriminator(cfg),
    }
    if cfg.use_motion_encoder:
        parts["encoder_m"] = MotionEncoder(cfg)
    return parts


def sample(model, z_a: torch.Tensor, z_m: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
    """z → w through the mapping networks → video (unconditional: `label` is ignored)."""
    return model.generator(model.mapping_a(z_a), model.mapping_m(z_m))


def encode(model, video: torch.Tensor) -> dict[str, torch.Tensor]:
    """Real clip → w'_A (of frame `encode_frame`) and w'_M."""
    if not model.config.use_motion_encoder:
        raise ValueError("this AVLAE was built without a motion encoder: it cannot encode")
    return {"w_a": model.encoder_a(video[:, :, model.config.encode_frame]), "w_m": model.encoder_m(video)}


def decode(model, **latents: torch.Tensor) -> torch.Tensor:
    return model.generator(latents["w_a"], latents["w_m"])
