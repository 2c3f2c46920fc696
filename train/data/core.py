"""Shared pieces of the clip datasets: the base class, per-item randomness, clip sampling,
resizing, the decoded-frame LRU cache and the skip warning."""
from __future__ import annotations

import collections
import warnings
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class VideoSkippedWarning(UserWarning):
    """A source video was skipped (unreadable, corrupt or too short)."""


def warn_skip(path: Any, reason: str) -> None:
    warnings.warn(f"skipping video {path}: {reason}", VideoSkippedWarning, stacklevel=3)


def item_rng(seed: int, epoch: int, index: int, salt: int = 0) -> np.random.Generator:
    """The generator of one item: a pure function of (seed, epoch, index), so an item is the same
    whatever DataLoader worker builds it and however many workers there are."""
    return np.random.default_rng([int(seed) % (1 << 63), int(epoch) % (1 << 63), int(index), salt])


def sample_clip(rng: np.random.Generator, n_frames: int, frames: int,
                steps: Sequence[int]) -> tuple[np.ndarray, int]:
    """Frame indices of one clip: a step drawn uniformly from `steps`, clamped to the largest step
    whose clip fits ((frames-1)*step+1 <= n_frames), then a uniform start.
    Draws exactly two numbers from `rng`."""
    if n_frames < frames:
        raise ValueError(f"video has {n_frames} frames, a clip needs {frames}")
    smax = (n_frames - 1) // (frames - 1) if frames > 1 else n_frames
    step = max(1, min(int(steps[int(rng.integers(len(steps)))]), smax))
    span = (frames - 1) * step + 1
    start = int(rng.integers(0, n_frames - span + 1))
    return start + step * np.arange(frames), step


def resized_size(w: int, h: int, resolution: int) -> tuple[int, int]:
    """(width, height) after scaling the shorter side to `resolution` (aspect kept)."""
    if w <= h:
        return resolution, max(resolution, round(h * resolution / w))
    return max(resolution, round(w * resolution / h)), resolution


def center_crop(a: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop of [..., H, W, C]."""
    h, w = a.shape[-3], a.shape[-2]
    y, x = (h - size) // 2, (w - size) // 2
    return a[..., y:y + size, x:x + size, :]


def resize_clip(clip: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) resize of uint8 [T, H, W, C] to [T, size, size, C]."""
    if clip.shape[1] == size and clip.shape[2] == size:
        return clip
    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float()
    shrink = size < clip.shape[1] or size < clip.shape[2]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def to_video_tensor(clip: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, C] (C = 3, or 1 for grey copied to 3) -> float32 [3, T, H, W] in [-1, 1]
    (v/127.5 - 1)."""
    x = torch.from_numpy(np.ascontiguousarray(clip.transpose(3, 0, 1, 2)))
    x = x.to(torch.float32).div_(127.5).sub_(1.0)
    return x.expand(3, -1, -1, -1).contiguous() if x.shape[0] == 1 else x


class LRUCache:
    """A byte-bounded LRU of numpy arrays (decoded, already resized frames). One per process:
    DataLoader workers each get their own copy."""

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._d: collections.OrderedDict[Any, np.ndarray] = collections.OrderedDict()

    def get(self, key):
        a = self._d.get(key)
        if a is None:
            self.misses += 1
            return None
        self.hits += 1
        self._d.move_to_end(key)
        return a

    def put(self, key, a: np.ndarray) -> None:
        if a.nbytes > self.max_bytes or key in self._d:
            return
        self._d[key] = a
        self.nbytes += a.nbytes
        while self.nbytes > self.max_bytes:
            _, old = self._d.popitem(last=False)
            self.nbytes -= old.nbytes

    def __len__(self) -> int:
        return len(self._d)


class VideoClipDataset(Dataset):
    """Base class of every clip dataset built by `build_dataset`.

    Items are ``(video, label)``: video is float32 [3, T, H, W] in [-1, 1] (RGB), label an int
    (class index, or -1 when the data has no classes). Item ``i`` is a pure function of
    (seed, epoch, i); call ``set_epoch(e)`` before each training epoch to get fresh clips
    (with persistent DataLoader workers the workers keep the epoch they were forked with).
    Subclasses implement ``_make(index, rng) -> (uint8 [T, R, R, C], label)`` with C = 3 (RGB)
    or 1 (grey, copied to the three channels).
    """

    def __init__(self, *, name: str, spec: str, split: str, resolution: int, frames: int,
                 steps: Sequence[int], flip: bool, seed: int, length: int,
                 class_names: Sequence[str] = (), skipped: int = 0,
                 sources: Sequence[str] = (), videos: int = 1, extra: dict | None = None):
        self.name = name
        self.spec = spec
        self.split = split
        self.resolution = int(resolution)
        self.frames = int(frames)
        self.steps = tuple(int(s) for s in steps)
        self.flip = bool(flip)
        self.seed = int(seed)
        self.length = int(length)
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.skipped = int(skipped)
        self.sources = [str(s) for s in sources]
        self.videos = int(videos)
        self.epoch = 0
        self._extra = dict(extra or {})

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        index = int(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} clips")
        rng = item_rng(self.seed, self.epoch, index)
        clip, label = self._make(index, rng)
        if self.flip and rng.random() < 0.5:
            clip = clip[:, :, ::-1]
        return to_video_tensor(clip), int(label)

    def _make(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def describe(self) -> dict:
        """A small JSON-able provenance record."""
        d = {
            "name": self.name, "spec": self.spec, "split": self.split, "clips": self.length,
            "videos": self.videos, "resolution": self.resolution, "frames": self.frames,
            "steps": list(self.steps), "flip": self.flip, "seed": self.seed,
            "num_classes": self.num_classes, "class_names": self.class_names[:200],
            "skipped": self.skipped, "num_sources": len(self.sources),
            "sources": self.sources[:20],
        }
        d.update(self._extra)
        return d

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, clips={self.length}, "
                f"videos={self.videos}, classes={self.num_classes}, res={self.resolution}, "
                f"frames={self.frames}, steps={self.steps})")
