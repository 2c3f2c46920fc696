"""Video files for the clients: read a file and fit a clip of it to a model's shape with PyAV.

Frames are ``uint8 [T, H, W, 3]`` RGB everywhere, as on the wire. Writing (atomic mp4/gif/npz)
and grids are shared with training and live in ``common/``; they are re-exported here so a
client imports its file helpers from one place.
"""

from __future__ import annotations

import dataclasses
import os

import av
import numpy as np
from PIL import Image

from common.atomic import atomic_path, remove_stale_temporaries
from common.video_files import FORMATS, make_grid, upscale, write_gif, write_mp4, write_npz, write_video

__all__ = [
    "FORMATS",
    "ClipFit",
    "atomic_path",
    "fit_clip",
    "make_grid",
    "read_frames",
    "remove_stale_temporaries",
    "upscale",
    "write_gif",
    "write_mp4",
    "write_npz",
    "write_video",
]


# ---------------------------------------------------------------------------- readers
def read_frames(path: str | os.PathLike, *, start: int = 0, step: int = 1, count: int | None = None
                ) -> tuple[np.ndarray, int, float]:
    """Decode frames ``start, start+step, ...`` (``count`` of them, or all) with PyAV.

    Returns ``(frames uint8 [N, H, W, 3], total frame count of the file, fps)``.
    """
    if start < 0 or step < 1:
        raise ValueError(f"start must be >= 0 and step >= 1 (got start={start}, step={step})")
    frames = []
    total = 0
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        known_total = int(stream.frames or 0)
        for index, frame in enumerate(container.decode(stream)):
            total = index + 1
            if index >= start and (index - start) % step == 0 and (count is None or len(frames) < count):
                frames.append(frame.to_ndarray(format="rgb24"))
            if count is not None and len(frames) >= count and known_total:
                total = max(total, known_total)
                break
    if not frames:
        raise ValueError(f"{path}: no frame at index {start} (the file has {total} frames)")
    return np.stack(frames), total, fps


@dataclasses.dataclass
class ClipFit:
    """How a file was cut and resized to a model's clip shape."""

    frames: np.ndarray          # uint8 [T, H, W, 3]
    indices: list[int]          # source frame index of each output frame
    total: int                  # frames in the file
    fps: float                  # of the file
    source_size: tuple[int, int]  # (width, height)
    crop_size: tuple[int, int]    # (width, height) after the centre crop
    repeated: int               # how many times the last frame was repeated to reach T

    def describe(self) -> str:
        T = len(self.indices)
        (sw, sh), (cw, ch) = self.source_size, self.crop_size
        h, w = self.frames.shape[1:3]
        first, last = self.indices[0], self.indices[-1]
        step = self.indices[1] - self.indices[0] if T > 1 and self.repeated < T - 1 else 1
        parts = [f"took frames {first}..{last} of {self.total} at step {step}"]
        if self.repeated:
            parts[0] += f" (only {T - self.repeated} available: repeated the last one {self.repeated} times)"
        parts.append(f"centre-cropped {sw}×{sh} to {cw}×{ch}" if (cw, ch) != (sw, sh) else f"no crop ({sw}×{sh})")
        parts.append(f"resized to {w}×{h}" if (w, h) != (cw, ch) else "no resize")
        return ", ".join(parts)


def _centre_crop_box(width: int, height: int, out_w: int, out_h: int) -> tuple[int, int, int, int]:
    """Largest centred box of the target aspect ratio ``out_w:out_h``."""
    if width * out_h > height * out_w:  # too wide
        crop_w, crop_h = max(1, round(height * out_w / out_h)), height
    else:
        crop_w, crop_h = width, max(1, round(width * out_h / out_w))
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def fit_clip(path: str | os.PathLike, T: int, H: int, W: int, *, start: int = 0, step: int = 1) -> ClipFit:
    """Cut ``T`` frames (from ``start`` every ``step``) out of a video file, centre-crop to the
    aspect ratio ``W:H`` and resize to ``H×W`` (Pillow bicubic); a file that is too short has
    its last frame repeated. :meth:`ClipFit.describe` says what was done."""
    frames, total, fps = read_frames(path, start=start, step=step, count=T)
    indices = [start + i * step for i in range(len(frames))]
    repeated = T - len(frames)
    if repeated:
        frames = np.concatenate([frames, np.repeat(frames[-1:], repeated, axis=0)])
        indices += [indices[-1]] * repeated
    sh, sw = frames.shape[1:3]
    box = _centre_crop_box(sw, sh, W, H)
    out = []
    for frame in frames:
        image = Image.fromarray(frame).crop(box)
        if image.size != (W, H):
            image = image.resize((W, H), Image.BICUBIC)
        out.append(np.asarray(image, dtype=np.uint8))
    return ClipFit(np.stack(out), indices, total, fps, (sw, sh), (box[2] - box[0], box[3] - box[1]), repeated)
