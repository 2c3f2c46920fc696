"""The thin clients (clients/) against a real embedded Triton server.

Real components only: tritonserver from nvidia-pytriton, tritonclient gRPC, ONNX Runtime in
the python backend, files written and decoded with PyAV / Pillow.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import av
import numpy as np
import pytest
from PIL import Image

from conftest import RECONSTRUCT_OUTPUT, REPO_ROOT, TINY
from clients import encode as encode_cli
from clients import explore as explore_cli
from clients import reconstruct as reconstruct_cli
from clients import sample as sample_cli
from clients.latents import latents_for_seed, latents_for_seeds, one_hot
from clients.sample import JobError, parse_seeds, run_job
from clients.triton import Connection, RequestError, ServerUnavailable, TritonClientError
from clients.video_io import atomic_path, fit_clip, make_grid, read_frames, write_mp4

Da, Dm, K, T, H, W = (TINY[k] for k in ("Da", "Dm", "K", "T", "H", "W"))


def _decode(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _seed_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("seed"))


# ------------------------------------------------------------------ no server needed
def test_latents_follow_the_documented_algorithm():
    z_a, z_m = latents_for_seed(123, 7, 5)
    rng = np.random.Generator(np.random.PCG64(123))
    assert np.array_equal(z_a, rng.standard_normal(7, dtype=np.float32))
    assert np.array_equal(z_m, rng.standard_normal(5, dtype=np.float32))
    assert z_a.dtype == z_m.dtype == np.float32 and z_a.shape == (7,) and z_m.shape == (5,)
    assert not np.array_equal(latents_for_seed(124, 7, 5)[0], z_a)
    a, m = latents_for_seeds([123, 5], 7, 5)
    assert a.shape == (2, 7) and np.array_equal(a[0], z_a) and np.array_equal(m[1], latents_for_seed(5, 7, 5)[1])
    assert one_hot(2, 3).tolist() == [[0.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="out of range"):
        one_hot(3, 3)


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("7") == [7]
    assert parse_seeds("0-2, 10,5-5,1") == [0, 1, 2, 5, 10]
    for bad in ("-1", "3-1", "a", "", "1-2-3"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_fit_clip_cuts_crops_resizes_and_says_how(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (12, 144, 176, 3), dtype=np.uint8)
    write_mp4(tmp_path / "in.mp4", frames, fps=25)
    clip = fit_clip(tmp_path / "in.mp4", 4, 8, 8, start=2, step=3)
    assert clip.frames.shape == (4, 8, 8, 3) and clip.indices == [2, 5, 8, 11]
    assert clip.describe() == "took frames 2..11 of 12 at step 3, centre-cropped 176×144 to 144×144, resized to 8×8"
    short = fit_clip(tmp_path / "in.mp4", 4, 16, 8, start=10)
    assert short.frames.shape == (4, 16, 8, 3) and short.repeated == 2
    assert "only 2 available: repeated the last one 2 times" in short.describe()
    assert "centre-cropped 176×144 to 72×144" in short.describe()


def test_grid_and_atomic_writes(tmp_path):
    cell = np.zeros((3, 4, 5, 3), np.uint8)
    assert make_grid([[cell, cell, cell], [cell]], pad=2).shape == (3, 2 * 4 + 3 * 2, 3 * 5 + 4 * 2, 3)
    target = tmp_path / "x.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_retried_then_reported(free_port):
    conn = Connection(f"127.0.0.1:{free_port}", retries=2, backoff=0.05, log=lambda m: None)
    t0 = time.monotonic()
    with pytest.raises(ServerUnavailable, match="unavailable after 3 attempts"):
        conn.model_info("tiny_sample")
    assert time.monotonic() - t0 >= 0.05 + 0.1


# ------------------------------------------------------------------ sampling jobs
@pytest.mark.slow
def test_sample_job_writes_exactly_the_requested_mp4s(triton_server, tmp_path, capsys):
    out = tmp_path / "samples"
    args = ["--url", triton_server.grpc_url, "--model", "tiny_sample", "--seeds", "0-9", "--batch-size", "4",
            "--concurrency", "2", "--out", str(out), "--format", "mp4", "--no-progress"]
    assert sample_cli.main(args) == 0
    assert _seed_files(out) == [f"seed{s:06d}.mp4" for s in range(10)]
    for name in _seed_files(out):
        frames = _decode(out / name)
        assert frames.shape == (T, H, W, 3), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(map(int, manifest["done"])) == list(range(10))
    assert manifest["settings"]["z_a_dim"] == Da and manifest["settings"]["video_shape"] == [T, H, W, 3]
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    # a re-run has nothing left to do; a wider range does only the new seeds
    capsys.readouterr()
    assert sample_cli.main(args) == 0
    assert "wrote 0 files, skipped 10" in capsys.readouterr().out
    assert sample_cli.main([*args[:5], "0-11", *args[6:]]) == 0
    assert "wrote 2 files, skipped 10" in capsys.readouterr().out
    assert len(_seed_files(out)) == 12


@pytest.mark.slow
def test_sample_npz_holds_the_served_video_of_each_seed(triton_server, tmp_path):
    summary = run_job([triton_server.grpc_url], "tiny_sample", [3, 42], tmp_path, fmt="npz", batch_size=8,
                      progress=False)
    assert summary["written"] == 2
    with Connection(triton_server.grpc_url) as conn:
        for seed in (3, 42):
            data = np.load(tmp_path / f"seed{seed:06d}.npz")
            z_a, z_m = latents_for_seed(seed, Da, Dm)
            assert np.array_equal(data["z_a"], z_a) and np.array_equal(data["z_m"], z_m) and data["seed"] == seed
            served = conn.infer("tiny_sample", {"z_a": z_a[None], "z_m": z_m[None]})["video"][0]
            assert data["video"].dtype == np.uint8 and np.array_equal(data["video"], served)


@pytest.mark.slow
def test_sample_conditional_gif(triton_server, tmp_path):
    url = triton_server.grpc_url
    with pytest.raises(JobError, match=r"conditional \(3 classes\): pass --label"):
        run_job([url], "tinycond_sample", [0], tmp_path / "a", progress=False)
    with pytest.raises(JobError, match="out of range"):
        run_job([url], "tinycond_sample", [0], tmp_path / "b", label=K, progress=False)
    with pytest.raises(JobError, match="unconditional"):
        run_job([url], "tiny_sample", [0], tmp_path / "c", label=1, progress=False)
    run_job([url], "tinycond_sample", [0, 1, 2], tmp_path / "d", fmt="gif", label=1, progress=False)
    assert _seed_files(tmp_path / "d") == ["seed000000.gif", "seed000001.gif", "seed000002.gif"]
    with Image.open(tmp_path / "d" / "seed000001.gif") as image:
        assert image.size == (W, H) and image.n_frames == T
    frames, total, _ = read_frames(tmp_path / "d" / "seed000002.gif")
    assert frames.shape == (T, H, W, 3) and total == T
    # other labels give other videos, and a folder remembers its settings
    run_job([url], "tinycond_sample", [0], tmp_path / "e", fmt="npz", label=0, progress=False)
    run_job([url], "tinycond_sample", [0], tmp_path / "f", fmt="npz", label=2, progress=False)
    assert not np.array_equal(np.load(tmp_path / "e" / "seed000000.npz")["video"],
                              np.load(tmp_path / "f" / "seed000000.npz")["video"])
    with pytest.raises(JobError, match="other settings .*label: 0 there, 2 now"):
        run_job([url], "tinycond_sample", [0], tmp_path / "e", fmt="npz", label=2, progress=False)


@pytest.mark.slow
def test_sample_refused_request_fails_the_job_with_the_server_message(triton_server, tmp_path):
    with pytest.raises(RequestError, match="unknown model: 'nosuch_sample'"):
        run_job([triton_server.grpc_url], "nosuch_sample", [0], tmp_path, progress=False)
    with pytest.raises(TritonClientError, match="has no input 'z_a', 'z_m'"):
        run_job([triton_server.grpc_url], "tiny_encode", [0], tmp_path, progress=False)


@pytest.mark.slow
def test_killed_job_resumes_to_exactly_the_requested_files(triton_server, tmp_path):
    out = tmp_path / "job"
    n = 400
    cmd = [sys.executable, "-m", "clients.sample", "--url", triton_server.grpc_url, "--model", "tiny_sample",
           "--seeds", f"0-{n - 1}", "--batch-size", "1", "--concurrency", "1", "--out", str(out),
           "--format", "mp4", "--no-progress"]
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if out.is_dir() and len(_seed_files(out)) >= 20:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the job finished before it could be killed: raise n"
        process.kill()  # SIGKILL: no chance to save anything
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    done_at_kill = len(_seed_files(out))
    assert 20 <= done_at_kill < n
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    # everything complete on disk at the kill is kept (atomic writes), whatever the manifest said
    assert f"wrote {n - done_at_kill} files, skipped {done_at_kill} already done ({n} requested)" in result.stdout
    assert _seed_files(out) == [f"seed{s:06d}.mp4" for s in range(n)]
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    assert sorted(map(int, json.loads((out / "manifest.json").read_text())["done"])) == list(range(n))
    for name in _seed_files(out)[:: n // 20]:
        assert _decode(out / name).shape == (T, H, W, 3)


@pytest.mark.slow
def test_job_spreads_over_servers_and_survives_a_dead_one(triton_server, tmp_path, free_port):
    dead = f"127.0.0.1:{free_port}"
    summary = run_job([dead, triton_server.grpc_url], "tiny_sample", range(12), tmp_path, fmt="npz", batch_size=2,
                      retries=1, backoff=0.05, progress=False, log=lambda m: None)
    assert summary["written"] == 12 and len(_seed_files(tmp_path)) == 12
    with pytest.raises(JobError, match=f"no server answered .*{dead} unavailable after 2 attempts"):
        run_job([dead], "tiny_sample", range(3), tmp_path / "x", retries=1, backoff=0.05, progress=False,
                log=lambda m: None)


@pytest.mark.slow
def test_job_waits_with_backoff_for_a_server_that_comes_up(tiny_repository, tmp_path):
    from serving.server import TritonServer, find_free_port

    port = find_free_port()
    out = tmp_path / "job"
    cmd = [sys.executable, "-m", "clients.sample", "--url", f"127.0.0.1:{port}", "--model", "tiny_sample",
           "--seeds", "0-5", "--out", str(out), "--format", "gif", "--retries", "12", "--backoff", "0.25",
           "--no-progress"]
    err_path = tmp_path / "job.err"
    with open(err_path, "w") as err:
        process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        deadline = time.time() + 120  # start the server only once the job has found it down
        while "unavailable" not in err_path.read_text() and time.time() < deadline:
            assert process.poll() is None, err_path.read_text()
            time.sleep(0.1)
        with TritonServer(tiny_repository, grpc_port=port, log_file=tmp_path / "server.log"):
            stdout, _ = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = err_path.read_text()
    assert process.returncode == 0, stderr
    assert "unavailable" in stderr and "retry 1/12 in 0.2 s" in stderr
    assert "wrote 6 files" in stdout and len(_seed_files(out)) == 6


# ------------------------------------------------------------------ encode / reconstruct / explore
@pytest.fixture()
def real_video(tmp_path):
    """A 30-frame 176×144 clip (a moving colour gradient) encoded with PyAV."""
    y, x = np.mgrid[0:144, 0:176]
    frames = np.stack([np.stack([(x * 255 // 175 + 8 * t) % 256, y * 255 // 143, np.full_like(x, 40 * (t % 6))],
                                axis=-1) for t in range(30)]).astype(np.uint8)
    path = tmp_path / "clip.mp4"
    write_mp4(path, frames, fps=15)
    return path


@pytest.mark.slow
def test_encode_and_reconstruct_round_trip(triton_server, tmp_path, real_video, capsys):
    url = triton_server.grpc_url
    assert encode_cli.main(["--url", url, "--model", "tiny_encode", str(real_video), "--out",
                            str(tmp_path / "lat.npz"), "--step", "2"]) == 0
    printed = capsys.readouterr().out
    assert "took frames 0..6 of 30 at step 2, centre-cropped 176×144 to 144×144, resized to 8×8" in printed
    latents = np.load(tmp_path / "lat.npz")
    assert {k: latents[k].shape for k in ("z_a_mean", "z_a_logvar", "z_m_mean", "z_m_logvar")} == {
        "z_a_mean": (Da,), "z_a_logvar": (Da,), "z_m_mean": (Dm,), "z_m_logvar": (Dm,)}
    assert latents["clip"].shape == (T, H, W, 3) and latents["frame_indices"].tolist() == [0, 2, 4, 6]

    # reconstruct (the ensemble) == decode(encode means) on the same clip, exactly (npz keeps it raw)
    assert reconstruct_cli.main(["--url", url, "--model", "tiny_reconstruct", str(real_video), "--out",
                                 str(tmp_path / "recon.npz"), "--step", "2"]) == 0
    recon = np.load(tmp_path / "recon.npz")
    assert np.array_equal(recon["input"], latents["clip"])
    with Connection(url) as conn:
        decoded = conn.infer("tiny_decode", {"z_a": latents["z_a_mean"][None], "z_m": latents["z_m_mean"][None]})
    assert np.array_equal(recon["video"], decoded["video"][0])

    # and as a playable mp4, side by side with the input
    assert reconstruct_cli.main(["--url", url, "--model", "tiny_reconstruct", str(real_video), "--out",
                                 str(tmp_path / "recon.mp4"), "--side-by-side"]) == 0
    assert _decode(tmp_path / "recon.mp4").shape == (T, H, 2 * W, 3)
    assert "wrote" in capsys.readouterr().out
    # the wrong kind of model is refused clearly
    assert reconstruct_cli.main(["--url", url, "--model", "tiny_sample", str(real_video), "--out",
                                 str(tmp_path / "x.mp4")]) == 1
    assert "has no input 'video'" in capsys.readouterr().err
    assert RECONSTRUCT_OUTPUT != "video"


@pytest.mark.slow
@pytest.mark.parametrize("mode, extra, rows, cols, scale", [
    ("fix-appearance", ["--seed", "0", "1", "--vary", "10-12"], 2, 3, 1),
    ("fix-motion", ["--vary", "3,4"], 1, 2, 1),
    ("add-appearance", ["--seed", "0", "5", "--seed2", "9"], 2, 3, 1),
    ("sweep", ["--latent", "z_m", "--dim", "4", "--steps", "5", "--scale", "2"], 1, 5, 2),
])
def test_explore_writes_a_gif_grid_of_the_right_size(triton_server, tmp_path, mode, extra, rows, cols, scale):
    out = tmp_path / "grid.gif"
    assert explore_cli.main(["--url", triton_server.grpc_url, "--model", "tiny_sample", "--mode", mode,
                             *extra, "--out", str(out)]) == 0
    pad = 2
    with Image.open(out) as image:
        assert image.size == (cols * W * scale + (cols + 1) * pad, rows * H * scale + (rows + 1) * pad)
        assert image.n_frames == T


@pytest.mark.slow
def test_explore_cells_are_the_manipulated_latents(triton_server, tmp_path):
    out = tmp_path / "grid.npz"
    assert explore_cli.main(["--url", triton_server.grpc_url, "--model", "tiny_sample", "--mode", "add-appearance",
                             "--seed", "4", "--seed2", "7", "--pad", "0", "--out", str(out)]) == 0
    grid = np.load(out)["video"]
    a_a, a_m = latents_for_seed(4, Da, Dm)
    b_a, _ = latents_for_seed(7, Da, Dm)
    with Connection(triton_server.grpc_url) as conn:
        expected = conn.infer("tiny_sample", {"z_a": np.stack([a_a, b_a, a_a + b_a]), "z_m": np.stack([a_m] * 3)})
    for c in range(3):
        assert np.array_equal(grid[:, :, c * W:(c + 1) * W], expected["video"][c])
