"""Video files for the clients: read and fit clips with PyAV, write mp4/gif/npz atomically, grids.

Frames are ``uint8 [T, H, W, 3]`` RGB everywhere, as on the wire.

Writes are atomic: the data goes to a hidden temporary file in the destination folder
(``.<name>.tmp-<pid>-<random><ext>``) which ``os.replace`` then renames onto the final
name, so a reader (or a resumed job) never sees a half-written file. Leftover temporaries
of a killed process are removed by :func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
import io
import os
import pathlib
import secrets
from typing import Iterator, Sequence

import av
import numpy as np
from PIL import Image

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

FORMATS = ("mp4", "gif", "npz")
_TMP_MARK = ".tmp-"


# ---------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``path``; on success ``os.replace`` it onto ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}{_TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Delete temporaries that :func:`atomic_path` left in ``folder`` (from a killed process)."""
    removed = []
    folder = pathlib.Path(folder)
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and _TMP_MARK in p.name and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return frames


# ---------------------------------------------------------------------------- writers
def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0,
              codec: str | None = None, crf: int = 18) -> pathlib.Path:
    """H.264 (libx264, else MPEG-4 Part 2) yuv420p mp4, atomically.

    yuv420p needs even sizes: an odd height or width gets one replicated edge row/column.
    """
    frames = _check_frames(frames)
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
    data = _gif_bytes(_check_frames(frames), fps)
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
        return write_npz(path, video=_check_frames(frames), **extra_arrays)
    raise ValueError(f"unknown video format {fmt!r} (use one of {', '.join(FORMATS)})")


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


# ---------------------------------------------------------------------------- grids
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
    first = _check_frames(videos[0][0])
    T, H, W, _ = first.shape
    grid = np.full((T, rows * H + (rows + 1) * pad, cols * W + (cols + 1) * pad, 3), pad_value, np.uint8)
    for r, row in enumerate(videos):
        for c, video in enumerate(row):
            video = _check_frames(video)
            if video.shape != first.shape:
                raise ValueError(f"grid cell ({r}, {c}) has shape {list(video.shape)}, expected {list(first.shape)}")
            y, x = pad + r * (H + pad), pad + c * (W + pad)
            grid[:, y:y + H, x:x + W] = video
    return grid
