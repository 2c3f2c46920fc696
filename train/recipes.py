"""The three papers' training recipes: optimizers and one training iteration each.

G3AN (§3.3 and the public code, notes §1.3): BCE with logits, targets exactly 1/0, one fake batch
per iteration; D_V then D_I are updated (each its own Adam), then G with the non-saturating loss
BCE(D_V(G(z)), 1) + BCE(D_I(G(z)_t), 1). D_I sees ONE random frame index per batch, drawn
independently for real and fake, as the code does (`d_image_frames="batch"`, the default). The
paper does not say how t is drawn; `d_image_frames="clip"` (our switch) draws one index per clip,
so every batch shows D_I about ten of the 16 frame positions instead of one: with one index per
batch a generator can let a single frame position degrade for many steps at a time (our tiny
Moving-MNIST G3AN learned to blank frame 1 that way; QUALITY.md). `"all"` shows D_I every frame
of every clip (B·T frames, each with its clip's label; the BCE is their mean, so the weight of
the image term does not change): 16 times the frames D_I learns appearance from, for a D_I that
costs a few per cent of a tiny G3AN step. All three families use the switch.

EncGAN3 (§4, Eq. 1–4): per iteration D (Eq. 3 and 4: real vs. reconstruction from encoded latents
vs. generation from prior noise), then the encoder (Eq. 1: reconstruction of the first frame and
of every frame + KL of both streams to N(0, I)), then G re-run on the SAME videos with the updated
encoder and the same noise (Eq. 2: non-saturating adversarial terms for reconstructions and prior
samples, on frames (D_I) and videos (D_V), plus the reconstruction terms; the paper weighs the two
sides of Eq. 2 equally, `adv_weight` scales the adversarial side). The paper writes ‖·‖
for the error of a whole frame without naming the norm: we use its L1 norm (`recon="l1"`; "l2" is
the squared L2 norm), i.e. the error SUMMED over the frame's pixels and channels, summed over the
frames as Eq. 1 sums them, and the KL summed over latent dimensions — so both sides of Eq. 1 are
sums, as in a VAE's evidence bound. `recon_reduction="mean"` (per-pixel mean per frame, what this
project used first) makes the reconstruction ~10⁴ times weaker against the KL: the posterior then
collapsed to the prior (KL 0.47 nats over 138 dimensions after 200 steps) and encoded nothing.
Both terms are averaged over the batch.

AVLAE (Algorithm 1, K1 = K2 = 1): step I updates (E_M*, D_V) and (E_A, D_I) with the adversarial
losses of Eq. 8–9; step II updates F_A, F_M, G (non-saturating form of the same losses); step III
minimises Eq. 10, K1‖F_M(z_M) − E_M(x̂)‖² + K2‖F_A(z_A) − E_A(x̂_t)‖² over E_A, E_M*, G with the
mapped codes as fixed targets. Each step has its own Adam (the algorithm's three ADAM lines).
The flow estimator inside E_M is never in an optimizer.
`r1` (0 = off, the paper) adds γ/2 · R1 (Mescheder et al. 2018; ALAE trains with it) to both of step
I's discriminator losses: the squared norm of the gradient of D_V(x, E_M(x)) with respect to the real
clip, and of D_I(E_A(x_t)) with respect to the real frame. `mode_seeking` works for AVLAE as for
G3AN (below), on the pairs of step II's batch with z = (z_A, z_M). Measured on Moving-MNIST
(QUALITY.md, session 14): with the paper's recipe the generator collapses onto one clip for every
latent within 200–500 steps (with or without the latent reconstruction, the mapping networks or
E_M); R1 at γ = 1 and 10 did not prevent it, the mode-seeking term did.

A family's training iteration is `step(nets, optimizers, real, onehot, gen, cfg, options)`: the
networks by name, the optimizers by name (what its `*_optimizers` returned), a batch of real clips
[B, 3, T, H, W] in [−1, 1], their one-hot labels (or None), the step's torch.Generator, the model
config and the `RecipeOptions`; it returns every loss of the iteration as floats. The families'
registry (train/families.py) names each family's optimizers and step.

Every random number (latents, frame indices, reparameterisation noise) comes from the generator
passed in, which the trainer seeds from (seed, step, rank): a resumed run draws exactly what an
uninterrupted one would.

Conditional models: generated videos take the labels of the real batch, so real and fake class
frequencies match; the losses stay plain BCE (an auxiliary classifier only with `d_classifier`,
below). Both discriminators are called with the label; each uses it as its `d_condition` says (D_I
ignores it unless projection).
`mismatched_labels` (off by default; none of the papers has it) adds the matching-aware negative of
Reed et al. 2016 (GAN-CLS): real clips shown with a wrong label (uniform over the other classes)
count as fake for each discriminator that sees the label. A discriminator that already tells real
from fake by realism alone has no other reason to learn the label (measured on the G3AN demo run:
the logits of real clips with the right and a wrong label differed by 0.1-0.3), and a generator
then has no reason to follow it.

`mode_seeking` (G3AN; 0 = off, the papers' recipe) adds the mode-seeking term of MSGAN (Mao et al.,
CVPR 2019, Eq. 3, its official weight 1) to G's loss: λ / (mean|G(z1) − G(z2)| / mean|z1 − z2| + 1e-5)
over pairs of generated clips that share their label and differ in (z_a, z_m). The fake batch's
labels are then the first half of the real batch's labels, twice (clip i and i + B/2 are a pair),
which keeps their distribution the data's. Conditional GANs tend to ignore their noise (measured
here: every conditional 16-wide G3AN run had a z_a influence of 1–4 grey levels against 24 for the
same run unconditional, and collapsed onto a few clips); the term penalises exactly that. Measured
at λ = 1 (QUALITY.md, session 9): it kept the latents in use but FVD stalled far above the
unconditional run's, and it pays for background differences too (grey haze on Moving-MNIST).

A G3AN with `d_classifier` (an auxiliary classifier on D_I, AC-GAN, Odena et al. 2017; none of the
papers has one) adds cross-entropy terms with weight 1, AC-GAN's: D_I learns to name the class of
real frames (the frames `d_image_frames` picks, each with its clip's label), and G is trained so
that D_I names the requested class in its frames. By default D_I is not trained on generated
frames' classes (it would learn to read the generator's mistakes as the requested class; the
real-only variant of later AC-GAN work); `classify_fakes` adds that term, as the original AC-GAN
does (D_I's class loss on generated frames against their requested labels, weight 1): D_I then
reads the requested class in whatever G draws, and G's class gradient stops pointing at an
out-of-distribution classifier (measured without it: D_I's class loss on real frames fell to 1.35,
G's stayed at 2.3–2.6, above chance; QUALITY.md, session 10). On Moving-MNIST the label is the first digit's class and frames show two
digits, so D_I's best answer on a real frame splits between the two; G then gains from drawing the
requested digit clearly. This is the direct route from the label to G that projection
discriminators left unused here (every conditional G3AN run ignored its label; QUALITY.md). The
logged `d_image` includes `d_class`; `g_class` is logged beside G's adversarial terms.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .models.encgan3 import kl_to_standard_normal, reparameterize


@dataclass
class RecipeOptions:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    recon: str = "l1"            # EncGAN3 reconstruction norm
    recon_reduction: str = "sum"  # EncGAN3: per-frame error summed over pixels (the norm) or "mean"
    kl_weight: float = 1.0       # EncGAN3
    k1: float = 1.0              # AVLAE motion latent reconstruction weight
    k2: float = 1.0              # AVLAE appearance latent reconstruction weight
    adv_weight: float = 1.0      # EncGAN3: weight of Eq. 2's adversarial terms (paper: 1)
    d_image_frames: str = "batch"  # D_I's frames: one index per batch (official code), per clip, or all
    mismatched_labels: bool = False  # conditional G3AN/EncGAN3: real clips with a wrong label count as fake
    mode_seeking: float = 0.0    # G3AN, AVLAE: weight of MSGAN's mode-seeking term (0 = off, the papers)
    classify_fakes: bool = False  # G3AN with d_classifier: D_I also learns generated frames' classes (AC-GAN)
    r1: float = 0.0              # AVLAE: weight γ of the R1 penalty on real inputs (0 = off, the paper)

    def __post_init__(self):
        for name in ("mode_seeking", "r1"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name, allowed in (("recon", RECON_NORMS), ("recon_reduction", RECON_REDUCTIONS),
                              ("d_image_frames", D_IMAGE_FRAMES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")


D_IMAGE_FRAMES = ("batch", "clip", "all")
RECON_NORMS = ("l1", "l2")
RECON_REDUCTIONS = ("sum", "mean")


def _adam(params, options: RecipeOptions) -> torch.optim.Adam:
    return torch.optim.Adam(list(params), lr=options.lr, betas=options.betas)


def _params(*modules: nn.Module):
    return [p for m in modules for p in m.parameters() if p.requires_grad]


def g3an_optimizers(nets: dict[str, nn.Module], options: RecipeOptions) -> dict[str, torch.optim.Optimizer]:
    return {"g": _adam(_params(nets["generator"]), options),
            "d_video": _adam(_params(nets["d_video"]), options),
            "d_image": _adam(_params(nets["d_image"]), options)}


def encgan3_optimizers(nets: dict[str, nn.Module], options: RecipeOptions) -> dict[str, torch.optim.Optimizer]:
    return {**g3an_optimizers(nets, options), "encoder": _adam(_params(nets["encoder"]), options)}


def avlae_optimizers(nets: dict[str, nn.Module], options: RecipeOptions) -> dict[str, torch.optim.Optimizer]:
    e_m = _params(nets["encoder_m"]) if "encoder_m" in nets else []   # flow is frozen: no params
    return {"video_d": _adam(e_m + _params(nets["d_video"]), options),
            "image_d": _adam(_params(nets["encoder_a"], nets["d_image"]), options),
            "generator": _adam(_params(nets["mapping_a"], nets["mapping_m"], nets["generator"]), options),
            "latent_ae": _adam(_params(nets["encoder_a"], nets["generator"]) + e_m, options)}


def make_optimizers(family: str, nets: dict[str, nn.Module], options: RecipeOptions) -> dict[str, torch.optim.Optimizer]:
    """The family's optimizers (its registry entry's `make_optimizers`)."""
    from train.families import get_family
    return get_family(family).make_optimizers(nets, options)


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _frames(video: torch.Tensor, gen: torch.Generator, options: RecipeOptions):
    """The frames D_I sees, [N, C, H, W], and the clip each came from, [N]: one random index for
    the whole batch (the official code's sampling, `d_image_frames="batch"`), one per clip
    ("clip"), or every frame of every clip ("all", N = B·T)."""
    b, t = video.shape[0], video.shape[2]
    clips = torch.arange(b, device=video.device)
    if options.d_image_frames == "batch":
        return video[:, :, int(torch.randint(t, (1,), generator=gen))], clips
    if options.d_image_frames == "clip":
        return video[clips, :, torch.randint(t, (b,), generator=gen).to(video.device)], clips
    return video.transpose(1, 2).flatten(0, 1), clips.repeat_interleave(t)


def _image_logits(DI, video: torch.Tensor, onehot, gen: torch.Generator, options: RecipeOptions) -> torch.Tensor:
    """D_I on the frames `_frames` picks, each with its clip's label."""
    frames, clips = _frames(video, gen, options)
    return DI(frames, onehot[clips] if onehot is not None else None)


def wrong_labels(onehot: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One-hot rows of a class other than each row's own, uniform over the other classes."""
    k = onehot.shape[1]
    shift = torch.randint(1, k, (onehot.shape[0],), generator=gen).to(onehot.device)
    return F.one_hot((onehot.argmax(1) + shift) % k, k).to(onehot.dtype)


def _mismatch_losses(DV, DI, real: torch.Tensor, onehot, gen: torch.Generator, cfg,
                     options: RecipeOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """(D_V term, D_I term) of `mismatched_labels`: BCE "fake" on real clips with a wrong label, for
    each discriminator that sees the label (D_I only with the projection head); zeros otherwise."""
    zero = torch.zeros((), device=real.device)
    if not options.mismatched_labels or onehot is None:
        return zero, zero
    wrong = wrong_labels(onehot, gen)
    dv = bce(DV(real, wrong), 0.0)
    di = bce(_image_logits(DI, real, wrong, gen, options), 0.0) if cfg.d_condition == "projection" else zero
    return dv, di


def r1_penalty(logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018, Eq. 9 without γ/2): mean over the batch of ‖∇_x D(x)‖² on real
    inputs `inputs` (which must require grad), kept in the graph so D is trained on it."""
    grad, = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def _noise(n: int, dim: int, gen: torch.Generator, device) -> torch.Tensor:
    return torch.randn(n, dim, generator=gen).to(device)


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


# --- G3AN -------------------------------------------------------------------------------------
def paired_labels(onehot, b: int):
    """Labels of a fake batch whose clips i and i + b//2 share a label: the first half of the real
    batch's labels, twice (the last clip of an odd batch keeps its own)."""
    if onehot is None:
        return None
    half = b // 2
    return torch.cat([onehot[:half], onehot[:half], onehot[2 * half:]])


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's term (Mao et al. 2019, Eq. 3): 1 / (mean|G(z1) − G(z2)| / mean|z1 − z2| + eps) over the
    pairs (i, i + B/2) of a batch."""
    half = fake.shape[0] // 2
    ratio = ((fake[:half] - fake[half:2 * half]).abs().mean()
             / (z[:half] - z[half:2 * half]).abs().mean())
    return 1.0 / (ratio + eps)


def _class_loss(DI, video: torch.Tensor, onehot: torch.Tensor, gen: torch.Generator,
                options: RecipeOptions) -> torch.Tensor:
    """Cross-entropy of D_I's class logits on the frames `_frames` picks against their clips' labels."""
    frames, clips = _frames(video, gen, options)
    return F.cross_entropy(DI(frames, classes=True), onehot[clips].argmax(1))


def g3an_step(nets, optimizers, real, onehot, gen, cfg, options) -> dict[str, float]:
    G, DV, DI = nets["generator"], nets["d_video"], nets["d_image"]
    b, dev = real.shape[0], real.device
    z_a, z_m = _noise(b, cfg.z_a_dim, gen, dev), _noise(b, cfg.z_m_dim, gen, dev)
    seek = options.mode_seeking > 0 and b >= 2
    fake_onehot = paired_labels(onehot, b) if seek else onehot
    fake = G(z_a, z_m, fake_onehot)

    mismatch_dv, mismatch_di = _mismatch_losses(DV, DI, real, onehot, gen, cfg, options)
    loss_dv = bce(DV(real, onehot), 1.0) + bce(DV(fake.detach(), fake_onehot), 0.0) + mismatch_dv
    loss_di = (bce(_image_logits(DI, real, onehot, gen, options), 1.0)
               + bce(_image_logits(DI, fake.detach(), fake_onehot, gen, options), 0.0) + mismatch_di)
    classify = cfg.d_classifier and onehot is not None
    if classify:
        loss_d_class = _class_loss(DI, real, onehot, gen, options)
        loss_di = loss_di + loss_d_class
        if options.classify_fakes:
            loss_d_class_fake = _class_loss(DI, fake.detach(), fake_onehot, gen, options)
            loss_di = loss_di + loss_d_class_fake
    optimizers["d_video"].zero_grad(set_to_none=True)
    optimizers["d_image"].zero_grad(set_to_none=True)
    loss_dv.backward()
    optimizers["d_video"].step()
    loss_di.backward()
    optimizers["d_image"].step()

    loss_g_video = bce(DV(fake, fake_onehot), 1.0)
    loss_g_image = bce(_image_logits(DI, fake, fake_onehot, gen, options), 1.0)
    losses = {"d_video": loss_dv.item(), "d_image": loss_di.item(),
              "g_video": loss_g_video.item(), "g_image": loss_g_image.item()}
    loss_g = loss_g_video + loss_g_image
    if classify:
        loss_g_class = _class_loss(DI, fake, fake_onehot, gen, options)
        loss_g = loss_g + loss_g_class
        losses.update(d_class=loss_d_class.item(), g_class=loss_g_class.item())
        if options.classify_fakes:
            losses["d_class_fake"] = loss_d_class_fake.item()
    if seek:
        loss_ms = mode_seeking_loss(fake, torch.cat([z_a, z_m], 1))
        loss_g = loss_g + options.mode_seeking * loss_ms
        losses["g_mode_seeking"] = loss_ms.item()
    _step(optimizers["g"], loss_g)
    return losses


# --- EncGAN3 ----------------------------------------------------------------------------------
def _reconstruction(real: torch.Tensor, recon: torch.Tensor, options: RecipeOptions) -> torch.Tensor:
    """Eq. 1's two terms: first frame, plus every frame; each frame's error is its norm (sum over
    pixels and channels) or, with recon_reduction="mean", its per-pixel mean; mean over batch."""
    err = (real - recon).abs() if options.recon == "l1" else (real - recon).pow(2)
    per_frame = err.sum(dim=(1, 3, 4)) if options.recon_reduction == "sum" else err.mean(dim=(1, 3, 4))  # [B, T]
    return (per_frame[:, 0] + per_frame.sum(dim=1)).mean()


def encgan3_step(nets, optimizers, real, onehot, gen, cfg, options) -> dict[str, float]:
    G, DV, DI, E = nets["generator"], nets["d_video"], nets["d_image"], nets["encoder"]
    b, dev = real.shape[0], real.device
    eps_a, eps_m = _noise(b, cfg.z_a_dim, gen, dev), _noise(b, cfg.z_m_dim, gen, dev)
    prior_a, prior_m = _noise(b, cfg.z_a_dim, gen, dev), _noise(b, cfg.z_m_dim, gen, dev)

    # 1. discriminators (Eq. 3, 4)
    with torch.no_grad():
        mu_a, lv_a, mu_m, lv_m = E(real)
        recon = G(reparameterize(mu_a, lv_a, eps_a), reparameterize(mu_m, lv_m, eps_m), onehot)
        prior = G(prior_a, prior_m, onehot)
    mismatch_dv, mismatch_di = _mismatch_losses(DV, DI, real, onehot, gen, cfg, options)
    loss_di = (bce(_image_logits(DI, real, onehot, gen, options), 1.0)
               + bce(_image_logits(DI, recon, onehot, gen, options), 0.0)
               + bce(_image_logits(DI, prior, onehot, gen, options), 0.0) + mismatch_di)
    loss_dv = (bce(DV(real, onehot), 1.0) + bce(DV(prior, onehot), 0.0) + bce(DV(recon, onehot), 0.0)
               + mismatch_dv)
    _step(optimizers["d_image"], loss_di)
    _step(optimizers["d_video"], loss_dv)

    # 2. encoder (Eq. 1): reconstruction through G + KL of both streams
    mu_a, lv_a, mu_m, lv_m = E(real)
    recon = G(reparameterize(mu_a, lv_a, eps_a), reparameterize(mu_m, lv_m, eps_m), onehot)
    loss_rec = _reconstruction(real, recon, options)
    kl_a, kl_m = kl_to_standard_normal(mu_a, lv_a).mean(), kl_to_standard_normal(mu_m, lv_m).mean()
    loss_kl = kl_a + kl_m
    _step(optimizers["encoder"], loss_rec + options.kl_weight * loss_kl)

    # 3. generator (Eq. 2), re-run on the same videos with the updated encoder and discriminators
    with torch.no_grad():
        mu_a, lv_a, mu_m, lv_m = E(real)
    recon = G(reparameterize(mu_a, lv_a, eps_a), reparameterize(mu_m, lv_m, eps_m), onehot)
    prior = G(prior_a, prior_m, onehot)
    loss_g_adv = (bce(_image_logits(DI, recon, onehot, gen, options), 1.0)
                  + bce(_image_logits(DI, prior, onehot, gen, options), 1.0)
                  + bce(DV(recon, onehot), 1.0) + bce(DV(prior, onehot), 1.0))
    loss_g_rec = _reconstruction(real, recon, options)
    _step(optimizers["g"], options.adv_weight * loss_g_adv + loss_g_rec)
    return {"d_image": loss_di.item(), "d_video": loss_dv.item(), "enc_recon": loss_rec.item(),
            "enc_kl": loss_kl.item(), "enc_kl_a": kl_a.item(), "enc_kl_m": kl_m.item(),
            "g_adv": loss_g_adv.item(), "g_recon": loss_g_rec.item()}


# --- AVLAE ------------------------------------------------------------------------------------
def avlae_step(nets, optimizers, real, onehot, gen, cfg, options) -> dict[str, float]:
    FA, FM, G = nets["mapping_a"], nets["mapping_m"], nets["generator"]
    EA, DI, DV = nets["encoder_a"], nets["d_image"], nets["d_video"]
    EM = nets.get("encoder_m")
    b, dev = real.shape[0], real.device

    def generate():
        z = torch.cat([_noise(b, cfg.z_a_dim, gen, dev), _noise(b, cfg.z_m_dim, gen, dev)], 1)
        w_a, w_m = FA(z[:, :cfg.z_a_dim]), FM(z[:, cfg.z_a_dim:])
        return w_a, w_m, G(w_a, w_m), z

    def d_video(x):
        return DV(x, EM(x) if EM is not None else None)

    def real_loss(logits_of, x):
        """BCE "real" of a discriminator on real inputs x, plus γ/2 · R1 where `r1` is on."""
        if not options.r1:
            return bce(logits_of(x), 1.0), 0.0
        x = x.detach().requires_grad_(True)
        logits = logits_of(x)
        penalty = r1_penalty(logits, x)
        return bce(logits, 1.0) + options.r1 / 2 * penalty, penalty.item()

    # Step I: E_M*, D_V and E_A, D_I
    with torch.no_grad():
        fake = generate()[2]
    loss_v_real, r1_v = real_loss(d_video, real)
    loss_v = loss_v_real + bce(d_video(fake), 0.0)
    _step(optimizers["video_d"], loss_v)
    loss_i_real, r1_i = real_loss(lambda x: DI(EA(x)), _frames(real, gen, options)[0])
    loss_i = loss_i_real + bce(DI(EA(_frames(fake, gen, options)[0])), 0.0)
    _step(optimizers["image_d"], loss_i)

    # Step II: F_A, F_M, G
    _, _, fake, z = generate()
    loss_g = bce(DI(EA(_frames(fake, gen, options)[0])), 1.0) + bce(d_video(fake), 1.0)
    seek = options.mode_seeking > 0 and b >= 2
    loss_ms = mode_seeking_loss(fake, z) if seek else torch.zeros((), device=dev)
    _step(optimizers["generator"], loss_g + options.mode_seeking * loss_ms)

    # Step III: latent reconstruction over E_A, E_M*, G
    w_a, w_m, fake, _ = generate()
    w_a, w_m = w_a.detach(), w_m.detach()
    frames, clips = _frames(fake, gen, options)
    loss_rec_a = (w_a[clips] - EA(frames)).pow(2).sum(dim=1).mean()
    loss_rec_m = (w_m - EM(fake)).pow(2).sum(dim=1).mean() if EM is not None else torch.zeros((), device=dev)
    _step(optimizers["latent_ae"], options.k1 * loss_rec_m + options.k2 * loss_rec_a)
    losses = {"d_video": loss_v.item(), "d_image": loss_i.item(), "g_adv": loss_g.item(),
              "rec_w_a": loss_rec_a.item(), "rec_w_m": loss_rec_m.item()}
    if options.r1:
        losses.update(r1_video=r1_v, r1_image=r1_i)
    if seek:
        losses["g_mode_seeking"] = loss_ms.item()
    return losses

