"""G3AN: three-stream generator and two-stream discriminator (Wang et al., CVPR 2020).

Implements §3.1 (G3 modules with spatial G_S, temporal G_T and video G_V streams,
spatio-temporal fusion, factorised transposed convolutions, F-SA after G3_3) and §3.2
(image discriminator D_I on single frames, video discriminator D_V on clips), with the layer
sizes, initialisation and the F-SA reshape quirk of the public code
(papers/notes-g3an-official-code.md §1.1–1.2). paper64 has exactly the official trainable
parameter counts: generator 23,090,437 (22,925,955 without F-SA), D_V 8,347,009,
D_I 2,764,737.

Switches (G3AN §4.3, Tables 3–5; EncGAN3 Table 4 and §5):
  use_spatial / use_temporal  drop G_S and/or G_T: the fusion then skips the concat / the add,
                              so the next video stream takes ``out`` instead of ``2·out`` channels
  fsa_after                   None (no F-SA) or the G3 level 0…3 after which F-SA runs
  video_conv                  '1p2d' (paper), '2p1d' or '3d' transposed conv in G_V
  fsa_official_view_quirk     reproduce the released code's scrambled reshape (off by default)
  d_video                     '2p1d' (official code, default) or '3d' (the paper's 3D CNN, in the
                              ImaGINator layout of the same author)
  num_classes                 conditional generation (§4.3.2): a one-hot class vector joins z_m
  label_into_video            the paper feeds the label to G_T only (default); True also feeds it
                              to G_V's input (the layout whose parameter count the notes quote as
                              +4096·K)
  label_into_spatial          True also feeds the label to G_S's input (beside z_a). The paper's
                              labels are motions (facial expressions, actions), which G_T carries;
                              where the class is an appearance (Moving-MNIST's digit), G_T's
                              frame-constant per-channel bias cannot draw it: G_S and G_V can
  d_image_channels            base width of D_I alone (None: `d_channels`, as the official code, where
                              both discriminators share one width). D_I is where digit shapes are
                              judged; its FLOPs grow with width² × the frames it sees, so widening it
                              on the default 16 frames a step costs little (QUALITY.md has the timing)
  d_condition                 how the discriminators see the label: 'concat' (default: D_V gets
                              the tiled one-hot after its first layer, D_I none) or 'projection'
                              (projection discriminator, Miyato & Koyama 2018, on D_V and D_I:
                              logit + <embed(y), sum-pooled last features>)
  d_classifier                G3AN only: D_I also classifies every frame it sees (an auxiliary
                              classifier, AC-GAN, Odena et al. 2017; none of the papers has one):
                              the recipe adds its cross-entropy on real frames to D_I's loss and on
                              generated frames, against the requested label, to G's loss
  resolution                  64, or 128 with one more G3 module (EncGAN3 §5)

Conditional discriminators are our choice (the conditional code was never released): by default
D_V gets the one-hot tiled over (T, H, W) and concatenated after its first layer (ImaGINator),
D_I is unconditional, and the losses stay plain BCE; `d_condition='projection'` is the
alternative the class-conditional GAN literature settled on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import (FactorizedSelfAttention, conv_lrelu, image_conv_trunk, init_official, sn,
                     transposed_video_conv, upconv_bn_relu, video_conv_2p1d_convs, VIDEO_CONVS)


D_CONDITIONS = ("concat", "projection")


@dataclass
class G3ANConfig:
    z_a_dim: int = 128
    z_m_dim: int = 10
    channels: int = 64             # base width "ch" of the official code
    d_channels: int = 64           # base width of both discriminators
    d_image_channels: int | None = None   # D_I's own base width (None: d_channels)
    resolution: int = 64           # 64 or 128
    frames: int = 16
    num_classes: int = 0
    use_spatial: bool = True
    use_temporal: bool = True
    fsa_after: int | None = 3
    video_conv: str = "1p2d"
    fsa_official_view_quirk: bool = False
    d_video: str = "2p1d"
    label_into_video: bool = False
    label_into_spatial: bool = False
    d_condition: str = "concat"
    d_classifier: bool = False
    spectral_norm: bool = True

    def validate(self) -> None:
        if self.resolution not in (64, 128):
            raise ValueError(f"resolution must be 64 or 128, got {self.resolution}")
        if self.frames != 16:
            raise ValueError("the G3AN generator makes 16 frames (z_m of time length 1)")
        if self.video_conv not in VIDEO_CONVS:
            raise ValueError(f"video_conv must be one of {VIDEO_CONVS}, got {self.video_conv!r}")
        if self.fsa_after is not None and self.fsa_after not in (0, 1, 2, 3):
            raise ValueError(f"fsa_after must be None or 0..3, got {self.fsa_after}")
        if self.d_video not in ("2p1d", "3d"):
            raise ValueError(f"d_video must be '2p1d' or '3d', got {self.d_video!r}")
        if self.d_image_channels is not None and self.d_image_channels < 1:
            raise ValueError(f"d_image_channels must be None or >= 1, got {self.d_image_channels}")
        if self.d_condition not in D_CONDITIONS:
            raise ValueError(f"d_condition must be one of {D_CONDITIONS}, got {self.d_condition!r}")
        if self.d_classifier and not self.num_classes:
            raise ValueError("d_classifier needs a conditional model (num_classes > 0)")


def _block_specs(ch: int, resolution: int) -> list[tuple]:
    """(ks, kt, ss, st, ps, pt, out) of each G3 module: notes §1.1 table (+1 module at 128)."""
    specs = [
        (4, 4, 1, 1, 0, 0, ch * 8),   # G3_0: 1 → 4×4×4
        (4, 4, 2, 2, 1, 1, ch * 8),   # G3_1: → 8×8×8
        (4, 4, 2, 2, 1, 1, ch * 4),   # G3_2: → 16×16×16
        (4, 1, 2, 1, 1, 0, ch * 2),   # G3_3: → 16×32×32
        (4, 1, 2, 1, 1, 0, ch),       # G3_4: → 16×64×64
    ]
    if resolution == 128:
        specs.append((4, 1, 2, 1, 1, 0, max(ch // 2, 1)))  # G3_5: → 16×128×128
    return specs


class G3Module(nn.Module):
    """One G3 level: spatial, temporal and video streams, then spatio-temporal fusion (Fig. 3)."""

    def __init__(self, in_s: int, in_v: int, in_t: int, out: int, spec: tuple, cfg: G3ANConfig):
        super().__init__()
        ks, kt, ss, st, ps, pt = spec
        self.video = transposed_video_conv(in_v, out, ks, kt, ss, st, ps, pt, cfg.video_conv, cfg.spectral_norm)
        self.spatial = nn.Sequential(*upconv_bn_relu(
            in_s, out, (1, ks, ks), (1, ss, ss), (0, ps, ps), cfg.spectral_norm)) if cfg.use_spatial else None
        self.temporal = nn.Sequential(*upconv_bn_relu(
            in_t, out, (kt, 1, 1), (st, 1, 1), (pt, 0, 0), cfg.spectral_norm)) if cfg.use_temporal else None

    def forward(self, h_s, h_v, h_t):
        h_v = self.video(h_v)
        if self.temporal is not None:
            h_t = self.temporal(h_t)
            h_v = h_v + h_t                       # temporal replication over H×W (broadcast) + add
        if self.spatial is not None:
            h_s = self.spatial(h_s)
            h_v = torch.cat([h_s.expand(-1, -1, h_v.shape[2], -1, -1), h_v], dim=1)  # spatial first
        return h_s, h_v, h_t


class G3ANGenerator(nn.Module):
    """G(z_a, z_m[, label]) → video [B, 3, 16, R, R] in [-1, 1]. Latents are 2-D ([B, D])."""

    def __init__(self, cfg: G3ANConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        k = cfg.num_classes
        in_s, in_t = cfg.z_a_dim + (k if cfg.label_into_spatial else 0), cfg.z_m_dim + k
        in_v = cfg.z_a_dim + cfg.z_m_dim + (k if cfg.label_into_video else 0)
        blocks, v_channels = [], []
        for spec in _block_specs(cfg.channels, cfg.resolution):
            out = spec[-1]
            blocks.append(G3Module(in_s, in_v, in_t, out, spec[:-1], cfg))
            in_s, in_t = out, out
            in_v = 2 * out if cfg.use_spatial else out
            v_channels.append(in_v)
        self.blocks = nn.ModuleList(blocks)
        self.fsa = None
        if cfg.fsa_after is not None:
            self.fsa = FactorizedSelfAttention(v_channels[cfg.fsa_after], cfg.spectral_norm,
                                               cfg.fsa_official_view_quirk)
        self.to_rgb = nn.Sequential(nn.Conv3d(in_v, 3, (1, 3, 3), 1, (0, 1, 1)), nn.Tanh())
        init_official(self)

    def forward(self, z_a: torch.Tensor, z_m: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        if (label is None) != (cfg.num_classes == 0):
            raise ValueError("a conditional G3AN needs a one-hot label, an unconditional one takes none")
        z_a = z_a.reshape(z_a.shape[0], -1, 1, 1, 1)
        z_m = z_m.reshape(z_m.shape[0], -1, 1, 1, 1)
        h_t = z_m if label is None else torch.cat([z_m, label.reshape(*label.shape, 1, 1, 1)], 1)
        h_v = torch.cat([z_a, h_t if cfg.label_into_video else z_m], dim=1)
        h_s = z_a if label is None or not cfg.label_into_spatial else torch.cat(
            [z_a, label.reshape(*label.shape, 1, 1, 1)], 1)
        for level, block in enumerate(self.blocks):
            h_s, h_v, h_t = block(h_s, h_v, h_t)
            if self.fsa is not None and level == cfg.fsa_after:
                h_v = self.fsa(h_v)
        return self.to_rgb(h_v)


class LabelProjection(nn.Module):
    """The class term of a projection discriminator: <embed(y), Σ_positions features>."""

    def __init__(self, num_classes: int, channels: int, spectral: bool = True):
        super().__init__()
        self.embed = sn(nn.Linear(num_classes, channels, bias=False), spectral)

    def forward(self, features: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return (self.embed(label) * features.flatten(2).sum(-1)).sum(1)


class ImageDiscriminator(nn.Module):
    """D_I: one frame [B, 3, R, R] (+ one-hot label with a projection head) → one logit per
    sample [B] (official code; the projection head is ours). With `classifier_classes`,
    `D_I(frame, classes=True)` gives class logits [B, K] instead, from its sum-pooled last
    features (as the projection head pools them; mean-pooled, the features of this spectrally
    normalised trunk are ~0.06 and the classifier learned about ten times slower: QUALITY.md,
    session 10) through a plain linear layer (no spectral norm: it is trained as a classifier, not
    as a critic). A keyword of forward, not a method of its own, so that the bf16 and DDP
    wrappers, which only pass forward calls through, reach it."""

    def __init__(self, ch: int = 64, resolution: int = 64, spectral: bool = True, num_classes: int = 0,
                 classifier_classes: int = 0):
        super().__init__()
        widths = [ch, ch * 2, ch * 4, ch * 8] + ([ch * 8] if resolution == 128 else [])
        self.body = image_conv_trunk(3, widths, spectral)
        self.head = sn(nn.Conv2d(widths[-1], 1, 4, 1, 0), spectral)
        self.projection = LabelProjection(num_classes, widths[-1], spectral) if num_classes else None
        self.classifier = nn.Linear(widths[-1], classifier_classes) if classifier_classes else None
        init_official(self)

    def forward(self, frame: torch.Tensor, label: torch.Tensor | None = None, classes: bool = False) -> torch.Tensor:
        h = self.body(frame)
        if classes:
            if self.classifier is None:
                raise ValueError("this D_I has no classifier (d_classifier=false)")
            return self.classifier(h.sum(dim=(2, 3)))
        logit = self.head(h).flatten(1).squeeze(1)
        if self.projection is not None and label is not None:
            logit = logit + self.projection(h, label)
        return logit


class VideoDiscriminator(nn.Module):
    """D_V: clip [B, 3, 16, R, R] (+ one-hot label) → one logit per sample [B].

    ``2p1d`` is the public code's (2+1)D network; ``3d`` is the paper's plain 3D CNN in the
    ImaGINator layout (k4 s2 p1 stages, head kernel (1,4,4) for 16 frames). A conditional D_V
    with ``condition='concat'`` tiles the label over (T, H, W) and concatenates it after the first
    layer; with ``'projection'`` it adds <embed(y), features> before the last layer's output.
    """

    def __init__(self, ch: int = 64, resolution: int = 64, kind: str = "2p1d", num_classes: int = 0,
                 spectral: bool = True, condition: str = "concat"):
        super().__init__()
        extra = resolution == 128
        convs: list[nn.Module] = []
        if kind == "2p1d":
            widths = ([ch] if extra else []) + [ch, ch * 2, ch * 4, ch * 8]
            convs = video_conv_2p1d_convs(3, widths, spatial_only=int(extra))
            cin = widths[-1]
            convs += [nn.Conv3d(cin, cin, (1, 4, 4), 1, 0), nn.Conv3d(cin, 1, (4, 1, 1), 1, 0)]
        elif kind == "3d":
            cin = 3
            if extra:
                convs.append(nn.Conv3d(3, ch, (1, 4, 4), (1, 2, 2), (0, 1, 1)))
                cin = ch
            for cout in [ch, ch * 2, ch * 4, ch * 8]:
                convs.append(nn.Conv3d(cin, cout, 4, 2, 1))
                cin = cout
            convs.append(nn.Conv3d(cin, 1, (1, 4, 4), 1, 0))
        else:
            raise ValueError(f"d_video must be '2p1d' or '3d', got {kind!r}")
        concat = num_classes and condition == "concat"
        if concat:
            first = convs[1]
            convs[1] = nn.Conv3d(first.in_channels + num_classes, first.out_channels, first.kernel_size,
                                 first.stride, first.padding)
        self.num_classes, self.concat = num_classes, bool(concat)
        self.first = nn.Sequential(*conv_lrelu(convs[0], spectral))
        rest: list[nn.Module] = []
        for conv in convs[1:-1]:
            rest += conv_lrelu(conv, spectral)
        rest.append(sn(convs[-1], spectral))
        self.rest = nn.Sequential(*rest)
        self.projection = (LabelProjection(num_classes, convs[-1].in_channels, spectral)
                           if num_classes and not concat else None)
        init_official(self)

    def forward(self, video: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        h = self.first(video)
        if self.num_classes and label is None:
            raise ValueError("a conditional D_V needs the one-hot label")
        if self.concat:
            h = torch.cat([h, label[:, :, None, None, None].expand(-1, -1, *h.shape[2:])], dim=1)
        if self.projection is None:
            return self.rest(h).flatten(1).squeeze(1)
        h = self.rest[:-1](h)
        return self.rest[-1](h).flatten(1).squeeze(1) + self.projection(h, label)


def build_g3an_parts(cfg: G3ANConfig) -> dict[str, nn.Module]:
    return {
        "generator": G3ANGenerator(cfg),
        "d_image": ImageDiscriminator(cfg.d_image_channels or cfg.d_channels, cfg.resolution, cfg.spectral_norm,
                                      cfg.num_classes if cfg.d_condition == "projection" else 0,
                                      cfg.num_classes if cfg.d_classifier else 0),
        "d_video": VideoDiscriminator(cfg.d_channels, cfg.resolution, cfg.d_video, cfg.num_classes,
                                      cfg.spectral_norm, cfg.d_condition),
    }


def sample(model, z_a: torch.Tensor, z_m: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
    """Prior latents (+ one-hot label) → video (G3AN and EncGAN3 share the generator)."""
    return model.generator(z_a, z_m, label)
