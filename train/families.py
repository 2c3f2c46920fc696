"""The model families: one registry entry per system, looked up by train, export and bench.

A `Family` says everything the stages need to know about one system: its config dataclass and
presets, the builder of its networks, its optimizers and training iteration (train/recipes.py),
how its `VideoGAN` samples, encodes and decodes, the names of its encode/decode latents and how
the `reconstruct` ensemble wires encode's outputs into decode's inputs. Nothing outside this
module branches on a family's name.

Adding a system = one new module (config, networks, `build_parts`, a training step) and one
`register(Family(...))` call (tests/test_families.py does it with a toy family).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from train import recipes
from train.models import avlae, encgan3, g3an

from train.models import PRESETS


@dataclass(frozen=True)
class Family:
    """One system. The callables take the `VideoGAN` (`model`) or its config as their first argument."""

    name: str
    config: type                                   # the config dataclass (defaults = the paper64 preset)
    presets: Mapping[str, Mapping[str, Any]]       # preset → overrides of the config's defaults
    build_parts: Callable[[Any], dict]             # config → {network name: nn.Module}
    make_optimizers: Callable[[dict, Any], dict]   # (networks, RecipeOptions) → {name: optimizer}
    train_step: Callable[..., dict]                # one iteration, see train/recipes.py
    sample: Callable[..., torch.Tensor]            # (model, z_a, z_m, label) → video
    encode: Callable[..., dict] | None = None      # (model, video) → latents named `encode_names`
    decode: Callable[..., torch.Tensor] | None = None   # (model, **latents) → video
    encode_names: tuple[str, ...] = ()             # outputs of NAME_encode, in order
    decode_names: tuple[str, ...] = ()             # latent inputs of NAME_decode (+ label if conditional)
    # decode's latents from prior noise (what `sample` decodes): (model, z_a, z_m) → {decode name: tensor}
    prior_latents: Callable[..., dict] | None = None
    reconstruct_map: Mapping[str, str] = field(default_factory=dict)   # encode output → decode input
    reconstruct_note: str = ""
    conditional: bool = True                       # trains on the data's classes when it has them
    mode_seeking: bool = False                     # its train_step uses RecipeOptions.mode_seeking
    r1: bool = False                               # its train_step uses RecipeOptions.r1
    can_encode: Callable[[Any], bool] = lambda config: True   # config → whether it has an encoder

    def has_encoder(self, config) -> bool:
        return self.encode is not None and bool(self.can_encode(config))


_REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add (or replace) a family; returns it."""
    missing = set(PRESETS) - set(family.presets)
    if missing:
        raise ValueError(f"family {family.name!r} lacks the preset(s) {sorted(missing)}")
    if family.encode is not None and not (family.decode and family.encode_names and family.decode_names
                                          and family.reconstruct_map and family.prior_latents):
        raise ValueError(f"family {family.name!r} encodes: it needs decode, encode_names, decode_names, "
                         "prior_latents and reconstruct_map")
    _REGISTRY[family.name] = family
    return family


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def family_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get_family(name: str) -> Family:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; choose one of {family_names()}") from None


# --- the three papers' systems ------------------------------------------------------------------

register(Family(
    name="g3an", config=g3an.G3ANConfig,
    presets={"paper64": {}, "paper128": {"resolution": 128}, "tiny": {"channels": 8, "d_channels": 8}},
    build_parts=g3an.build_g3an_parts,
    make_optimizers=recipes.g3an_optimizers, train_step=recipes.g3an_step,
    sample=g3an.sample, mode_seeking=True,
))

register(Family(
    name="encgan3", config=encgan3.EncGAN3Config,
    presets={"paper64": {}, "paper128": {"resolution": 128},
             "tiny": {"channels": 8, "d_channels": 8, "e_channels": 8, "motion_features": 16,
                      "motion_hidden": 64}},
    build_parts=encgan3.build_encgan3_parts,
    make_optimizers=recipes.encgan3_optimizers, train_step=recipes.encgan3_step,
    sample=g3an.sample, encode=encgan3.encode, decode=encgan3.decode,
    encode_names=encgan3.ENCODE_NAMES, decode_names=("z_a", "z_m"),
    prior_latents=lambda model, z_a, z_m: {"z_a": z_a, "z_m": z_m},
    reconstruct_map={"z_a_mean": "z_a", "z_m_mean": "z_m"},
    reconstruct_note="encgan3 decodes the means z_a_mean, z_m_mean",
))

register(Family(
    name="avlae", config=avlae.AVLAEConfig,
    presets={"paper64": {"resolution": 64}, "paper128": {"resolution": 128},
             "tiny": {"resolution": 64, "channels": 8, "d_channels": 8, "video_d_hidden": 64}},
    build_parts=avlae.build_avlae_parts,
    make_optimizers=recipes.avlae_optimizers, train_step=recipes.avlae_step,
    sample=avlae.sample, encode=avlae.encode, decode=avlae.decode, mode_seeking=True, r1=True,
    encode_names=("w_a", "w_m"), decode_names=("w_a", "w_m"),
    # w from the mapping networks, so the decode graph's parity inputs are realistic w
    prior_latents=lambda model, z_a, z_m: {"w_a": model.mapping_a(z_a), "w_m": model.mapping_m(z_m)},
    reconstruct_map={"w_a": "w_a", "w_m": "w_m"},
    reconstruct_note="avlae decodes w_a, w_m",
    conditional=False, can_encode=lambda config: config.use_motion_encoder,
))
