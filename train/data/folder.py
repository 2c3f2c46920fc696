"""Datasets read from a local folder: video files (anything PyAV decodes) and/or folders of frame
images, optionally grouped in class folders, optionally pre-split into train/ and test/."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import av
import numpy as np

from .core import LRUCache, VideoClipDataset, item_rng, sample_clip, warn_skip
from .decode import (IMAGE_EXTS, VIDEO_EXTS, check_image, decode_video_square, list_frame_images,
                     load_image_square, natural_key, probe_video)

TEST_FRACTION = 0.10          # hash split: ~10 % of the videos go to test
SPLIT_DIRS = ("train", ("test", "val"))
FULL_DECODE_BYTES = 64 << 20  # videos up to this size (at the target resolution) are decoded whole and cached
CACHE_BYTES = 256 << 20       # LRU budget per process (each DataLoader worker has its own)


@dataclass
class Entry:
    kind: str                 # "file" (a video container) or "frames" (a folder of frame images)
    path: str
    rel: tuple[str, ...]      # path parts relative to the (split) root
    cls: str | None = None
    n_frames: int = 0
    files: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return "/".join(self.rel) or "."


def scan_folder(root: str) -> list[Entry]:
    """Every video under root: video files by extension, and each folder holding image files as
    one video (its images sorted by name, naturally; its sub-folders are not searched)."""
    out: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=natural_key)
        rel = os.path.relpath(dirpath, root)
        parts = () if rel == "." else tuple(rel.split(os.sep))
        names = sorted((f for f in filenames if not f.startswith(".")), key=natural_key)
        if any(os.path.splitext(f)[1].lower() in IMAGE_EXTS for f in names):
            out.append(Entry("frames", dirpath, parts))
            dirnames[:] = []
        for f in names:
            if os.path.splitext(f)[1].lower() in VIDEO_EXTS:
                out.append(Entry("file", os.path.join(dirpath, f), parts + (f,)))
    for e in out:
        e.cls = e.rel[0] if len(e.rel) >= 2 else None
    return out


def _hash_fraction(key: str) -> float:
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def hash_split(entries: list[Entry], split: str) -> list[Entry]:
    """Deterministic split by a hash of the relative path: a video's side never depends on the other
    videos, except that when no video hashes into test (tiny folders) the highest-hashing one does."""
    if split == "all":
        return entries
    h = [_hash_fraction(e.key) for e in entries]
    test = {i for i, x in enumerate(h) if x >= 1.0 - TEST_FRACTION}
    if not test and len(entries) >= 2:
        test = {int(np.argmax(h))}
    return [e for i, e in enumerate(entries) if (i in test) == (split == "test")]


def find_split_dirs(root: str) -> tuple[str, str] | None:
    train = os.path.join(root, "train")
    if not os.path.isdir(train):
        return None
    for name in SPLIT_DIRS[1]:
        if os.path.isdir(os.path.join(root, name)):
            return train, os.path.join(root, name)
    return None


def _probe(e: Entry, frames: int) -> str | None:
    """Fill e.n_frames; return the reason to skip it, or None."""
    try:
        if e.kind == "file":
            e.n_frames = probe_video(e.path)
        else:
            e.files = list_frame_images(e.path)
            e.n_frames = len(e.files)
            if e.files:
                check_image(e.files[0])
    except Exception as ex:  # noqa: BLE001 - any decoder error means "unreadable"
        return f"unreadable ({type(ex).__name__}: {ex})"
    if e.n_frames < frames:
        return f"too short ({e.n_frames} frames, a clip needs {frames})"
    return None


class _BadVideo(Exception):
    pass


class FolderVideos(VideoClipDataset):
    """Clips from the videos of a folder. One epoch = `length` clips; by default one random clip
    per video (item i uses video i mod the number of videos), as in the G3AN code."""

    def __init__(self, root: str, *, spec, split, resolution, frames, steps, flip, seed,
                 length: int | None):
        root = os.path.abspath(os.path.expanduser(root))
        dirs = find_split_dirs(root)
        if dirs is not None:
            scans = {"train": scan_folder(dirs[0]), "test": scan_folder(dirs[1])}
            everything = scans["train"] + scans["test"]
            candidates = everything if split == "all" else scans[split]
            rule = f"explicit folders: {os.path.basename(dirs[0])}/ and {os.path.basename(dirs[1])}/"
        else:
            everything = scan_folder(root)
            candidates = hash_split(everything, split)
            rule = (f"hash of the relative path: sha1 -> fraction >= {1 - TEST_FRACTION:.2f} "
                    "is test (at least one test video when there are two or more)")
        if not everything:
            raise ValueError(
                f"empty dataset: no video files ({', '.join(sorted(VIDEO_EXTS))}) and no folders of "
                f"frame images ({', '.join(sorted(IMAGE_EXTS))}) under {root}")
        # Class names come from the whole folder (all splits), so train and test indices agree.
        class_names = sorted({e.cls for e in everything if e.cls is not None}, key=natural_key)
        labeled = bool(class_names)
        skipped = 0
        self.entries: list[Entry] = []
        for e in candidates:
            reason = None
            if labeled and e.cls is None:
                reason = "lies directly in the root of a folder that has class sub-folders (no class)"
            reason = reason or _probe(e, frames)
            if reason:
                warn_skip(e.path, reason)
                skipped += 1
            else:
                self.entries.append(e)
        if not self.entries:
            raise ValueError(
                f"empty dataset: no usable videos for split {split!r} under {root} "
                f"({len(candidates)} found in this split, {skipped} skipped, "
                f"{len(everything)} in the whole folder)")
        cls_index = {c: i for i, c in enumerate(class_names)}
        self.labels = [cls_index[e.cls] if labeled else -1 for e in self.entries]
        self.cache = LRUCache(CACHE_BYTES)
        self._bad: set[int] = set()
        per_class = {c: 0 for c in class_names}
        for e in self.entries:
            if e.cls is not None:
                per_class[e.cls] += 1
        super().__init__(
            name=os.path.basename(root.rstrip(os.sep)) or root, spec=spec, split=split,
            resolution=resolution, frames=frames, steps=steps, flip=flip, seed=seed,
            length=length if length is not None else len(self.entries), class_names=class_names,
            skipped=skipped, sources=[e.path for e in self.entries], videos=len(self.entries),
            extra={"root": root, "split_rule": rule, "videos_per_class": per_class if labeled else {},
                   "frames_total": int(sum(e.n_frames for e in self.entries))})

    # -- frames of one clip
    def _clip_from_file(self, e: Entry, rng) -> np.ndarray:
        r = self.resolution
        if e.n_frames * r * r * 3 <= FULL_DECODE_BYTES:
            arr = self.cache.get(e.path)
            if arr is None:
                arr = decode_video_square(e.path, r)
                if len(arr) < self.frames:
                    raise _BadVideo(f"decoded only {len(arr)} frames, a clip needs {self.frames}")
                self.cache.put(e.path, arr)
            idx, _ = sample_clip(rng, len(arr), self.frames, self.steps)
            return arr[idx]
        # Long video: decode up to the clip's last frame, converting only the clip's frames.
        idx, _ = sample_clip(rng, e.n_frames, self.frames, self.steps)
        want = set(int(i) for i in idx)
        arr = decode_video_square(e.path, r, 0, int(idx[-1]) + 1, keep=want.__contains__)
        if len(arr) < self.frames:
            raise _BadVideo(f"decoded only {len(arr)} of the frames {idx[0]}..{idx[-1]} "
                            f"(metadata said {e.n_frames} frames)")
        return arr

    def _clip_from_frames(self, e: Entry, rng) -> np.ndarray:
        idx, _ = sample_clip(rng, e.n_frames, self.frames, self.steps)
        out = []
        for i in idx:
            p = e.files[i]
            a = self.cache.get(p)
            if a is None:
                a = load_image_square(p, self.resolution)
                self.cache.put(p, a)
            out.append(a)
        return np.stack(out)

    def _make(self, index, rng):
        n = len(self.entries)
        v = index % n
        for attempt in range(n):
            if v not in self._bad:
                e = self.entries[v]
                if attempt:  # a substitute: fresh randomness, still a pure function of the item
                    rng = item_rng(self.seed, self.epoch, index, salt=attempt)
                try:
                    if e.kind == "file":
                        return self._clip_from_file(e, rng), self.labels[v]
                    return self._clip_from_frames(e, rng), self.labels[v]
                except (_BadVideo, av.FFmpegError, OSError, ValueError) as ex:
                    self._bad.add(v)
                    warn_skip(e.path, f"failed while loading a clip ({type(ex).__name__}: {ex}); "
                                      "using the next video instead")
            v = (v + 1) % n
        raise RuntimeError(f"every video of {self.name} failed to load")
