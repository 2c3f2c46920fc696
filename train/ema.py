"""Exponential moving average of the weights: the networks that are sampled, evaluated and exported.

None of the three papers mentions it; it is the field's standard for GAN evaluation (Karras et
al. 2018, ProGAN §A.1; Brock et al. 2019, BigGAN §4; Yazıcı et al. 2019, "The unusual
effectiveness of averaging in GAN training"). A GAN's generator oscillates around the
equilibrium step by step; the average sits closer to it, so samples are steadier and usually
better, at no cost to training (the average never feeds back into it). `--ema 0` turns it off.

The average covers every parameter of the system (the discriminators' average is never used but
costs one cheap lerp); buffers (BatchNorm running statistics, spectral-norm singular vectors)
are copied from the live networks. The decay ramps up as min(decay, (1 + n) / (10 + n)) over
the n steps since averaging began, so an early average is not dominated by the initial weights.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """An eval-mode copy of a model whose parameters follow the live ones exponentially."""

    def __init__(self, model: nn.Module, decay: float, start_step: int):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight-average decay must be in (0, 1), got {decay}")
        self.decay, self.start_step = decay, start_step
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def beta(self, step: int) -> float:
        n = max(0, step - self.start_step)
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, live: nn.Module, step: int) -> None:
        """After optimizer step `step` (1-based count of steps done)."""
        averaged = [p for p in self.model.parameters()]
        current = [p.detach() for p in live.parameters()]
        torch._foreach_lerp_(averaged, current, 1.0 - self.beta(step))
        for mine, theirs in zip(self.model.buffers(), live.buffers()):
            mine.copy_(theirs)

    def state(self) -> dict:
        """What a checkpoint keeps to continue the average exactly."""
        return {"weights": self.model.state_dict(), "decay": self.decay, "start_step": self.start_step}

    @classmethod
    def from_state(cls, model: nn.Module, state: dict) -> "WeightAverage":
        average = cls(model, state["decay"], state["start_step"])
        average.model.load_state_dict(state["weights"])
        return average
