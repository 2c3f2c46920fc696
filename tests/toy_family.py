"""A fourth, toy system: what adding a family takes (this module + one `register` call).

A linear video autoencoder with EncGAN3's wire contract: z_a, z_m (+ one-hot label) → video
through one Linear layer; the encoder maps a video to the means and log-variances of z_a, z_m;
one adversarial-free training step (reconstruction + decoding of prior noise towards the batch
mean). Nothing else in the tree knows it exists. tests/conftest.py exports it (the real export
code path, template model.py and generated configs) as the repository the serving and client
tests serve.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from train.families import Family
from train.recipes import RecipeOptions


@dataclass
class ToyConfig:
    z_a_dim: int = 6
    z_m_dim: int = 5
    resolution: int = 8
    frames: int = 4
    num_classes: int = 0
    encoder: bool = True


class ToyGenerator(nn.Module):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.shape = (3, cfg.frames, cfg.resolution, cfg.resolution)
        self.fc = nn.Linear(cfg.z_a_dim + cfg.z_m_dim + cfg.num_classes, 3 * cfg.frames * cfg.resolution ** 2)

    def forward(self, z_a, z_m, label=None):
        z = torch.cat([z_a, z_m] + ([label] if label is not None else []), dim=1)
        return torch.tanh(self.fc(z)).view(-1, *self.shape)


class ToyEncoder(nn.Module):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.sizes = (cfg.z_a_dim, cfg.z_a_dim, cfg.z_m_dim, cfg.z_m_dim)
        self.fc = nn.Linear(3 * cfg.frames * cfg.resolution ** 2, 2 * (cfg.z_a_dim + cfg.z_m_dim))

    def forward(self, video):
        return tuple(torch.split(self.fc(video.flatten(1)), self.sizes, dim=1))


def build_parts(cfg: ToyConfig) -> dict[str, nn.Module]:
    return {"generator": ToyGenerator(cfg), **({"encoder": ToyEncoder(cfg)} if cfg.encoder else {})}


def make_optimizers(nets, options: RecipeOptions):
    params = [p for m in nets.values() for p in m.parameters()]
    return {"all": torch.optim.Adam(params, lr=options.lr, betas=options.betas)}


def train_step(nets, optimizers, real, onehot, gen, cfg, options) -> dict[str, float]:
    G, E = nets["generator"], nets["encoder"]
    z_a, _, z_m, _ = E(real)
    loss_rec = (G(z_a, z_m, onehot) - real).pow(2).mean()
    prior = G(torch.randn(real.shape[0], cfg.z_a_dim, generator=gen), torch.randn(real.shape[0], cfg.z_m_dim, generator=gen),
              onehot)
    loss_prior = (prior.mean(0) - real.mean(0)).pow(2).mean()
    optimizers["all"].zero_grad(set_to_none=True)
    (loss_rec + loss_prior).backward()
    optimizers["all"].step()
    return {"rec": loss_rec.item(), "prior": loss_prior.item()}


ENCODE_NAMES = ("z_a_mean", "z_a_logvar", "z_m_mean", "z_m_logvar")


def encode(model, video):
    return dict(zip(ENCODE_NAMES, model.encoder(video)))


def decode(model, **latents):
    return model.generator(latents["z_a"], latents["z_m"], latents.get("label"))


TOY = Family(
    name="toy", config=ToyConfig,
    presets={"paper64": {}, "paper128": {"resolution": 16}, "tiny": {}},
    build_parts=build_parts, make_optimizers=make_optimizers, train_step=train_step,
    sample=lambda model, z_a, z_m, label=None: model.generator(z_a, z_m, label),
    encode=encode, decode=decode,
    encode_names=ENCODE_NAMES, decode_names=("z_a", "z_m"),
    prior_latents=lambda model, z_a, z_m: {"z_a": z_a, "z_m": z_m},
    reconstruct_map={"z_a_mean": "z_a", "z_m_mean": "z_m"}, reconstruct_note="toy decodes the means",
    can_encode=lambda config: config.encoder,
)
