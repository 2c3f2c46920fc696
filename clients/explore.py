"""Latent-space manipulations of a ``<name>_sample`` model as GIF grids (G3AN, Figs. 6, 9-11).

    python -m clients.explore --url 127.0.0.1:8001 --model g3an_sample --mode fix-appearance \\
        --seed 0 1 --vary 10-13 --out grid.gif

Latents come from seeds by :func:`clients.latents.latents_for_seed`. Modes (one grid row per
entry of ``--seed`` unless said otherwise):

- ``fix-appearance`` (G3AN Fig. 6): each row keeps z_a of its ``--seed``; the columns take z_m
  from the ``--vary`` seeds. Same look, different motions.
- ``fix-motion``: each row keeps z_m of its ``--seed``; the columns take z_a from ``--vary``.
- ``add-appearance`` (G3AN Fig. 11): columns are z_a(A), z_a(B) and z_a(A) + z_a(B), with A the
  row's ``--seed`` and B ``--seed2``; all three share the z_m of the row's seed.
- ``sweep`` (G3AN Figs. 9-10): each row starts from the latents of its ``--seed`` and sets one
  dimension (``--latent z_a|z_m``, ``--dim``) to ``--steps`` values evenly spaced over
  ``--range LO HI`` across the columns.

The grid has ``pad`` pixels of white around and between cells: a grid of R rows and C columns
of H×W videos (after ``--scale``) is ``C*W + (C+1)*pad`` wide and ``R*H + (R+1)*pad`` high, with
the model's T frames. The output format follows ``--out``'s suffix (.gif, .mp4 or .npz).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from .latents import latents_for_seed, one_hot
from .sample import parse_seeds
from .triton import Connection, TritonClientError
from .video_io import make_grid, upscale, write_video

__all__ = ["MODES", "grid_latents", "main"]

MODES = ("fix-appearance", "fix-motion", "add-appearance", "sweep")


def grid_latents(mode: str, seeds: Sequence[int], Da: int, Dm: int, *, vary: Sequence[int] = (),
                 seed2: int | None = None, latent: str = "z_a", dim: int = 0,
                 value_range: tuple[float, float] = (-3.0, 3.0), steps: int = 7
                 ) -> tuple[np.ndarray, np.ndarray, int, int, list[str]]:
    """``(z_a [R*C, Da], z_m [R*C, Dm], R, C, column titles)`` in row-major order."""
    rows_a, rows_m, titles = [], [], []
    if mode in ("fix-appearance", "fix-motion"):
        if not vary:
            raise ValueError(f"--mode {mode} needs --vary seeds")
        for s in seeds:
            z_a, z_m = latents_for_seed(s, Da, Dm)
            for v in vary:
                va, vm = latents_for_seed(v, Da, Dm)
                rows_a.append(z_a if mode == "fix-appearance" else va)
                rows_m.append(vm if mode == "fix-appearance" else z_m)
        titles = [f"{'z_m' if mode == 'fix-appearance' else 'z_a'} of seed {v}" for v in vary]
        cols = len(vary)
    elif mode == "add-appearance":
        if seed2 is None:
            raise ValueError("--mode add-appearance needs --seed2")
        b_a, _ = latents_for_seed(seed2, Da, Dm)
        for s in seeds:
            a_a, a_m = latents_for_seed(s, Da, Dm)
            rows_a += [a_a, b_a, a_a + b_a]
            rows_m += [a_m, a_m, a_m]
        titles = ["z_a(A)", f"z_a(B={seed2})", "z_a(A) + z_a(B)"]
        cols = 3
    elif mode == "sweep":
        size = Da if latent == "z_a" else Dm
        if latent not in ("z_a", "z_m"):
            raise ValueError(f"--latent must be z_a or z_m, not {latent!r}")
        if not 0 <= dim < size:
            raise ValueError(f"--dim {dim} is out of range: {latent} has {size} dimensions (0..{size - 1})")
        if steps < 1:
            raise ValueError("--steps must be >= 1")
        values = np.linspace(value_range[0], value_range[1], steps, dtype=np.float32)
        for s in seeds:
            z_a, z_m = latents_for_seed(s, Da, Dm)
            for value in values:
                a, m = z_a.copy(), z_m.copy()
                (a if latent == "z_a" else m)[dim] = value
                rows_a.append(a)
                rows_m.append(m)
        titles = [f"{latent}[{dim}] = {v:g}" for v in values]
        cols = steps
    else:
        raise ValueError(f"unknown --mode {mode!r} (use one of {', '.join(MODES)})")
    return np.stack(rows_a), np.stack(rows_m), len(seeds), cols, titles


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clients.explore", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC endpoint HOST:PORT (default 127.0.0.1:8001)")
    p.add_argument("--model", required=True, help="a <name>_sample model")
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--seed", type=int, nargs="+", default=[0], help="one grid row per seed (default 0)")
    p.add_argument("--vary", default="1-4", help="seeds of the varied latent, e.g. 1-4 or 3,7,9 (fix-* modes; default 1-4)")
    p.add_argument("--seed2", type=int, default=None, help="seed B for add-appearance (default: first --seed + 1)")
    p.add_argument("--latent", choices=("z_a", "z_m"), default="z_a", help="sweep: which latent (default z_a)")
    p.add_argument("--dim", type=int, default=0, help="sweep: which dimension (default 0)")
    p.add_argument("--range", type=float, nargs=2, default=(-3.0, 3.0), metavar=("LO", "HI"),
                   help="sweep: value range (default -3 3)")
    p.add_argument("--steps", type=int, default=7, help="sweep: number of values (default 7)")
    p.add_argument("--label", type=int, default=None, help="class index for a conditional model")
    p.add_argument("--scale", type=int, default=1, help="integer nearest-neighbour upscaling of each cell")
    p.add_argument("--pad", type=int, default=2, help="white pixels around and between cells (default 2)")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--retries", type=int, default=6)
    p.add_argument("--out", required=True, help="output file: .gif (default use), .mp4 or .npz")
    args = p.parse_args(argv)
    try:
        with Connection(args.url, retries=args.retries) as conn:
            info = conn.model_info(args.model)
            info.require_inputs(["z_a", "z_m"])
            Da, Dm = info.feature_dim("z_a"), info.feature_dim("z_m")
            seed2 = args.seed2 if args.seed2 is not None else args.seed[0] + 1
            z_a, z_m, rows, cols, titles = grid_latents(
                args.mode, args.seed, Da, Dm, vary=parse_seeds(args.vary), seed2=seed2, latent=args.latent,
                dim=args.dim, value_range=tuple(args.range), steps=args.steps)
            extra = {}
            if "label" in info.inputs:
                if args.label is None:
                    raise ValueError(f"model {args.model} is conditional: pass --label K")
                extra["label"] = one_hot(args.label, info.feature_dim("label"), len(z_a))
            elif args.label is not None:
                raise ValueError(f"model {args.model} is unconditional: drop --label")
            step = info.max_batch_size or len(z_a)
            videos = []
            for i in range(0, len(z_a), step):
                inputs = {"z_a": z_a[i:i + step], "z_m": z_m[i:i + step]}
                inputs.update({k: v[i:i + step] for k, v in extra.items()})
                videos.append(conn.infer(args.model, inputs, ["video"])["video"])
        videos = upscale(np.concatenate(videos), args.scale)
        grid = make_grid([[videos[r * cols + c] for c in range(cols)] for r in range(rows)], pad=args.pad)
        write_video(args.out, grid, fps=args.fps,
                    **({"z_a": z_a, "z_m": z_m} if args.out.endswith(".npz") else {}))
    except (TritonClientError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {args.mode}, {rows} row(s) (seeds {', '.join(map(str, args.seed))}) × {cols} "
          f"column(s) [{'; '.join(titles)}], {grid.shape[0]} frames of {grid.shape[2]}×{grid.shape[1]} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
