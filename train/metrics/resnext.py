"""The papers' own video-FID network: 3D ResNeXt-101 (Hara et al., Kinetics-400), local weights only.

G3AN's ``evaluation/fid.py`` (and AVLAE, which says it follows G3AN) compute FID on the 2048-d
output of the final average pool of Hara et al.'s ``resnext-101-kinetics.pth``: bottleneck blocks
with cardinality 32, layers [3, 4, 23, 3], shortcut type B, sample_duration 16, sample_size 112.
Those weights are in no package and the project cannot download them, so this module only builds
the architecture and loads a file the user already has (``--resnext-weights PATH`` or the
environment variable ``VIDEOGAN_RESNEXT_WEIGHTS``). Without it, ``load_resnext`` raises
``WeightsError`` with a message saying so.

Input protocol (G3AN): 16 frames (the clip's centre 16 when longer), resized to 112x112, values
kept in 0..255 minus the per-channel mean (114.7748, 107.7354, 99.4750), std 1.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .i3d import WeightsError, sha256_of
from .video import to_uint8_nthwc

RESNEXT_ENV = "VIDEOGAN_RESNEXT_WEIGHTS"
RESNEXT_MEAN = (114.7748, 107.7354, 99.4750)
RESNEXT_SIZE = 112
RESNEXT_FRAMES = 16
FEATURE_DIM = 2048

MISSING_MESSAGE = (
    "the papers' video-FID network (3D ResNeXt-101, Hara et al., Kinetics-400: "
    "'resnext-101-kinetics.pth') ships in no package and cannot be downloaded here. "
    "Pass a local copy with --resnext-weights PATH or set " + RESNEXT_ENV + "=PATH; "
    "until then only FVD (I3D), frame FID (InceptionV3) and IS are computed."
)


class Bottleneck(nn.Module):
    expansion = 2

    def __init__(self, inplanes: int, planes: int, cardinality: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        mid = cardinality * (planes // 32)
        self.conv1 = nn.Conv3d(inplanes, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid)
        self.conv2 = nn.Conv3d(mid, mid, 3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm3d(mid)
        self.conv3 = nn.Conv3d(mid, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = self.downsample(x) if self.downsample is not None else x
        return F.relu(out + residual)


class ResNeXt3D(nn.Module):
    """Hara et al.'s 3D ResNeXt (shortcut B). ``forward`` returns the pooled features [N, 2048]."""

    def __init__(self, layers=(3, 4, 23, 3), cardinality: int = 32, num_classes: int = 400,
                 sample_size: int = RESNEXT_SIZE, sample_duration: int = RESNEXT_FRAMES):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv3d(3, 64, 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(128, layers[0], cardinality, 1)
        self.layer2 = self._make_layer(256, layers[1], cardinality, 2)
        self.layer3 = self._make_layer(512, layers[2], cardinality, 2)
        self.layer4 = self._make_layer(1024, layers[3], cardinality, 2)
        self.pool_size = (math.ceil(sample_duration / 16), math.ceil(sample_size / 32), math.ceil(sample_size / 32))
        self.fc = nn.Linear(cardinality * 32 * Bottleneck.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, cardinality: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm3d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, cardinality, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, cardinality) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        # G3AN: AvgPool3d((1, 4, 4), stride 1), then adaptive-average to 1x1x1 if anything is left.
        if all(s >= k for s, k in zip(x.shape[2:], self.pool_size)):
            x = F.avg_pool3d(x, self.pool_size, stride=1)
        return x.flatten(2).mean(-1)


def resnext101(**kw) -> ResNeXt3D:
    return ResNeXt3D((3, 4, 23, 3), **kw)


def resnext_weights_path(path: str | os.PathLike | None = None) -> Path:
    """The local weights file, from the argument or $VIDEOGAN_RESNEXT_WEIGHTS; WeightsError if none."""
    p = path or os.environ.get(RESNEXT_ENV)
    if not p:
        raise WeightsError(MISSING_MESSAGE)
    p = Path(p).expanduser()
    if not p.is_file():
        raise WeightsError(f"ResNeXt-101 weights file {p} does not exist. " + MISSING_MESSAGE)
    return p


def load_resnext(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                 model: ResNeXt3D | None = None) -> tuple[ResNeXt3D, str]:
    """Load Hara et al.'s checkpoint (``{'state_dict': ...}`` with DataParallel 'module.' prefixes,
    or a bare state dict). Returns (model in eval mode, the file's sha256)."""
    p = resnext_weights_path(path)
    sha = sha256_of(p)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure is reported the same way
        raise WeightsError(f"cannot read ResNeXt-101 weights {p}: {e}") from e
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise WeightsError(f"{p} holds no state dict")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    model = model if model is not None else resnext101()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    unexpected = [k for k in unexpected if not k.startswith("fc.")]
    if missing or unexpected:
        raise WeightsError(f"{p} does not match a 3D ResNeXt-101 (cardinality 32, shortcut B): "
                           f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                           f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    return model.eval().requires_grad_(False).to(device), sha


def preprocess(videos, size: int = RESNEXT_SIZE, frames: int = RESNEXT_FRAMES) -> torch.Tensor:
    """Any accepted video batch -> float [N, 3, 16, 112, 112], 0..255 minus the Kinetics mean."""
    v = to_uint8_nthwc(videos)
    n, t, h, w, _ = v.shape
    if t > frames:  # temporal centre crop
        s = (t - frames) // 2
        v = v[:, s:s + frames]
        t = frames
    x = v.permute(0, 1, 4, 2, 3).reshape(n * t, 3, h, w).float()
    if (h, w) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x - torch.tensor(RESNEXT_MEAN).view(1, 3, 1, 1)
    return x.reshape(n, t, 3, size, size).permute(0, 2, 1, 3, 4).contiguous()
