"""The three systems behind one small interface, and their presets.

`build_model(family, preset, **overrides)` returns a `VideoGAN` (an nn.Module holding every
network of that system as a named child) with:
  sample(z_a, z_m, label=None) → video [B, 3, T, H, W] in [−1, 1]   (what `<name>_sample` serves)
  encode(video) → dict of latents, decode(**latents) → video         (encgan3, avlae)
  param_counts() → trainable parameters per network
Presets: `paper64` (the papers' sizes at 64×64; AVLAE's paper size is 128), `paper128`
(G3AN/EncGAN3 with one more G3 module, EncGAN3 §5; AVLAE as in its paper) and `tiny` (the
same structure with narrow channels, for tests and CPU demos).
"""
from __future__ import annotations

from dataclasses import asdict, fields, replace

import torch
from torch import nn

from .avlae import AVLAEConfig, build_avlae_parts
from .encgan3 import EncGAN3Config, build_encgan3_parts
from .g3an import G3ANConfig, build_g3an_parts
from .layers import count_parameters, remove_spectral_norm

FAMILIES = ("g3an", "encgan3", "avlae")
PRESETS = ("paper64", "paper128", "tiny")

_CONFIGS = {"g3an": G3ANConfig, "encgan3": EncGAN3Config, "avlae": AVLAEConfig}
_PRESET_OVERRIDES = {
    "g3an": {"paper64": {}, "paper128": {"resolution": 128},
             "tiny": {"channels": 8, "d_channels": 8}},
    "encgan3": {"paper64": {}, "paper128": {"resolution": 128},
                "tiny": {"channels": 8, "d_channels": 8, "e_channels": 8, "motion_features": 16,
                         "motion_hidden": 64}},
    "avlae": {"paper64": {"resolution": 64}, "paper128": {"resolution": 128},
              "tiny": {"resolution": 64, "channels": 8, "d_channels": 8, "video_d_hidden": 64}},
}


class VideoGAN(nn.Module):
    """Every network of one system, plus the inference entry points export and metrics use."""

    def __init__(self, family: str, preset: str, config, parts: dict[str, nn.Module]):
        super().__init__()
        self.family, self.preset, self.config = family, preset, config
        for name, module in parts.items():
            self.add_module(name, module)

    # --- description -------------------------------------------------------------------
    @property
    def z_a_dim(self) -> int:
        return self.config.z_a_dim

    @property
    def z_m_dim(self) -> int:
        return self.config.z_m_dim

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def video_shape(self) -> list[int]:
        """[C, T, H, W] of one generated video."""
        r = self.config.resolution
        return [3, self.config.frames, r, r]

    def param_counts(self) -> dict[str, int]:
        return {name: count_parameters(module) for name, module in self.named_children()}

    def describe(self) -> dict:
        return {"family": self.family, "preset": self.preset, "config": asdict(self.config),
                "params": self.param_counts(), "video_shape": self.video_shape}

    # --- inference ------------------------------------------------------------------------
    def sample(self, z_a: torch.Tensor, z_m: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        if self.family == "avlae":
            return self.generator(self.mapping_a(z_a), self.mapping_m(z_m))
        return self.generator(z_a, z_m, label)

    def encode(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """Real clip [B, 3, T, H, W] in [−1, 1] → the family's latents (means and log-variances
        for EncGAN3's VAE, w'_A and w'_M for AVLAE)."""
        if self.family == "encgan3":
            names = ("z_a_mean", "z_a_logvar", "z_m_mean", "z_m_logvar")
            return dict(zip(names, self.encoder(video)))
        if self.family == "avlae":
            if not self.config.use_motion_encoder:
                raise ValueError("this AVLAE was built without a motion encoder: it cannot encode")
            return {"w_a": self.encoder_a(video[:, :, self.config.encode_frame]), "w_m": self.encoder_m(video)}
        raise ValueError("G3AN has no encoder")

    def decode(self, **latents: torch.Tensor) -> torch.Tensor:
        """Latents as `encode` names them (means for EncGAN3) → video."""
        if self.family == "encgan3":
            z_a = latents.get("z_a", latents.get("z_a_mean"))
            z_m = latents.get("z_m", latents.get("z_m_mean"))
            return self.generator(z_a, z_m, latents.get("label"))
        if self.family == "avlae":
            return self.generator(latents["w_a"], latents["w_m"])
        raise ValueError("G3AN has no decoder from encoded latents; use sample()")

    def for_inference(self) -> "VideoGAN":
        """Eval mode with spectral norm baked into plain weights (what export traces)."""
        self.eval()
        remove_spectral_norm(self)
        return self


def make_config(family: str, preset: str = "paper64", **overrides):
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {FAMILIES}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    cls = _CONFIGS[family]
    known = {f.name for f in fields(cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown {family} option(s) {sorted(unknown)}; known: {sorted(known)}")
    return replace(cls(), **{**_PRESET_OVERRIDES[family][preset], **overrides})


def build_from_config(family: str, preset: str, config) -> VideoGAN:
    builders = {"g3an": build_g3an_parts, "encgan3": build_encgan3_parts, "avlae": build_avlae_parts}
    return VideoGAN(family, preset, config, builders[family](config))


def build_model(family: str, preset: str = "paper64", **overrides) -> VideoGAN:
    return build_from_config(family, preset, make_config(family, preset, **overrides))


__all__ = ["FAMILIES", "PRESETS", "VideoGAN", "build_model", "build_from_config", "make_config"]
