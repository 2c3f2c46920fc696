"""Small layers shared by the three systems (G3AN, EncGAN3, AVLAE).

- spectral norm on/off and its removal for export,
- the official G3AN initialisation (notes §1.1: N(0, 0.02) for Conv, N(1, 0.02) for BatchNorm
  weights, PyTorch's default for transposed convs),
- factorised transposed spatio-temporal convolutions ((1+2)D, (2+1)D, 3D; G3AN §3.1),
- factorised spatio-temporal self-attention F-SA (G3AN §3.1, Fig. 4),
- a leaky-ReLU MLP (AVLAE §4.1 mapping networks and latent discriminators).

Every module takes its random numbers as inputs: nothing is sampled inside a forward pass,
so each network traces to a deterministic ONNX graph.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


def sn(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Wraps a conv/linear in spectral normalisation (as every G3AN conv is) when enabled."""
    return _spectral_norm(module) if enabled else module


def remove_spectral_norm(model: nn.Module) -> nn.Module:
    """Bakes spectral normalisation into plain weights, in place (for inference and export).

    In eval mode the parametrisation reuses its stored singular vectors, so the baked weight
    equals what the network computed in eval mode; the result has no power iteration left.
    """
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def _weight_to_init(module: nn.Module) -> torch.Tensor:
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


@torch.no_grad()
def init_official(model: nn.Module) -> None:
    """Initialisation of the public G3AN code: N(0, 0.02) for Conv2d/Conv3d/Linear weights,
    N(1, 0.02) / 0 for BatchNorm; transposed convs keep PyTorch's default (they are not
    subclasses of ConvNd in PyTorch, which the official code relies on without saying so)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            _weight_to_init(module).normal_(0.0, 0.02)
        elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d, nn.BatchNorm1d)):
            module.weight.normal_(1.0, 0.02)
            module.bias.zero_()
    refresh_spectral_norm(model)


def init_he_leaky(model: nn.Module, slope: float = 0.2) -> None:
    """He initialisation for Linear layers followed by LeakyReLU(slope): N(0, 2 / ((1 + slope²) fan_in)),
    zero biases, so a stack of them keeps its input's scale (ALAE/StyleGAN reach the same scale with
    an equalised learning rate)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, a=slope, nonlinearity="leaky_relu")
            nn.init.zeros_(module.bias)


@torch.no_grad()
def refresh_spectral_norm(model: nn.Module, iterations: int = 50) -> None:
    """Re-estimates the singular vectors of every spectral norm for the current weights (needed
    after re-initialising them: the vectors stored at wrapping time belong to the old weights,
    and an eval-mode forward would divide by a wrong σ)."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            for param in module.parametrizations.weight:
                if hasattr(param, "_power_method"):
                    weight = param._reshape_weight_to_matrix(module.parametrizations.weight.original)
                    param._power_method(weight, iterations)


def count_parameters(module: nn.Module | None) -> int:
    """Trainable parameters (spectral-norm vectors and BN running stats are buffers)."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def upconv_bn_relu(cin: int, cout: int, kernel, stride, padding, spectral: bool = True) -> list[nn.Module]:
    """Spectral-normed ConvTranspose3d (bias on) → BatchNorm3d → ReLU, the G3AN unit."""
    return [
        sn(nn.ConvTranspose3d(cin, cout, kernel, stride, padding), spectral),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    ]


VIDEO_CONVS = ("1p2d", "2p1d", "3d")


def transposed_video_conv(cin: int, cout: int, ks: int, kt: int, ss: int, st: int, ps: int, pt: int,
                          mode: str = "1p2d", spectral: bool = True) -> nn.Sequential:
    """Transposed spatio-temporal convolution of the video stream (G3AN §3.1, Table 4).

    ``1p2d`` (paper default): temporal (kt,1,1) then spatial (1,ks,ks), each + BN + ReLU.
    ``2p1d``: spatial first, then temporal. ``3d``: one (kt,ks,ks) kernel.
    Channel widths follow the official code (no mid-channel expansion): the paper says the three
    variants were given "nearly the same" parameter counts, but not how, so we do not guess.
    """
    temporal = ((kt, 1, 1), (st, 1, 1), (pt, 0, 0))
    spatial = ((1, ks, ks), (1, ss, ss), (0, ps, ps))
    if mode == "1p2d":
        layers = upconv_bn_relu(cin, cout, *temporal, spectral) + upconv_bn_relu(cout, cout, *spatial, spectral)
    elif mode == "2p1d":
        layers = upconv_bn_relu(cin, cout, *spatial, spectral) + upconv_bn_relu(cout, cout, *temporal, spectral)
    elif mode == "3d":
        layers = upconv_bn_relu(cin, cout, (kt, ks, ks), (st, ss, ss), (pt, ps, ps), spectral)
    else:
        raise ValueError(f"video convolution must be one of {VIDEO_CONVS}, got {mode!r}")
    return nn.Sequential(*layers)


def pointwise(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A 1×1×1 Conv3d applied to channels-last x [..., C] as a matrix product (same weights,
    spectral norm included: reading `conv.weight` runs the parametrisation as conv(x) would)."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


class _SelfAttention1x1(nn.Module):
    """q, k (C → C/8) and v (C → C) 1×1×1 convs with a zero-initialised residual gain (SAGAN)."""

    def __init__(self, channels: int, spectral: bool = True):
        super().__init__()
        self.query = sn(nn.Conv3d(channels, channels // 8, 1), spectral)
        self.key = sn(nn.Conv3d(channels, channels // 8, 1), spectral)
        self.value = sn(nn.Conv3d(channels, channels, 1), spectral)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, L, C] (channels last) → gamma · softmax(q kᵀ) v + x, softmax over the L keys.
        SAGAN attention: no 1/√d scaling. (PyTorch's fused SDPA cannot take q/k narrower than v
        and was 3× slower on CPU with q, k zero-padded, so the plain form stays.)"""
        q, k, v = pointwise(self.query, x), pointwise(self.key, x), pointwise(self.value, x)
        return self.gamma * _attention(q, k, v) + x


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ) v over the last two axes (softmax over the keys); leading axes are batch."""
    return torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v


def _channels_last(x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W] → [B, T, H·W, C]
    b, c, t, h, w = x.shape
    # One 2-D transpose per video: the single-axis move ONNX Runtime has a fast kernel for
    # (a 5-D permute to [B, H, W, T, C] took 4.7x as long on the paper64 F-SA input).
    return x.reshape(b, c, t * h * w).transpose(1, 2).reshape(b, t, h * w, c)


def _from_channels_last(y: torch.Tensor, shape: torch.Size) -> torch.Tensor:  # the inverse
    b, c, t, h, w = shape
    return y.reshape(b, t * h * w, c).transpose(1, 2).reshape(b, c, t, h, w)


def _per_position(x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W] → [B·H·W, T, C]
    b, c, t, h, w = x.shape
    return x.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)


def _per_frame(x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W] → [B·T, H·W, C]
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)


class TemporalSelfAttention(_SelfAttention1x1):
    """T-SA: at each (b, h, w), attention over the T time steps (a T×T softmax)."""

    def __init__(self, channels: int, spectral: bool = True, official_view_quirk: bool = False):
        super().__init__(channels, spectral)
        self.official_view_quirk = official_view_quirk

    def attend_over_time(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, L, C] (channels last, L = H·W positions) → the same layout, each position
        attending over its T time steps. q/k/v are computed in x's layout and then viewed as
        [B, L, T, ·]: moving whole C-vectors, much cheaper than transposing x itself."""
        q, k, v = (pointwise(conv, x).transpose(1, 2) for conv in (self.query, self.key, self.value))
        return self.gamma * _attention(q, k, v).transpose(1, 2) + x              # [B, L, T, C] → [B, T, L, C]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if not self.official_view_quirk:
            return _from_channels_last(self.attend_over_time(_channels_last(x)), x.shape)
        # The released code reads each position's attended (T, C) block back as (C, T).
        q, k, v = (_per_position(conv(x)) for conv in (self.query, self.key, self.value))
        return self.gamma * _attention(q, k, v).reshape(b, h, w, c, t).permute(0, 3, 4, 1, 2) + x


class SpatialSelfAttention(_SelfAttention1x1):
    """S-SA: in each frame, attention over the H·W positions (an HW×HW softmax)."""

    def __init__(self, channels: int, spectral: bool = True, official_view_quirk: bool = False):
        super().__init__(channels, spectral)
        self.official_view_quirk = official_view_quirk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if not self.official_view_quirk:
            return _from_channels_last(self.attend(_channels_last(x).reshape(b * t, h * w, c)), x.shape)
        # The released code views the [B·T, HW, C] result as (B, H, W, C, T): it mixes
        # time, space and channels. Kept only to load and match the released weights.
        q, k, v = (_per_frame(conv(x)) for conv in (self.query, self.key, self.value))
        return self.gamma * _attention(q, k, v).reshape(b, h, w, c, t).permute(0, 3, 4, 1, 2) + x


class FactorizedSelfAttention(nn.Module):
    """F-SA (G3AN §3.1, Fig. 4): temporal-wise SA followed by spatial-wise SA.

    Both run on one channels-last copy of the features, [B, T, H·W, C], with q/k/v as matrix
    products: one layout change in and one out instead of one per q/k/v/output per attention
    (T-SA views its q/k/v per position, S-SA reads the layout as it is). Same function and
    parameters as running `spatial(temporal(x))`, which the official-view quirk still does."""

    def __init__(self, channels: int, spectral: bool = True, official_view_quirk: bool = False):
        super().__init__()
        self.temporal = TemporalSelfAttention(channels, spectral, official_view_quirk)
        self.spatial = SpatialSelfAttention(channels, spectral, official_view_quirk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal.official_view_quirk:
            return self.spatial(self.temporal(x))
        b, c, t, h, w = x.shape
        y = self.temporal.attend_over_time(_channels_last(x))                       # [B, T, H·W, C]
        z = self.spatial.attend(y.reshape(b * t, h * w, c))                         # [B·T, H·W, C]
        return _from_channels_last(z, x.shape)


def leaky_mlp(dims: list[int], last_activation: bool = False, slope: float = 0.2,
              spectral: bool = False) -> nn.Sequential:
    """Stacked Linear layers with LeakyReLU between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (din, dout) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(sn(nn.Linear(din, dout), spectral))
        if i < len(dims) - 2 or last_activation:
            layers.append(nn.LeakyReLU(slope, inplace=True))
    return nn.Sequential(*layers)


def minibatch_std(h: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """ProGAN's minibatch standard deviation (Karras et al. 2018, §3): h [B, F] with one column
    appended, the mean over features of the standard deviation over the batch. A discriminator with
    it sees how varied a batch is, so a generator that draws one clip for every latent is caught."""
    std = (h.float().var(dim=0, unbiased=False) + eps).sqrt().mean().to(h.dtype)
    return torch.cat([h, std.expand(h.shape[0], 1)], dim=1)


def conv_lrelu(conv: nn.Module, spectral: bool = True, slope: float = 0.2) -> list[nn.Module]:
    return [sn(conv, spectral), nn.LeakyReLU(slope, inplace=True)]


def image_conv_trunk(in_channels: int, widths: list[int], spectral: bool = True,
                     batch_norm: bool = False) -> nn.Sequential:
    """Conv2d k4 s2 p1 stages (each halves H and W), LeakyReLU(0.2), optional BatchNorm."""
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in widths:
        layers.append(sn(nn.Conv2d(cin, cout, 4, 2, 1), spectral))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        cin = cout
    return nn.Sequential(*layers)


def video_conv_2p1d_convs(in_channels: int, widths: list[int], spatial_only: int = 0) -> list[nn.Conv3d]:
    """The convolutions of the official G3AN video discriminator body: per stage a (1,4,4)
    s(1,2,2) conv then a (4,1,1) conv. ``spatial_only`` leading stages skip the temporal conv
    (used at 128×128 so that time still shrinks 16 → 4 over the four full stages)."""
    convs: list[nn.Conv3d] = []
    cin = in_channels
    for i, cout in enumerate(widths):
        convs.append(nn.Conv3d(cin, cout, (1, 4, 4), (1, 2, 2), (0, 1, 1)))
        if i >= spatial_only:
            convs.append(nn.Conv3d(cout, cout, (4, 1, 1), 1, 0))
        cin = cout
    return convs


def video_conv_2p1d_trunk(in_channels: int, widths: list[int], spatial_only: int = 0,
                          spectral: bool = True) -> nn.Sequential:
    """`video_conv_2p1d_convs`, each conv + LeakyReLU(0.2)."""
    layers: list[nn.Module] = []
    for conv in video_conv_2p1d_convs(in_channels, widths, spatial_only):
        layers += conv_lrelu(conv, spectral)
    return nn.Sequential(*layers)
