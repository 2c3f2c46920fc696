"""Video files for every stage: mp4/GIF/npz written atomically with PyAV and Pillow, and grids.

Frames are ``uint8 [T, H, W, 3]`` RGB everywhere, as on the wire. Training writes its sample
grids with these, `python -m train.data` its clips, and the clients the videos users get.
"""
from __future__ import annotations

import fractions
import io
import os
import pathlib
from typing import Sequence

import av
import numpy as np
from PIL import Image

from .atomic import atomic_path

FORMATS = ("mp4", "gif", "npz")


def check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return frames


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0,
              codec: str | None = None, crf: int = 18) -> pathlib.Path:
    """H.264 (libx264, else MPEG-4 Part 2) yuv420p mp4, atomically.

    yuv420p needs even sizes: an odd height or width gets one replicated edge row/column.
    """
    frames = check_frames(frames)
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")
    if codec is None:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rate = fractions.Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": str(crf), "preset": "medium"}
            else:
                stream.bit_rate = max(200_000, int(frames.shape[1] * frames.shape[2] * fps * 2))
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return pathlib.Path(path)


def _gif_bytes(frames: np.ndarray, fps: float) -> bytes:
    images = [Image.fromarray(f, mode="RGB") for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(10, int(round(1000.0 / fps))), loop=0, optimize=False, disposal=1)
    return buf.getvalue()


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0) -> pathlib.Path:
    """Looping GIF (Pillow, adaptive palette per frame), atomically."""
    data = _gif_bytes(check_frames(frames), fps)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return pathlib.Path(path)


def write_npz(path: str | os.PathLike, **arrays) -> pathlib.Path:
    """``numpy.savez`` of the arrays (raw uint8 video and its latents), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return pathlib.Path(path)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0, fmt: str | None = None,
                **extra_arrays) -> pathlib.Path:
    """Write by format (``mp4``/``gif``/``npz``, default from the suffix)."""
    fmt = (fmt or pathlib.Path(path).suffix.lstrip(".")).lower()
    if fmt == "mp4":
        return write_mp4(path, frames, fps)
    if fmt == "gif":
        return write_gif(path, frames, fps)
    if fmt == "npz":
        return write_npz(path, video=check_frames(frames), **extra_arrays)
    raise ValueError(f"unknown video format {fmt!r} (use one of {', '.join(FORMATS)})")


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of ``[..., H, W, C]`` by an integer factor."""
    if factor <= 1:
        return frames
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def make_grid(videos: Sequence[Sequence[np.ndarray]], pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile ``videos[row][col]`` (each uint8 [T, H, W, 3], same shape) into one video.

    The result is ``[T, rows*H + (rows+1)*pad, cols*W + (cols+1)*pad, 3]``: ``pad`` pixels of
    ``pad_value`` around and between the cells. Rows may be shorter than the longest row
    (the missing cells stay blank).
    """
    rows = len(videos)
    cols = max(len(r) for r in videos)
    first = check_frames(videos[0][0])
    T, H, W, _ = first.shape
    grid = np.full((T, rows * H + (rows + 1) * pad, cols * W + (cols + 1) * pad, 3), pad_value, np.uint8)
    for r, row in enumerate(videos):
        for c, video in enumerate(row):
            video = check_frames(video)
            if video.shape != first.shape:
                raise ValueError(f"grid cell ({r}, {c}) has shape {list(video.shape)}, expected {list(first.shape)}")
            y, x = pad + r * (H + pad), pad + c * (W + pad)
            grid[:, y:y + H, x:x + W] = video
    return grid
