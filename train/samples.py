"""GIF grids of generated clips (training previews), written with the shared video writers."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from common.video_files import make_grid, write_gif


def to_uint8(videos: torch.Tensor) -> np.ndarray:
    """[N, 3, T, H, W] in [−1, 1] → uint8 [N, T, H, W, 3] (the wire contract's layout)."""
    x = ((videos.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1).cpu().numpy()


def grid_frames(videos: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 [N, T, H, W, 3] → one video of the clips tiled in reading order on black."""
    columns = columns or math.ceil(math.sqrt(len(videos)))
    rows = [list(videos[r:r + columns]) for r in range(0, len(videos), columns)]
    return make_grid(rows, pad=pad, pad_value=0)


def write_sample_grid(videos: torch.Tensor, path: str | Path, columns: int | None = None) -> None:
    write_gif(path, grid_frames(to_uint8(videos), columns))
