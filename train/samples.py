"""GIF grids of generated clips, written atomically (training previews)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_path


def to_uint8(videos: torch.Tensor) -> np.ndarray:
    """[N, 3, T, H, W] in [−1, 1] → uint8 [N, T, H, W, 3] (the wire contract's layout)."""
    x = ((videos.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1).cpu().numpy()


def grid_frames(videos: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 [N, T, H, W, 3] → [T, rows·(H+pad)+pad, cols·(W+pad)+pad, 3] tiles on black."""
    n, t, h, w, _ = videos.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.zeros((t, rows * (h + pad) + pad, columns * (w + pad) + pad, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[:, y:y + h, x:x + w] = videos[i]
    return canvas


def write_gif(frames: np.ndarray, path: str | Path, fps: int = 8) -> None:
    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path, ".gif") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(1000 / fps), loop=0)


def write_sample_grid(videos: torch.Tensor, path: str | Path, columns: int | None = None) -> None:
    write_gif(grid_frames(to_uint8(videos), columns), path)


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 8) -> None:
    """uint8 [T, H, W, 3] → H.264 (or MPEG-4) mp4 via PyAV, written atomically."""
    import av
    with atomic_path(path, ".mp4") as tmp, av.open(str(tmp), "w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2] + frames.shape[2] % 2, frames.shape[1] + frames.shape[1] % 2
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12"}
        for frame in frames:
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
