"""Score generated videos against real clips: FVD, frame FID, IS (+ the papers' ResNeXt video FID).

    python -m train.evaluate --checkpoint C --data D --num-videos N [--metrics fvd,fid,is]
    python -m train.evaluate --data D --real-vs-real --num-videos N        # train vs held-out floor
    python -m train.evaluate --data D --videos DIR --num-videos N          # files from the client
    python -m train.evaluate --data D --vs-data D2 --num-videos N          # two data sets
    python -m train.evaluate --data D --vs-data D --vs-seed 1 --num-videos N  # resampling floor
    python -m train.evaluate --data carphone --split even --vs-data carphone --vs-split odd \
        --num-videos N                    # two disjoint halves (interleaved frames) of one video
    python -m train.evaluate --data D --untrained g3an:tiny --num-videos N # a freshly built model

Prints one JSON object on stdout: every figure, where both video sets came from, the protocol of
each metric (networks, weight hashes, preprocessing, sample sizes), warnings and timings. Progress
bars and warnings go to stderr. Real-set features are cached (see ``train.metrics.features``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from train.jsonio import json_default
from train.metrics import RECOMMENDED, sample_size_warnings
from train.metrics.features import (I3DLogits, InceptionFrames, ResNeXtPool, array_batches,
                                    dataset_batches, features_cached, generator_batches)
from train.metrics.frechet import frechet_distance_features
from train.metrics.i3d import WeightsError
from train.metrics.inception_score import inception_score
from train.metrics.resnext import MISSING_MESSAGE, RESNEXT_ENV

ALL_METRICS = ("fvd", "fid", "is", "resnext")
VIDEO_EXTS = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".m4v", ".mpg", ".mpeg", ".ogv", ".y4m"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a training checkpoint: sample --num-videos videos from it")
    src.add_argument("--videos", help="a folder of video files (or .npy uint8 [T,H,W,3]) to score")
    src.add_argument("--real-vs-real", action="store_true",
                     help="compare the data set's train split with its held-out (test) split: the floor")
    src.add_argument("--vs-data", metavar="SPEC", help="compare --data with another data set (same split)")
    src.add_argument("--untrained", metavar="FAMILY[:PRESET]",
                     help="a freshly built, untrained model (e.g. g3an:tiny): the ceiling")
    p.add_argument("--data", required=True, help="real data set spec (moving-mnist, carphone, folder, ...)")
    p.add_argument("--num-videos", type=int, required=True, help="videos per set")
    p.add_argument("--metrics", default="fvd,fid,is",
                   help=f"comma list from {','.join(ALL_METRICS)} (default fvd,fid,is)")
    p.add_argument("--split", default="train", help="split of --data used as the real set (default train)")
    p.add_argument("--resolution", type=int, default=None,
                   help="real clip size (default: the model's, else 64)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames per real clip (default: the model's, else 16, the FVD protocol)")
    p.add_argument("--frame-steps", default=None,
                   help="time steps of the real clips, e.g. 1 or 1,2,3,4 (default: the checkpoint's training "
                        "data's, else 1,2,3,4)")
    p.add_argument("--fid-frames", type=int, default=4, help="frames per clip used for frame FID (default 4)")
    p.add_argument("--is-splits", type=int, default=1, help="also report IS mean/std over this many splits")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="data clip seed and latent seed")
    p.add_argument("--vs-split", default=None,
                   help="split of the second real set (--vs-data; default --split). With single videos, "
                        "--split even --vs-split odd compares the two interleaved halves")
    p.add_argument("--vs-seed", type=int, default=None,
                   help="clip seed of the second real set (--vs-data / --real-vs-real; default --seed). "
                        "--vs-data D --vs-seed 1 on D itself gives the resampling floor of D")
    p.add_argument("--resnext-weights", default=None,
                   help=f"local resnext-101-kinetics.pth for the papers' video FID (or ${RESNEXT_ENV})")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--output", help="also write the JSON here")
    args = p.parse_args(argv)
    args.metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    bad = set(args.metrics) - set(ALL_METRICS)
    if bad:
        p.error(f"unknown metric(s) {sorted(bad)}; choose from {ALL_METRICS}")
    if args.num_videos < 2:
        p.error("--num-videos must be at least 2 (a covariance needs two samples)")
    return args


# ----------------------------------------------------------------------------- sources
def _build_dataset(spec, split, resolution, frames, seed, steps=(1, 2, 3, 4)):
    from train.data import build_dataset
    return build_dataset(spec, resolution=resolution, frames=frames, split=split, steps=steps,
                         flip=False, seed=seed)


def _dataset_source(ds, n, batch_size):
    desc = ds.describe() if hasattr(ds, "describe") else {"repr": repr(ds)}
    return {"kind": "dataset", "describe": desc, "items": f"0..{n - 1} (item i = clip i mod len at epoch i div len)"}, \
        (lambda: dataset_batches(ds, n, batch_size))


def read_video_file(path: Path, frames: int, resolution: int | None) -> np.ndarray | None:
    """First ``frames`` frames of a file as uint8 [T,H,W,3] (resized to resolution² when given)."""
    if path.suffix == ".npy":
        a = np.load(path, allow_pickle=False)
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
            return None
        a = a[:frames]
    else:
        import av
        out = []
        with av.open(str(path)) as c:
            kw = {"format": "rgb24"}
            if resolution:
                kw.update(width=resolution, height=resolution)
            for f in c.decode(video=0):
                out.append(f.to_ndarray(**kw))
                if len(out) == frames:
                    break
        a = np.stack(out) if out else None
    if a is None or len(a) < frames:
        return None
    if resolution and a.shape[1:3] != (resolution, resolution):
        x = torch.from_numpy(a).permute(0, 3, 1, 2).float()
        x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="bilinear",
                                            align_corners=False, antialias=True)
        a = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return a


def folder_videos(folder: str, n: int, frames: int, resolution: int | None) -> tuple[np.ndarray, list[str]]:
    root = Path(folder)
    if not root.is_dir():
        raise SystemExit(f"train.evaluate: --videos {folder} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix.lower() in VIDEO_EXTS or p.suffix == ".npy"))
    vids, used, skipped = [], [], []
    for f in files:
        if len(vids) == n:
            break
        try:
            a = read_video_file(f, frames, resolution)
        except Exception as e:  # noqa: BLE001 - report and go on
            a = None
            skipped.append(f"{f.name}: {e}")
        if a is None:
            skipped.append(f"{f.name}: unreadable or shorter than {frames} frames")
            continue
        vids.append(a)
        used.append(str(f))
    if len(vids) < 2:
        raise SystemExit(f"train.evaluate: found {len(vids)} usable videos in {folder} (need >= 2)")
    for s in skipped[:10]:
        warnings.warn(f"--videos: skipped {s}")
    return np.stack(vids), used


# ----------------------------------------------------------------------------- main
def build_nets(args, warn_list):
    nets, notes = {}, {}
    if "fvd" in args.metrics or "is" in args.metrics:
        nets["i3d"] = I3DLogits(device=args.device)
    if "fid" in args.metrics:
        nets["inception"] = InceptionFrames(frames_per_video=args.fid_frames, device=args.device)
    if "resnext" in args.metrics or args.resnext_weights or os.environ.get(RESNEXT_ENV):
        try:
            nets["resnext"] = ResNeXtPool(args.resnext_weights, device=args.device)
            if "resnext" not in args.metrics:
                args.metrics.append("resnext")
        except WeightsError as e:
            notes["resnext"] = str(e)
            if "resnext" in args.metrics:
                print(f"train.evaluate: ResNeXt video FID not computed: {e}", file=sys.stderr)
                warn_list.append(f"resnext: {e}")
    else:
        notes["resnext"] = "not requested; " + MISSING_MESSAGE
    return nets, notes


def evaluate(args) -> dict:
    t_start = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    warn_list: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sample_size_warnings(args.metrics, args.num_videos, args.fid_frames)
    for w in caught:
        warn_list.append(str(w.message))
        print(f"WARNING: {w.message}", file=sys.stderr)

    n, bs = args.num_videos, args.batch_size
    bundle, fake_meta = _load_generator(args)
    resolution = args.resolution or 64
    args.frames = args.frames or 16
    frame_steps = tuple(int(s) for s in (args.frame_steps or "1,2,3,4").split(","))

    nets, notes = build_nets(args, warn_list)  # I3D / Inception load on first use (not at all if cached)
    use_cache = not args.no_cache
    progress = not args.no_progress

    # Set A: the real data (cached).
    real_ds = _build_dataset(args.data, args.split, resolution, args.frames, args.seed, frame_steps)
    src_a, make_a = _dataset_source(real_ds, n, bs)
    feats_a, info_a = features_cached(nets, src_a, n, make_a, f"real {args.data}:{args.split}", use_cache, progress)

    # Set B.
    feats_b, info_b, meta_b = _second_set(args, nets, bundle, fake_meta, resolution, frame_steps, warn_list)

    results: dict = {}
    if "fvd" in args.metrics:
        results["fvd"] = frechet_distance_features(feats_a["i3d"], feats_b["i3d"])
    if "fid" in args.metrics:
        results["fid_frames"] = frechet_distance_features(feats_a["inception"], feats_b["inception"])
    if "is" in args.metrics:
        results["is"] = inception_score(feats_b["i3d"], splits=args.is_splits)
        results["is_real"] = inception_score(feats_a["i3d"], splits=args.is_splits)
    if "resnext" in args.metrics:
        results["fid_resnext"] = (frechet_distance_features(feats_a["resnext"], feats_b["resnext"])
                                  if "resnext" in nets else None)

    protocol = _protocol(args, nets, feats_b, notes, resolution, frame_steps)

    return {
        "metrics": results,
        "real": src_a,
        "fake": meta_b,
        "protocol": protocol,
        "warnings": warn_list,
        "timing_s": {"real": info_a, "fake": info_b, "total": round(time.time() - t_start, 2)},
        "torch_threads": torch.get_num_threads(),
    }


def _load_generator(args):
    """The model of --checkpoint or --untrained (→ (model, its description)); (None, {}) for neither.
    Fills --resolution, --frames and --frame-steps from the model and its checkpoint where unset."""
    bundle, fake_meta = None, {}
    if args.checkpoint or args.untrained:
        if args.checkpoint:
            from train.checkpoint import load_for_inference
            bundle, meta = load_for_inference(args.checkpoint)
            fake_meta = {"kind": "checkpoint", "path": str(args.checkpoint),
                         "family": meta.get("family"), "preset": meta.get("preset"), "step": meta.get("step")}
            if args.frame_steps is None and meta.get("data", {}).get("steps"):
                args.frame_steps = ",".join(str(s) for s in meta["data"]["steps"])
        else:
            from train.models import build_model
            fam, _, preset = args.untrained.partition(":")
            torch.manual_seed(args.seed)
            bundle = build_model(fam, preset or "paper64").eval()
            fake_meta = {"kind": "untrained", "family": fam, "preset": preset or "paper64", "init_seed": args.seed}
        bundle = bundle.to(args.device).eval()
        if hasattr(bundle, "video_shape"):
            if args.resolution is None:
                args.resolution = int(bundle.video_shape[-1])
            if args.frames is None:
                args.frames = int(bundle.video_shape[1])
        fake_meta.update(latent_seed=args.seed, latents="z_a, z_m ~ N(0, I); labels uniform if conditional",
                         output="float [-1,1] clamped, quantized to 8 bits like a saved video")
    return bundle, fake_meta


def _second_set(args, nets, bundle, fake_meta, resolution, frame_steps, warn_list):
    """Features of set B: held-out / other real data, a folder of videos, or the model's samples.
    → (features, timing, description)"""
    n, bs = args.num_videos, args.batch_size
    use_cache, progress = not args.no_cache, not args.no_progress
    if args.real_vs_real or args.vs_data:
        spec_b, split_b = ((args.data, "test") if args.real_vs_real
                           else (args.vs_data, args.vs_split or args.split))
        seed_b = args.seed if args.vs_seed is None else args.vs_seed
        ds_b = _build_dataset(spec_b, split_b, resolution, args.frames, seed_b, frame_steps)
        src_b, make_b = _dataset_source(ds_b, n, bs)
        feats_b, info_b = features_cached(nets, src_b, n, make_b, f"real {spec_b}:{split_b}", use_cache, progress)
        meta_b = src_b
    elif args.videos:
        vids, used = folder_videos(args.videos, n, args.frames, resolution)
        if len(vids) < n:
            msg = f"--videos {args.videos} gave {len(vids)} usable videos, fewer than --num-videos {n}"
            warn_list.append(msg)
            print(f"WARNING: {msg}", file=sys.stderr)
        feats_b, info_b = features_cached(nets, None, len(vids), lambda: array_batches(vids, bs),
                                          "videos", False, progress)
        meta_b = {"kind": "folder", "path": str(args.videos), "videos": len(vids), "files": used[:5],
                  "read": f"first {args.frames} frames, resized to {resolution}x{resolution} if needed"}
    else:
        feats_b, info_b = features_cached(nets, None, n, lambda: generator_batches(bundle, n, bs, args.seed, args.device),
                                          "generated", False, progress)
        meta_b = fake_meta
    return feats_b, info_b, meta_b


def _protocol(args, nets, feats_b, notes, resolution, frame_steps) -> dict:
    """How the figures were measured: sample sizes, clips, each metric's network and formula."""
    n = args.num_videos
    protocol = {
        "num_videos": {"real": n, "fake": _rows(feats_b, nets)},
        "clip": {"frames": args.frames, "resolution": resolution, "steps": list(frame_steps), "real_split": args.split,
                 "seed": args.seed},
        "frechet": ("||mu1-mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), float64, unbiased covariances; trace term "
                    "exactly from singular values / symmetric eigenvalues (train.metrics.frechet)"),
        "recommended_sample_sizes": RECOMMENDED,
    }
    if "i3d" in nets:
        protocol["fvd"] = nets["i3d"].protocol()
    if "inception" in nets:
        protocol["fid_frames"] = {**nets["inception"].protocol(),
                                  "frames_per_set": int(feats_b["inception"].shape[0])}
    if "is" in args.metrics:
        protocol["is"] = {"posteriors": "softmax of the I3D Kinetics-400 logits (same features as FVD)",
                          "entropy_unit": "nats", "is": "exp(H(y) - H(y|x))", "splits": args.is_splits}
    if "resnext" in nets:
        protocol["fid_resnext"] = nets["resnext"].protocol()
    protocol["notes"] = notes
    return protocol


def _rows(feats: dict, nets: dict) -> int | None:
    for k, f in feats.items():
        return int(f.shape[0] // nets[k].rows_per_video)
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        out = evaluate(args)
    except WeightsError as e:
        print(f"train.evaluate: {e}", file=sys.stderr)
        return 2
    text = json.dumps(out, indent=1, default=json_default)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
