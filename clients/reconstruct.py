"""Reconstruct a video file through a ``<name>_reconstruct`` model (encode -> decode ensemble).

    python -m clients.reconstruct --url 127.0.0.1:8001 --model encgan3_reconstruct clip.mp4 --out recon.mp4

The file is fitted to the model's clip shape like ``clients.encode`` does (and the tool
prints how). The model's output is its ``video`` output, or else its only UINT8
[-1, T, H, W, 3] output (a Triton ensemble cannot name its output like its input). The output format follows ``--out``'s suffix (.mp4, .gif or .npz);
``--side-by-side`` writes the input clip and its reconstruction next to each other.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .encode import add_clip_arguments, load_clip
from .triton import Connection, TritonClientError
from .video_io import make_grid, write_video

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clients.reconstruct", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a <name>_reconstruct model")
    p.add_argument("--out", required=True, help="output file: .mp4, .gif or .npz")
    p.add_argument("--fps", type=float, default=None, help="frame rate of the output (default: the input's / step)")
    p.add_argument("--side-by-side", action="store_true", help="write input | reconstruction")
    add_clip_arguments(p)
    args = p.parse_args(argv)
    try:
        with Connection(args.url, retries=args.retries) as conn:
            clip = load_clip(conn, args.model, args.video, args.start, args.step)
            print(f"{args.video}: {clip.describe()}")
            output = conn.model_info(args.model).video_output()
            recon = conn.infer(args.model, {"video": clip.frames[None]}, [output])[output][0]
        frames = make_grid([[clip.frames, recon]], pad=0) if args.side_by_side else recon
        fps = args.fps or clip.fps / max(1, args.step)
        write_video(args.out, frames, fps=fps, **({"input": clip.frames} if args.out.endswith(".npz") else {}))
    except (TritonClientError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {frames.shape[0]} frames of {frames.shape[2]}×{frames.shape[1]} at {fps:g} fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
