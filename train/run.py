"""Train G3AN, EncGAN3 or AVLAE on real video clips — or describe a model with --summary.

    python train/run.py --model g3an --data moving-mnist --preset tiny --steps 200 --batch-size 8 --out runs/g3an
    python train/run.py --model g3an --data moving-mnist --preset tiny --steps 400 --out runs/g3an --resume
    torchrun --nproc_per_node=2 train/run.py --model g3an ...          # DistributedDataParallel
    python train/run.py --model avlae --preset paper128 --summary

The recipes (losses, update order) are in train/recipes.py. `--steps N` is the TOTAL number of
training iterations: a resumed run stops at the same step as an uninterrupted one. Every random
number of step s comes from a generator seeded with (seed, s, rank), and the data of step s
from (seed, epoch, index), so a CPU run resumed from a checkpoint continues exactly as the
uninterrupted run would. Checkpoints are written atomically every --checkpoint-every steps, at
the end, and on Ctrl-C/SIGTERM. Only rank 0 writes anything.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from train.ema import WeightAverage
from train.checkpoint import checkpoint_state, atomic_torch_save, read_checkpoint, model_from_checkpoint
from train.families import family_names, get_family
from train.models import PRESETS, build_model, make_config
from train.runtime import PRECISIONS, check_precision, keep_freed_memory, wrap_networks
from train.recipes import D_IMAGE_FRAMES, RECON_NORMS, RECON_REDUCTIONS, RecipeOptions
from train.samples import write_sample_grid


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=family_names(), required=True, help="which paper's system to train")
    p.add_argument("--preset", choices=PRESETS, default="tiny",
                   help="model size: paper64 / paper128 (the papers') or tiny (narrow, for CPU). Default tiny")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model option, e.g. --set fsa_after=2 --set use_spatial=false "
                        "(see the config dataclasses in train/models/*.py)")
    p.add_argument("--summary", action="store_true",
                   help="print the model's description (parameter counts, video shape) as JSON and exit")
    p.add_argument("--data", default="moving-mnist",
                   help="moving-mnist | moving-mnist-same-class | pedestrians | carphone | a folder of videos or of "
                        "frame folders")
    p.add_argument("--frame-steps", default="1,2,3,4",
                   help="time steps between sampled frames, chosen at random per clip (G3AN §4.2: 1-4)")
    p.add_argument("--flip", action="store_true", help="random horizontal flips")
    p.add_argument("--unconditional", action="store_true",
                   help="ignore the data's classes (by default a labelled data set trains a conditional "
                        "G3AN/EncGAN3)")
    p.add_argument("--steps", type=int, default=1000, help="total training iterations (default 1000)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per iteration and per process (default 8)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate, every network (default 2e-4)")
    p.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 (default 0.5)")
    p.add_argument("--beta2", type=float, default=0.999, help="Adam beta2 (default 0.999)")
    p.add_argument("--recon", choices=RECON_NORMS, default="l1",
                   help="EncGAN3 reconstruction norm of a frame: l1 (default) or squared l2")
    p.add_argument("--recon-reduction", choices=RECON_REDUCTIONS, default="sum",
                   help="EncGAN3: a frame's error summed over its pixels (the norm, default) or their mean "
                        "(10^4 times weaker against the KL: the posterior collapses)")
    p.add_argument("--kl-weight", type=float, default=1.0, help="EncGAN3 KL weight (paper: 1)")
    p.add_argument("--adv-weight", type=float, default=1.0,
                   help="EncGAN3: weight of Eq. 2's adversarial terms against the summed reconstruction "
                        "(paper: 1; with a per-frame sum the adversarial side is ~1e-3 of the loss)")
    p.add_argument("--d-image-frames", choices=D_IMAGE_FRAMES, default="batch",
                   help="frames D_I sees: one random index per batch (official G3AN code, default), one per clip, "
                        "or every frame of every clip (train/recipes.py)")
    p.add_argument("--d-mismatched-labels", action="store_true",
                   help="conditional G3AN/EncGAN3: real clips shown with a wrong label count as fake for the "
                        "discriminators that see the label (GAN-CLS, Reed et al. 2016; not in the papers)")
    p.add_argument("--d-classify-fakes", action="store_true",
                   help="G3AN with --set d_classifier=true: D_I's classifier also learns the requested classes "
                        "of generated frames (the original AC-GAN; default: real frames only)")
    p.add_argument("--mode-seeking", type=float, default=0.0, metavar="LAMBDA",
                   help="G3AN, AVLAE: weight of MSGAN's mode-seeking term (Mao et al. 2019; its weight 1) against a "
                        "generator that ignores its latents (default 0: off, the paper's recipe)")
    p.add_argument("--k1", type=float, default=1.0, help="AVLAE motion latent reconstruction weight K1")
    p.add_argument("--k2", type=float, default=1.0, help="AVLAE appearance latent reconstruction weight K2")
    p.add_argument("--r1", type=float, default=0.0,
                   help="AVLAE: R1 penalty weight γ on real clips and frames for D_V and E_A+D_I (0 = off, the paper; "
                        "ALAE's stabiliser)")
    p.add_argument("--out", default="runs/run", help="output folder: checkpoint.pt, losses.jsonl, "
                                                      "samples/*.gif, tensorboard/ (default runs/run)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (default 100)")
    p.add_argument("--sample-every", type=int, default=100,
                   help="steps between GIF grids of fixed-seed samples (default 100; 0 = only at the end)")
    p.add_argument("--log-every", type=int, default=10, help="steps between TensorBoard scalars (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random number (default 0)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when available)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default) or bf16 autocast of the forward passes; bf16 is refused where it is "
                        "not native (CPUs without AVX512-BF16/AMX)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="every N steps measure the model against the held-out split (FVD; digit check and "
                        "reconstruction PSNR/SSIM where they apply; train/quality.py) and log it to TensorBoard "
                        "and losses.jsonl as {\"step\", \"eval\"} (default 0: never)")
    p.add_argument("--eval-videos", type=int, default=128,
                   help="generated and held-out videos per --eval-every FVD (default 128)")
    p.add_argument("--snapshot-every", type=int, default=0,
                   help="also keep the weights (no optimizer) every N steps as OUT/snapshots/stepNNNNNNN.pt, "
                        "for learning curves computed afterwards (default 0: none)")
    p.add_argument("--ema", type=float, default=0.999,
                   help="decay of the weight average that samples, --eval-every and export use (train/ema.py; "
                        "default 0.999; 0 = none, the live weights). A resumed run keeps its checkpoint's decay")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = {"none": None}.get(value.lower(), value)
    return overrides


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """All randomness of one iteration on one process."""
    mixed = np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed) & ((1 << 63) - 1))


def batch_indices(seed: int, step: int, rank: int, size: int, n: int) -> list[int]:
    rng = np.random.default_rng([seed, step, rank, 7])
    return rng.integers(0, n, size=size).tolist()


def fixed_latents(model, count: int = 16, seed: int = 1234):
    """The same latents at every sample grid (and in every run with the same model)."""
    gen = torch.Generator().manual_seed(seed)
    z_a = torch.randn(count, model.z_a_dim, generator=gen)
    z_m = torch.randn(count, model.z_m_dim, generator=gen)
    label = torch.eye(model.num_classes)[torch.arange(count) % model.num_classes] if model.num_classes else None
    return z_a, z_m, label


@dataclass
class Processes:
    """This process's place among the training processes (DistributedDataParallel or one)."""

    rank: int
    world: int
    distributed: bool
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class Training:
    """What one run trains: the model, its (wrapped) networks, optimizers, weight average, where it starts."""

    model: object
    nets: dict
    optimizers: dict
    options: RecipeOptions
    average: WeightAverage | None
    start: int

    @property
    def inference_model(self):
        return self.average.model if self.average is not None else self.model


def start_processes(args) -> Processes:
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(args.device)
    else:
        rank, world = 0, 1
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        check_precision(args.precision, device)
    except ValueError as error:
        raise SystemExit(str(error))
    return Processes(rank, world, distributed, device)


def load_data(args, overrides: dict):
    """The training split; a labelled data set makes a conditional model (num_classes joins
    `overrides`) unless --unconditional or the family is unconditional. → (dataset, conditional)"""
    from train.data import build_dataset
    resolution = make_config(args.model, args.preset, **overrides).resolution   # before num_classes is known
    frame_steps = tuple(int(s) for s in args.frame_steps.split(","))
    dataset = build_dataset(args.data, resolution=resolution, frames=16, split="train", steps=frame_steps,
                            flip=args.flip, seed=args.seed)
    conditional = dataset.num_classes > 0 and not args.unconditional and get_family(args.model).conditional
    if conditional:
        overrides.setdefault("num_classes", dataset.num_classes)
    return dataset, conditional


def read_resume_state(args, checkpoint_path: Path) -> dict | None:
    try:
        state = read_checkpoint(checkpoint_path) if args.resume and checkpoint_path.exists() else None
    except ValueError as error:  # truncated, corrupt or unsafe: one line, the file left as it is
        raise SystemExit(f"error: {error}")
    if state is not None and state["family"] != args.model:
        raise SystemExit(f"{checkpoint_path} holds a {state['family']} model, not {args.model}")
    return state


def build_training(args, overrides: dict, state: dict | None, procs: Processes) -> Training:
    """The model (fresh, or the checkpoint's), its optimizers (restored on resume) and weight average."""
    if state is not None:
        model = model_from_checkpoint(state)
    else:
        torch.manual_seed(args.seed)  # same initial weights on every rank and in every run
        model = build_model(args.model, args.preset, **overrides)
    model.to(procs.device).train()
    nets = {name: module for name, module in model.named_children()}
    if procs.distributed:
        nets = {name: DistributedDataParallel(m) if any(p.requires_grad for p in m.parameters()) else m
                for name, m in nets.items()}
    options = RecipeOptions(lr=args.lr, betas=(args.beta1, args.beta2), recon=args.recon,
                            recon_reduction=args.recon_reduction, kl_weight=args.kl_weight, k1=args.k1, k2=args.k2, r1=args.r1,
                            adv_weight=args.adv_weight, d_image_frames=args.d_image_frames,
                            mismatched_labels=args.d_mismatched_labels, mode_seeking=args.mode_seeking,
                            classify_fakes=args.d_classify_fakes)
    optimizers = get_family(args.model).make_optimizers(nets, options)
    nets = wrap_networks(nets, args.precision, procs.device)
    start = 0
    if state is not None:
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        start = state["step"]
    average = None
    if args.ema and state is not None and state.get("ema"):
        average = WeightAverage.from_state(model, state["ema"])
    elif args.ema:
        average = WeightAverage(model, args.ema, start_step=start)
    return Training(model, nets, optimizers, options, average, start)


class RunOutput:
    """Everything rank 0 writes: checkpoints, snapshots, losses.jsonl, TensorBoard, sample grids,
    --eval-every figures. On other ranks every method does nothing."""

    def __init__(self, args, procs: Processes, training: Training, dataset, conditional: bool):
        self.args, self.procs, self.training, self.dataset = args, procs, training, dataset
        self.out = Path(args.out)
        self.checkpoint_path = self.out / "checkpoint.pt"
        self.losses_log = self.out / "losses.jsonl"
        self.writer = self.probe = None
        self.sample_latents = fixed_latents(training.model)
        if not procs.main:
            return
        start, model = training.start, training.model
        self.out.mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=start if start else None)
        if self.losses_log.exists():  # drop what a killed run logged after its last checkpoint
            kept = [line for line in self.losses_log.read_text().splitlines() if json.loads(line)["step"] <= start]
            self.losses_log.write_text("".join(line + "\n" for line in kept))
        (self.out / "run_args.json").write_text(json.dumps(vars(args), indent=2))
        print(f"{args.model}/{args.preset} on {dataset.name}: {len(dataset)} clips, "
              f"{dataset.num_classes} classes{' (conditional)' if conditional else ''}; "
              f"params {model.param_counts()}; steps {start} → {args.steps}; world size {procs.world}", flush=True)
        if args.eval_every:
            from train.quality import QualityProbe
            self.probe = QualityProbe(dataset.describe(), num_videos=args.eval_videos,
                                      recon_clips=min(64, args.eval_videos), seed=args.seed, device=procs.device)

    def _weights_state(self, step: int, **extra) -> dict:
        average = self.training.average
        ema = average.state() if average is not None else None
        return checkpoint_state(self.training.model, step=step, data=self.dataset.describe(), args=vars(self.args),
                                ema=ema, **extra)

    def save(self, step: int) -> None:
        if self.procs.main:
            atomic_torch_save(self._weights_state(step, optimizers=self.training.optimizers,
                                                  rng={"torch": torch.get_rng_state()}), self.checkpoint_path)

    def snapshot(self, step: int) -> None:
        if self.procs.main:
            atomic_torch_save(self._weights_state(step), self.out / "snapshots" / f"step{step:07d}.pt")

    def write_samples(self, step: int) -> None:
        if self.procs.main:
            inference_model = self.training.inference_model
            inference_model.eval()
            with torch.no_grad():
                z_a, z_m, label = (t.to(self.procs.device) if t is not None else None for t in self.sample_latents)
                videos = inference_model.sample(z_a, z_m, label)
            self.training.model.train()
            write_sample_grid(videos.cpu(), self.out / "samples" / f"step{step:07d}.gif")

    def log_losses(self, step: int, losses: dict, started: float) -> None:
        if not self.procs.main:
            return
        with self.losses_log.open("a") as f:
            f.write(json.dumps({"step": step, **losses}) + "\n")
        if step % self.args.log_every == 0 or step == self.args.steps:
            for name, value in losses.items():
                self.writer.add_scalar(f"loss/{name}", value, step)
            self.writer.add_scalar("speed/steps_per_s", (step - self.training.start) / (time.time() - started), step)

    def evaluate(self, step: int) -> None:
        figures = {**self.probe(self.training.inference_model),
                   "weights": "average" if self.training.average is not None else "live"}
        with self.losses_log.open("a") as f:
            f.write(json.dumps({"step": step, "eval": figures}) + "\n")
        writer = self.writer
        writer.add_scalar("quality/fvd", figures["fvd"], step)
        if "digits" in figures:
            writer.add_scalar("quality/requested_digit_found", figures["digits"]["requested_digit_found"], step)
        if "reconstruction" in figures:
            writer.add_scalar("quality/reconstruction_psnr_db", figures["reconstruction"]["reconstruction"]["psnr_db"], step)
            writer.add_scalar("quality/reconstruction_ssim", figures["reconstruction"]["reconstruction"]["ssim"], step)
        print(json.dumps({"step": step, "eval": figures}), flush=True)

    def after_step(self, step: int) -> None:
        """The periodic writes after iteration `step`."""
        args = self.args
        if step % args.checkpoint_every == 0:
            self.save(step)
        if args.snapshot_every and step % args.snapshot_every == 0:
            self.snapshot(step)
        if args.sample_every and step % args.sample_every == 0:
            self.write_samples(step)
        if self.probe is not None and step % args.eval_every == 0:
            self.evaluate(step)


def train_loop(args, procs: Processes, training: Training, dataset, output: RunOutput, stop: dict) -> tuple[int, float]:
    """Iterations from training.start to --steps (or a stop request); → (last step, start time)."""
    model, cfg, device = training.model, training.model.config, procs.device
    train_step = get_family(args.model).train_step
    steps_per_epoch = max(1, len(dataset) // (args.batch_size * procs.world))
    progress = None
    if procs.main and not args.no_progress:
        from tqdm import tqdm
        progress = tqdm(total=args.steps, initial=training.start, unit="step", dynamic_ncols=True)
    step, failed = training.start, False
    started = time.time()
    try:
        while step < args.steps and not stop["requested"]:
            epoch = step // steps_per_epoch
            dataset.set_epoch(epoch)
            epoch_end = min(args.steps, (epoch + 1) * steps_per_epoch)
            batches = [batch_indices(args.seed, s, procs.rank, args.batch_size, len(dataset))
                       for s in range(step, epoch_end)]
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=args.workers)
            for real, labels in loader:
                real = real.to(device, non_blocking=True)
                onehot = None
                if cfg.num_classes:
                    onehot = torch.nn.functional.one_hot(labels.clamp(min=0), cfg.num_classes).float().to(device)
                losses = train_step(training.nets, training.optimizers, real, onehot,
                                    step_generator(args.seed, step, procs.rank), cfg, training.options)
                step += 1
                if training.average is not None:
                    training.average.update(model, step)
                if not all(math.isfinite(v) for v in losses.values()):
                    failed = True  # keep the last good checkpoint
                    raise FloatingPointError(f"non-finite loss at step {step}: {losses}")
                output.log_losses(step, losses, started)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
                output.after_step(step)
                if stop["requested"] or step >= args.steps:
                    break
    except KeyboardInterrupt:
        stop["requested"] = True
    finally:
        if step > training.start and not failed:
            output.save(step)
        if progress is not None:
            progress.close()
    return step, started


def main(argv=None):
    args = parse_args(argv)
    overrides = parse_overrides(args.set)
    if args.summary:
        print(json.dumps(build_model(args.model, args.preset, **overrides).describe()))
        return
    if args.mode_seeking and not get_family(args.model).mode_seeking:
        raise SystemExit(f"--mode-seeking is a G3AN and AVLAE training term; {args.model} does not use it")
    if args.r1 and not get_family(args.model).r1:
        raise SystemExit(f"--r1 is an AVLAE training term; {args.model} does not use it")
    procs = start_processes(args)
    dataset, conditional = load_data(args, overrides)
    if args.d_mismatched_labels and not conditional:
        raise SystemExit("--d-mismatched-labels needs a conditional model: labelled data, a conditional family "
                         "(G3AN, EncGAN3) and no --unconditional")
    output_dir = Path(args.out)
    state = read_resume_state(args, output_dir / "checkpoint.pt")
    training = build_training(args, overrides, state, procs)
    if args.d_classify_fakes and not getattr(training.model.config, "d_classifier", False):
        raise SystemExit("--d-classify-fakes trains D_I's classifier: it needs a G3AN with --set d_classifier=true")
    output = RunOutput(args, procs, training, dataset, conditional)

    stop = {"requested": False}

    def request_stop(signum, frame):
        stop["requested"] = True
    signal.signal(signal.SIGTERM, request_stop)

    if training.start == 0:
        output.write_samples(0)
    step, started = train_loop(args, procs, training, dataset, output, stop)
    if procs.main:
        if not args.sample_every or step % args.sample_every:
            output.write_samples(step)
        output.writer.close()
        elapsed = time.time() - started
        print(json.dumps({"step": step, "stopped_early": stop["requested"], "steps_per_s":
                          round((step - training.start) / elapsed, 3) if elapsed > 0 else None,
                          "checkpoint": str(output.checkpoint_path), "samples": str(output_dir / "samples")}),
              flush=True)
    if procs.distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
