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

from .layers import count_parameters, remove_spectral_norm

PRESETS = ("paper64", "paper128", "tiny")


def _family(name: str):
    """The registry entry (train/families.py imports the model modules, so it is imported late)."""
    from train.families import get_family
    return get_family(name)


def __getattr__(name: str):
    if name == "FAMILIES":  # the registered families' names, in registration order
        from train.families import family_names
        return family_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    @property
    def spec(self):
        """This system's registry entry (train/families.py)."""
        return _family(self.family)

    def sample(self, z_a: torch.Tensor, z_m: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return self.spec.sample(self, z_a, z_m, label)

    def encode(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """Real clip [B, 3, T, H, W] in [−1, 1] → the family's latents (means and log-variances
        for EncGAN3's VAE, w'_A and w'_M for AVLAE)."""
        if self.spec.encode is None:
            raise ValueError(f"{self.family} has no encoder")
        return self.spec.encode(self, video)

    def decode(self, **latents: torch.Tensor) -> torch.Tensor:
        """Latents as `encode` names them (means for EncGAN3) → video."""
        if self.spec.decode is None:
            raise ValueError(f"{self.family} has no decoder from encoded latents; use sample()")
        return self.spec.decode(self, **latents)

    def for_inference(self) -> "VideoGAN":
        """Eval mode with spectral norm baked into plain weights (what export traces)."""
        self.eval()
        remove_spectral_norm(self)
        return self


def make_config(family: str, preset: str = "paper64", **overrides):
    entry = _family(family)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    cls = entry.config
    known = {f.name for f in fields(cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown {family} option(s) {sorted(unknown)}; known: {sorted(known)}")
    return replace(cls(), **{**entry.presets[preset], **overrides})


def build_from_config(family: str, preset: str, config) -> VideoGAN:
    return VideoGAN(family, preset, config, _family(family).build_parts(config))


def build_model(family: str, preset: str = "paper64", **overrides) -> VideoGAN:
    return build_from_config(family, preset, make_config(family, preset, **overrides))


__all__ = ["FAMILIES", "PRESETS", "VideoGAN", "build_model", "build_from_config", "make_config"]
