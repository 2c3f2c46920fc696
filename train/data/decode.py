"""Decoding with PyAV (video containers) and Pillow (frame images), resized while decoding."""
from __future__ import annotations

import os
import re
from typing import Callable

import av
import numpy as np
from PIL import Image

from .core import center_crop, resized_size

VIDEO_EXTS = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".m4v", ".mpg", ".mpeg",
                        ".wmv", ".flv", ".ogv", ".3gp", ".ts", ".mts", ".y4m"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})


def natural_key(name: str):
    """Sort key so that frame2.jpg < frame10.jpg."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def probe_video(path: str) -> int:
    """Number of video frames in a container, from metadata when it has it, else by counting
    packets (no decoding). Raises (av.FFmpegError, OSError, ValueError) on unreadable files."""
    with av.open(str(path)) as c:
        if not c.streams.video:
            raise ValueError("no video stream")
        s = c.streams.video[0]
        if s.codec_context.width <= 0 or s.codec_context.height <= 0:
            raise ValueError("video stream has no frame size")
        n = int(s.frames or 0)
        if n <= 0:
            n = sum(1 for p in c.demux(s) if p.size > 0)
    return n


def decode_video(path: str, size: tuple[int, int] | None = None, start: int = 0,
                 stop: int | None = None, keep: Callable[[int], bool] | None = None,
                 interpolation: str = "BILINEAR") -> np.ndarray:
    """Decode frames [start, stop) (or those in that range for which keep(i) is true) to uint8
    [N, H, W, 3] RGB, resized to size=(width, height) by swscale while converting. Frames before
    `start` or rejected by `keep` are decoded but never converted (cheap)."""
    out: np.ndarray | None = None
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        kw = {"format": "rgb24"}
        if size is not None:
            kw.update(width=int(size[0]), height=int(size[1]), interpolation=interpolation)
        cap = int(s.frames or 0)
        for i, frame in enumerate(c.decode(s)):
            if stop is not None and i >= stop:
                break
            if i < start or (keep is not None and not keep(i)):
                continue
            a = frame.to_ndarray(**kw)
            if out is None:
                if keep is None:
                    total = (stop if stop is not None else max(cap, i + 1)) - start
                else:
                    total = 16
                out = np.empty((max(total, 1),) + a.shape, np.uint8)
            if n >= len(out):
                out = np.concatenate([out, np.empty_like(out)])
            out[n] = a
            n += 1
    if out is None:
        return np.empty((0, 0, 0, 3), np.uint8)
    return out[:n] if n == len(out) else out[:n].copy()


def video_frame_size(path: str) -> tuple[int, int]:
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        return cc.width, cc.height


def decode_video_square(path: str, resolution: int, start: int = 0, stop: int | None = None,
                        keep: Callable[[int], bool] | None = None) -> np.ndarray:
    """Frames with the shorter side resized to `resolution` (bilinear), then centre-cropped."""
    w, h = video_frame_size(path)
    frames = decode_video(path, resized_size(w, h, resolution), start, stop, keep)
    return np.ascontiguousarray(center_crop(frames, resolution))


def load_image_square(path: str, resolution: int) -> np.ndarray:
    """One frame image -> uint8 [R, R, 3]: shorter side resized to R (bilinear), centre crop."""
    with Image.open(path) as im:
        w, h = im.size
        tw, th = resized_size(w, h, resolution)
        if im.format == "JPEG":
            im.draft("RGB", (tw, th))  # decode at a reduced scale when that is >= the target
        im = im.convert("RGB")
        if im.size != (tw, th):
            im = im.resize((tw, th), Image.BILINEAR)
        return np.ascontiguousarray(center_crop(np.asarray(im), resolution))


def list_frame_images(folder: str) -> list[str]:
    names = [n for n in os.listdir(folder)
             if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTS
             and os.path.isfile(os.path.join(folder, n))]
    return [os.path.join(folder, n) for n in sorted(names, key=natural_key)]


def check_image(path: str) -> None:
    """Raise if the image header cannot be read."""
    with Image.open(path) as im:
        im.size  # noqa: B018
