"""Encode a video file into latents with a ``<name>_encode`` model.

    python -m clients.encode --url 127.0.0.1:8001 --model encgan3_encode clip.mp4 --out latents.npz

The file is decoded with PyAV and fitted to the model's clip shape (T, H, W read from the
model's ``video`` input): ``--start``/``--step`` choose the frames, the frame is centre-cropped
to the model's aspect ratio and resized; the tool prints exactly what it did. The ``.npz``
holds every output of the model (``z_a_mean``, ``z_a_logvar``, ``z_m_mean``, ``z_m_logvar`` for
encgan3; ``w_a``, ``w_m`` for avlae), each without the batch axis, plus ``clip`` (the uint8
frames that were sent), ``frame_indices`` and ``description``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from .triton import Connection, TritonClientError
from .video_io import ClipFit, fit_clip, write_npz

__all__ = ["encode_file", "main"]


def load_clip(conn: Connection, model: str, video: str, start: int = 0, step: int = 1) -> ClipFit:
    """Fit ``video`` to the clip shape of ``model``'s ``video`` input."""
    info = conn.model_info(model)
    info.require_inputs(["video"])
    T, H, W = info.video_shape("input")
    return fit_clip(video, T, H, W, start=start, step=step)


def encode_file(conn: Connection, model: str, video: str, start: int = 0, step: int = 1
                ) -> tuple[dict[str, np.ndarray], ClipFit]:
    """``({output: array without batch axis}, how the clip was cut)``."""
    clip = load_clip(conn, model, video, start, step)
    outputs = conn.infer(model, {"video": clip.frames[None]})
    return {name: array[0] for name, array in outputs.items()}, clip


def add_clip_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC endpoint HOST:PORT (default 127.0.0.1:8001)")
    p.add_argument("--start", type=int, default=0, help="first frame to take (default 0)")
    p.add_argument("--step", type=int, default=1, help="take every STEP-th frame (default 1)")
    p.add_argument("--retries", type=int, default=6, help="retries while the server is unavailable")
    p.add_argument("video", help="input video file (anything PyAV/FFmpeg decodes)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clients.encode", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a <name>_encode model")
    p.add_argument("--out", required=True, help="output .npz")
    add_clip_arguments(p)
    args = p.parse_args(argv)
    try:
        with Connection(args.url, retries=args.retries) as conn:
            latents, clip = encode_file(conn, args.model, args.video, args.start, args.step)
    except (TritonClientError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    description = clip.describe()
    print(f"{args.video}: {description}")
    write_npz(args.out, **latents, clip=clip.frames, frame_indices=np.asarray(clip.indices, np.int64),
              description=np.asarray(description))
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in latents.items())
    print(f"wrote {args.out}: {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
