"""How good a model is, measured the same way during training (`train/run.py --eval-every`) and
afterwards (`python -m train.quality`): the learning curves and the demo models' figures.

For a model trained on data D (its checkpoint records D's spec and frame steps):
  fvd             FVD (I3D Kinetics-400, `train.metrics`) of `num_videos` generated videos (fixed
                  latent seed; uniform labels when conditional) against `num_videos` clips of D's
                  held-out split (`test`), same frame steps. Real features are cached.
  digits          Moving-MNIST, conditional models: how often the requested digit is in the video,
                  by the digit classifier of `train.metrics.digits` (and its held-out accuracy).
  influence       how much each input moves the output: the per-pixel standard deviation (8-bit grey
                  levels) over videos that differ in z_a only, in z_m only, or in the label only (the
                  other inputs fixed), averaged over 4 draws of the fixed ones. A generator that
                  ignores its label or its motion latent shows it here (G3AN's appearance/motion split).
  reconstruction  models with an encoder: PSNR/SSIM of encode → decode of `recon_clips` held-out
                  clips against the all-black and mean-frame baselines (`train.metrics.reconstruction`).
  sample_reconstruction  the same for the first `recon_clips` of the model's own generated videos:
                  whether the encoders invert the generator where its range surely holds the input.
                  Low here too: the encoders do not invert G; high here only: real clips lie
                  outside what G draws (or outside what the encoders learnt to read).
  inversion       (`--inversion STEPS`) the generator's range on held-out clips: the first
                  `--inversion-clips` clips reconstructed by optimising the generator's inputs per
                  clip (G frozen; Adam, squared error) from the encoders' latents (EncGAN3: the
                  posterior means; AVLAE: w_A, w_M) or from z = 0 with the clip's label (G3AN). An
                  upper bound for any encoder of this generator (a local optimum, so G's true range
                  may reach a little further): low here means the generator cannot draw the clips.
  floor           (`--floor`) FVD of D's train split against its held-out split at the same N and
                  steps: what a perfect model would score at this sample size.
  sensitivity     (`--sensitivity`) what FVD charges for one flaw at a time: the floor's train clips
                  altered one way each (ALTERATIONS; on Moving-MNIST also one digit instead of two),
                  and with a checkpoint its generated videos under the same alterations. Reads a
                  model's FVD: which of its visible flaws could account for its distance to the floor.

    python -m train.quality demo_runs/mnist_g3an/checkpoint.pt --num-videos 256
    python -m train.quality demo_runs/mnist_g3an/snapshots/*.pt --num-videos 128 --output curve.jsonl
    python -m train.quality --floor --data moving-mnist --frame-steps 1 --num-videos 256
    python -m train.quality demo_runs/mnist_encgan3/snapshots/step0002500.pt --inversion 500
    python -m train.quality --sensitivity --data moving-mnist-same-class --num-videos 128 [CHECKPOINT]
    python -m train.quality --curves demo_runs/mnist_g3an demo_runs/mnist_encgan3 --plot curves.png
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from train.data import build_dataset
from train.data.builtin import is_moving_mnist
from train.metrics.features import I3DLogits, dataset_batches, extract, features_cached, generated_videos
from train.metrics.frechet import frechet_distance_features
from train.runtime import keep_freed_memory


def held_out(data: dict, split: str = "test", length: int | None = None):
    """The clip dataset a run's data description names, at another split."""
    return build_dataset(data["spec"], resolution=data["resolution"], frames=data["frames"], split=split,
                         steps=tuple(data["steps"]), flip=False, seed=data.get("seed", 0), length=length)


def real_features(net: I3DLogits, dataset, num_videos: int, batch_size: int = 8) -> np.ndarray:
    source = {"kind": "dataset", "describe": dataset.describe(),
              "items": f"0..{num_videos - 1} (item i = clip i mod len at epoch i div len)"}
    feats, _ = features_cached({"i3d": net}, source, num_videos,
                               lambda: dataset_batches(dataset, num_videos, batch_size),
                               f"real {dataset.name}:{dataset.split}", progress=False)
    return feats["i3d"]


class QualityProbe:
    """Measures one model against the held-out split of the data it was trained on."""

    def __init__(self, data: dict, num_videos: int = 128, recon_clips: int = 64, seed: int = 0,
                 batch_size: int = 8, device: str | torch.device = "cpu"):
        self.data, self.num_videos, self.recon_clips = data, int(num_videos), int(recon_clips)
        self.seed, self.batch_size, self.device = int(seed), int(batch_size), torch.device(device)
        self.test = held_out(data)
        self.i3d = I3DLogits(device=self.device)
        self._real = None

    @property
    def real(self) -> np.ndarray:
        if self._real is None:
            self._real = real_features(self.i3d, self.test, self.num_videos, self.batch_size)
        return self._real

    @torch.no_grad()
    def __call__(self, model) -> dict:
        """Figures of `model` (a VideoGAN, in any mode; it is put back in the mode it was in)."""
        t0 = time.time()
        was_training = model.training
        model.eval()
        try:
            videos, labels = [], []
            for v, lab in generated_videos(model, self.num_videos, self.batch_size, self.seed, self.device):
                videos.append(v)
                labels.append(lab)
            videos = torch.cat(videos)
            fake = extract({"i3d": self.i3d}, [videos[i:i + self.batch_size] for i in
                                               range(0, len(videos), self.batch_size)], progress=False)["i3d"]
            out = {"fvd": round(frechet_distance_features(self.real, fake), 3), "num_videos": self.num_videos}
            if model.num_classes and is_moving_mnist(self.data["spec"]):
                out["digits"] = self.digit_check(videos, torch.cat(labels))
            out["influence"] = latent_influence(model, self.seed, self.device)
            if model.spec.has_encoder(model.config):
                real = torch.cat(list(dataset_batches(self.test, self.recon_clips, self.batch_size)))
                out["reconstruction"] = self.reconstruction(model, real)
                out["sample_reconstruction"] = self.reconstruction(model, videos[:self.recon_clips])
        finally:
            model.train(was_training)
        out["seconds"] = round(time.time() - t0, 1)
        return out

    def digit_check(self, videos: torch.Tensor, labels: torch.Tensor) -> dict:
        from train.metrics.digits import digit_probabilities, requested_digit_found
        try:
            probs = digit_probabilities(videos)
        except FileNotFoundError as error:  # a training run goes on without this figure
            return {"missing": str(error)}
        per_class = {str(k): round(float(requested_digit_found(probs[labels == k], labels[labels == k])), 3)
                     for k in range(10) if (labels == k).any()}
        return {"requested_digit_found": round(float(requested_digit_found(probs, labels)), 4),
                "per_class": per_class}

    def reconstruction(self, model, clips: torch.Tensor) -> dict:
        """encode → decode of `clips` [N, 3, T, H, W] in [-1, 1], against the two baselines."""
        from train.metrics.reconstruction import reconstruction_report
        clips = clips.to(self.device)
        recon = torch.cat([model.decode(**model.encode(clips[i:i + self.batch_size])).float().clamp(-1, 1).cpu()
                           for i in range(0, len(clips), self.batch_size)])
        return reconstruction_report(clips.cpu(), recon)


@torch.no_grad()
def latent_influence(model, seed: int = 0, device: str | torch.device = "cpu", draws: int = 4,
                     videos: int = 8) -> dict:
    """{input: grey levels}: mean per-pixel std over `videos` videos that differ in that input only."""
    g = torch.Generator().manual_seed(int(seed))
    k = int(model.num_classes or 0)
    spread = {"z_a": [], "z_m": []} | ({"label": []} if k else {})
    for _ in range(draws):
        fixed = {"z_a": torch.randn(1, model.z_a_dim, generator=g), "z_m": torch.randn(1, model.z_m_dim, generator=g),
                 "label": torch.randint(0, k, (1,), generator=g) if k else None}
        for name in spread:
            n = min(videos, k) if name == "label" else videos
            inputs = {key: (value.expand(n, *value.shape[1:]) if value is not None else None)
                      for key, value in fixed.items()}
            inputs[name] = (torch.randperm(k, generator=g)[:n] if name == "label"
                            else torch.randn(n, fixed[name].shape[1], generator=g))
            onehot = torch.nn.functional.one_hot(inputs["label"], k).float().to(device) if k else None
            video = model.sample(inputs["z_a"].to(device), inputs["z_m"].to(device), onehot).float().clamp(-1, 1)
            spread[name].append(float(video.std(0).mean()) * 127.5)
    return {name: round(float(np.mean(values)), 2) for name, values in spread.items()}


def invert_generator(model, clips: torch.Tensor, labels: torch.Tensor | None, steps: int, lr: float = 0.05) -> dict:
    """Reconstruct `clips` [N, 3, T, H, W] by optimising the generator's inputs per clip (see the
    module docstring, `inversion`) → reconstruction_report of the best step per clip, plus the
    PSNR at the starting latents."""
    from train.metrics.reconstruction import psnr, reconstruction_report
    n = len(clips)
    with torch.no_grad():
        if model.spec.has_encoder(model.config):
            start = {k: v for k, v in model.encode(clips).items() if not k.endswith("_logvar")}
            draw = lambda latents: model.decode(**latents)                              # noqa: E731
        else:
            start = {"z_a": torch.zeros(n, model.z_a_dim, device=clips.device),
                     "z_m": torch.zeros(n, model.z_m_dim, device=clips.device)}
            onehot = (torch.nn.functional.one_hot(labels.long(), model.num_classes).float().to(clips.device)
                      if model.num_classes else None)
            draw = lambda latents: model.sample(latents["z_a"], latents["z_m"], onehot)  # noqa: E731
    latents = {k: v.detach().clone().requires_grad_(True) for k, v in start.items()}
    optimizer = torch.optim.Adam(latents.values(), lr=lr)
    best, best_err, first = None, None, None
    for step in range(int(steps) + 1):
        with torch.enable_grad():
            video = draw(latents).float()
            err = (video - clips).pow(2).flatten(1).sum(1)                              # per clip
        out = video.detach().clamp(-1, 1)
        if first is None:
            first, best, best_err = out, out.clone(), err.detach().clone()
        better = err.detach() < best_err
        best[better], best_err[better] = out[better], err.detach()[better]
        if step == steps:
            break
        grads = torch.autograd.grad(err.sum(), list(latents.values()), allow_unused=True)  # none into G
        for p, g in zip(latents.values(), grads):
            p.grad = torch.zeros_like(p) if g is None else g
        optimizer.step()
    report = reconstruction_report(clips.cpu(), best.cpu())
    return {"steps": int(steps), "lr": lr, "start_psnr_db": round(float(psnr(clips, first).mean()), 4), **report}


def floor(data: dict, num_videos: int, batch_size: int = 8, device: str = "cpu") -> dict:
    """FVD of the train split against the held-out split: a perfect model's score at this N."""
    net = I3DLogits(device=device)
    a = real_features(net, held_out(data, "train"), num_videos, batch_size)
    b = real_features(net, held_out(data, "test"), num_videos, batch_size)
    return {"fvd_floor": round(frechet_distance_features(a, b), 3), "num_videos": num_videos,
            "data": {k: data[k] for k in ("spec", "steps", "resolution", "frames")}}


def _edges_from_neighbours(v: torch.Tensor) -> torch.Tensor:
    v = v.clone()
    v[:, :, 0], v[:, :, -1] = v[:, :, 1], v[:, :, -2]
    return v


def _blurred(v: torch.Tensor, size: int, edges_only: bool = False) -> torch.Tensor:
    blur = torch.nn.functional.avg_pool3d(v, (1, size, size), 1, (0, size // 2, size // 2))
    if not edges_only:
        return blur
    v = v.clone()
    v[:, :, [0, -1]] = blur[:, :, [0, -1]]
    return v


def _jittered(v: torch.Tensor, pixels: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shifts = torch.randint(-pixels, pixels + 1, (v.shape[0], v.shape[2], 2), generator=g).tolist()
    return torch.stack([torch.stack([torch.roll(v[i, :, t], tuple(shifts[i][t]), dims=(-2, -1))
                                     for t in range(v.shape[2])], 1) for i in range(v.shape[0])])


# name -> videos [N, 3, T, H, W] in [-1, 1] -> the same videos with one flaw
ALTERATIONS = {
    "as is": lambda v: v,
    "first and last frame replaced by their neighbours": _edges_from_neighbours,
    "first and last frame blurred (5x5 box)": lambda v: _blurred(v, 5, edges_only=True),
    "every frame shifted by -1..1 px at random": _jittered,
    "every frame blurred (3x3 box)": lambda v: _blurred(v, 3),
    "no motion (the first frame held)": lambda v: v[:, :, :1].expand_as(v).contiguous(),
}


def real_data(spec: str, frame_steps: str) -> dict:
    """The data description of a data set spec at comma-separated frame steps (for --floor/--sensitivity)."""
    return build_dataset(spec, split="test", steps=tuple(int(s) for s in frame_steps.split(","))).describe()


def sensitivity(data: dict | None, num_videos: int, batch_size: int = 8, device: str = "cpu",
                checkpoint: str | Path | None = None, seed: int = 0) -> dict:
    """FVD against the held-out split of D's train clips under each of ALTERATIONS (and, on
    Moving-MNIST, of the same clips drawn with their first digit only), plus the same alterations of
    `checkpoint`'s generated videos when given (then D is the checkpoint's data set, not `data`).
    Altered videos are not cached."""
    model = meta = None
    if checkpoint is not None:
        from train.checkpoint import load_for_inference
        model, meta = load_for_inference(checkpoint)
        data = meta["data"]
    net = I3DLogits(device=device)
    test = real_features(net, held_out(data, "test"), num_videos, batch_size)

    def fvd(videos: torch.Tensor) -> float:
        feats = extract({"i3d": net}, [videos[i:i + batch_size] for i in range(0, len(videos), batch_size)],
                        progress=False)["i3d"]
        return round(frechet_distance_features(test, feats), 1)

    train = held_out(data, "train")
    real = torch.cat(list(dataset_batches(train, num_videos, batch_size)))
    out = {"num_videos": num_videos, "data": {k: data[k] for k in ("spec", "steps", "resolution", "frames")},
           "real": {name: fvd(alter(real)) for name, alter in ALTERATIONS.items()}}
    if is_moving_mnist(data["spec"]):
        from train.data.builtin import MovingMNIST
        one = MovingMNIST(spec=data["spec"], split="train", resolution=data["resolution"], frames=data["frames"],
                          steps=tuple(data["steps"]), flip=False, seed=data.get("seed", 0), length=train.length, digits=1)
        out["real"]["the first digit only"] = fvd(torch.cat(list(dataset_batches(one, num_videos, batch_size))))
    if model is not None:
        model.to(device).eval()
        with torch.no_grad():
            fake = torch.cat([v.float().clamp(-1, 1).cpu()
                              for v, _ in generated_videos(model, num_videos, batch_size, seed, device)])
        out |= {"checkpoint": str(checkpoint), "step": meta["step"],
                "generated": {name: fvd(alter(fake)) for name, alter in ALTERATIONS.items()}}
    return out


def evaluate_checkpoint(path: str | Path, num_videos: int, recon_clips: int, seed: int, batch_size: int,
                        device: str, probes: dict) -> dict:
    from train.checkpoint import load_for_inference
    model, meta = load_for_inference(path)
    data = meta["data"]
    key = json.dumps(data, sort_keys=True)
    if key not in probes:  # one probe per data set: the real features are computed once
        probes[key] = QualityProbe(data, num_videos, recon_clips, seed, batch_size, device)
    return {"checkpoint": str(path), "step": meta["step"], "family": meta["family"], "weights": meta["weights"],
            **probes[key](model.to(device))}


def inversion_of_checkpoint(path: str | Path, steps: int, clips: int, device: str = "cpu") -> dict:
    """invert_generator on the first `clips` held-out clips of the checkpoint's own data."""
    from train.checkpoint import load_for_inference
    model, meta = load_for_inference(path)
    model.to(device).eval()
    test = held_out(meta["data"], "test")
    items = [test[i] for i in range(min(int(clips), len(test)))]
    real = torch.stack([clip for clip, _ in items]).to(device)
    labels = torch.tensor([int(label) for _, label in items])
    t0 = time.time()
    result = invert_generator(model, real, labels, steps)
    return {"checkpoint": str(path), "step": meta["step"], "family": meta["family"], "weights": meta["weights"],
            "inversion": result, "seconds": round(time.time() - t0, 1)}


def write_reconstruction_gif(path: str | Path, out: str | Path, clips: int = 4) -> float:
    """Held-out clips (top row) and their encode → decode reconstructions (bottom row) of the
    checkpoint at `path`, as one GIF at `out`; → the mean per-clip PSNR (dB) of those clips."""
    from common.video_files import make_grid, write_gif
    from train.checkpoint import load_for_inference
    from train.metrics.reconstruction import psnr
    from train.samples import to_uint8
    model, meta = load_for_inference(path)
    if not model.spec.has_encoder(model.config):
        raise ValueError(f"{path}: a {model.family} model has no encoder to reconstruct with")
    test = held_out(meta["data"], "test")
    real = torch.stack([test[i][0] for i in range(clips)])
    with torch.no_grad():
        recon = model.decode(**model.encode(real))
    write_gif(out, make_grid([list(to_uint8(real)), list(to_uint8(recon))], pad=2, pad_value=128))
    return float(psnr(real, recon.clamp(-1, 1)).mean())


def read_curve(run: str | Path) -> list[dict]:
    """The {"step", "eval"} entries a run's --eval-every wrote to its losses.jsonl, by step."""
    rows = [json.loads(line) for line in (Path(run) / "losses.jsonl").read_text().splitlines() if line.strip()]
    return sorted((r for r in rows if "eval" in r), key=lambda r: r["step"])


def curve_table(run: str | Path) -> str:
    """A markdown table of a run's learning curve."""
    lines = ["| step | FVD | requested digit found | reconstruction PSNR (dB) | SSIM |", "|---:|---:|---:|---:|---:|"]
    for r in read_curve(run):
        e = r["eval"]
        digits = e.get("digits", {}).get("requested_digit_found")
        rec = e.get("reconstruction", {}).get("reconstruction", {})
        cells = [str(r["step"]), f"{e['fvd']:.1f}", "" if digits is None else f"{100 * digits:.0f} %",
                 "" if not rec else f"{rec['psnr_db']:.2f}", "" if not rec else f"{rec['ssim']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(runs: list[str], path: str | Path, floor_fvd: float | None = None) -> None:
    """FVD against steps for each run (and the real-vs-real floor), one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for run in runs:
        curve = read_curve(run)
        if curve:
            ax.plot([r["step"] for r in curve], [r["eval"]["fvd"] for r in curve], marker="o", label=Path(run).name)
    if floor_fvd is not None:
        ax.axhline(floor_fvd, color="grey", linestyle="--", label=f"real vs real floor ({floor_fvd:.1f})")
    n = {r["eval"]["num_videos"] for run in runs for r in read_curve(run)}
    ax.set_xlabel("training step")
    ax.set_ylabel(f"FVD vs held-out (N = {', '.join(map(str, sorted(n)))})")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def print_and_append(result: dict, output: str | None) -> None:
    """One JSON line to stdout, and appended to `output` when given."""
    print(json.dumps(result), flush=True)
    if output:
        with open(output, "a") as f:
            f.write(json.dumps(result) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.quality", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="*", help="checkpoints or snapshots to measure (one JSON line each)")
    p.add_argument("--num-videos", type=int, default=256, help="generated and real videos for FVD (default 256)")
    p.add_argument("--recon-clips", type=int, default=64, help="held-out clips to reconstruct (default 64)")
    p.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--floor", action="store_true", help="the real-vs-real floor of --data instead")
    p.add_argument("--sensitivity", action="store_true",
                   help="FVD of altered real clips (and of a checkpoint's altered samples): what FVD charges for")
    p.add_argument("--data", default="moving-mnist", help="with --floor/--sensitivity: the data set spec")
    p.add_argument("--frame-steps", default="1", help="with --floor/--sensitivity: frame steps (default 1)")
    p.add_argument("--output", help="append the JSON lines to this file too")
    p.add_argument("--curves", nargs="+", metavar="RUN", help="print the learning-curve tables of these run folders")
    p.add_argument("--plot", help="with --curves: also plot FVD against steps into this PNG")
    p.add_argument("--floor-fvd", type=float, help="with --plot: draw this real-vs-real floor")
    p.add_argument("--reconstruction-gif", metavar="GIF",
                   help="write 4 held-out clips over their reconstructions by the (one) checkpoint into GIF")
    p.add_argument("--inversion", type=int, metavar="STEPS", default=0,
                   help="instead of the figures: the generator's range, STEPS of latent optimisation per held-out clip")
    p.add_argument("--inversion-clips", type=int, default=16, help="with --inversion: held-out clips (default 16)")
    args = p.parse_args(argv)
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.curves:
        for run in args.curves:
            print(f"### {Path(run).name}\n\n{curve_table(run)}\n")
        if args.plot:
            plot_curves(args.curves, args.plot, args.floor_fvd)
        return 0
    if args.reconstruction_gif:
        if len(args.checkpoints) != 1:
            p.error("--reconstruction-gif takes one checkpoint")
        db = write_reconstruction_gif(args.checkpoints[0], args.reconstruction_gif)
        print(json.dumps({"reconstruction_gif": args.reconstruction_gif, "clips": 4, "psnr_db": round(db, 2)}))
        return 0
    if args.sensitivity:
        if len(args.checkpoints) > 1:
            p.error("--sensitivity takes at most one checkpoint (whose data set is then measured)")
        checkpoint = args.checkpoints[0] if args.checkpoints else None  # then its own data set is measured
        data = real_data(args.data, args.frame_steps) if checkpoint is None else None
        print_and_append(sensitivity(data, args.num_videos, args.batch_size, args.device, checkpoint, args.seed),
                         args.output)
        return 0
    if args.inversion:
        if not args.checkpoints:
            p.error("--inversion takes checkpoints")
        for path in args.checkpoints:
            print_and_append(inversion_of_checkpoint(path, args.inversion, args.inversion_clips, args.device),
                             args.output)
        return 0
    if not args.floor and not args.checkpoints:
        p.error("give checkpoints to measure, --floor, --sensitivity or --curves")
    results = []
    if args.floor:
        results.append(floor(real_data(args.data, args.frame_steps), args.num_videos, args.batch_size, args.device))
    probes: dict = {}
    for path in args.checkpoints:
        results.append(evaluate_checkpoint(path, args.num_videos, args.recon_clips, args.seed, args.batch_size,
                                           args.device, probes))
        print(json.dumps(results[-1]), flush=True)
    if args.floor:
        print(json.dumps(results[0]), flush=True)
    if args.output:
        with open(args.output, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
