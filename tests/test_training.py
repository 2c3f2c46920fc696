"""train/run.py end to end: finite losses, exact resume after kill -9, torchrun with gloo."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from train.checkpoint import load_for_inference

ROOT = Path(__file__).resolve().parents[1]
# small and fast: F-SA off (its 1024×1024 attention dominates a CPU step), batch 2
FAST = ["--preset", "tiny", "--batch-size", "2", "--threads", "1",
        "--no-progress", "--sample-every", "0", "--log-every", "1"]
NO_FSA = ["--set", "fsa_after=null"]


def run(args, **kw):
    return subprocess.run([sys.executable, "train/run.py", *args], cwd=ROOT, capture_output=True, text=True, **kw)


def losses(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("family", ["g3an", "encgan3", "avlae"])
def test_training_runs_and_writes_checkpoint_samples_and_scalars(tmp_path, family):
    out = tmp_path / family
    result = run(["--model", family, *FAST, *([] if family == "avlae" else NO_FSA), "--steps", "2", "--out", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["step"] == 2
    logged = losses(out)
    assert [r["step"] for r in logged] == [1, 2]
    assert all(torch.isfinite(torch.tensor(v)) for r in logged for v in r.values())
    assert sorted(p.name for p in (out / "samples").glob("*.gif")) == ["step0000000.gif", "step0000002.gif"]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    model, meta = load_for_inference(out / "checkpoint.pt")
    assert meta["family"] == family and meta["step"] == 2 and meta["data"]["spec"] == "moving-mnist"
    assert meta["weights"] == "average (decay 0.999, since step 0)"


def test_resume_after_kill_9_reproduces_the_uninterrupted_run_exactly(tmp_path):
    args = ["--model", "g3an", *FAST, *NO_FSA, "--steps", "6", "--checkpoint-every", "2"]
    reference = run([*args, "--out", str(tmp_path / "ref")])
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "train/run.py", *args, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill -9 as soon as the step-2 checkpoint exists
        if (out / "checkpoint.pt").exists():
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(out / "checkpoint.pt", weights_only=False)["step"]
    assert killed_at < 6, "the run finished before it could be killed"

    resumed = run([*args, "--out", str(out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["step"] == 6  # --steps is the total
    assert losses(out) == losses(tmp_path / "ref")  # every loss of every step, bit for bit
    ref = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=False)
    res = torch.load(out / "checkpoint.pt", weights_only=False)
    for ref_state, res_state in ((ref["model"], res["model"]), (ref["ema"]["weights"], res["ema"]["weights"])):
        assert all(torch.equal(ref_state[k], res_state[k]) for k in ref_state)
    assert res["ema"]["start_step"] == 0  # the average went on across the kill, it did not restart


def test_resume_refuses_a_checkpoint_of_another_family(tmp_path):
    assert run(["--model", "avlae", *FAST, "--steps", "1", "--out", str(tmp_path)]).returncode == 0
    result = run(["--model", "g3an", *FAST, *NO_FSA, "--steps", "2", "--out", str(tmp_path), "--resume"])
    assert result.returncode != 0 and "holds a avlae model" in result.stderr


def test_torchrun_two_cpu_processes_with_gloo(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "train/run.py", "--model", "g3an", *FAST, *NO_FSA, "--steps", "2", "--out", str(out)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2" in result.stdout
    assert [r["step"] for r in losses(out)] == [1, 2]  # only rank 0 writes
    model, meta = load_for_inference(out / "checkpoint.pt")
    assert meta["step"] == 2


def test_eval_every_logs_a_learning_curve_point(tmp_path):
    """--eval-every measures the model on the held-out split (FVD and, for an encoder family, the
    reconstruction PSNR/SSIM against the baselines, of held-out clips and of its own samples) into losses.jsonl, without changing the losses."""
    out = tmp_path / "e"
    result = run(["--model", "encgan3", *FAST, *NO_FSA, "--unconditional", "--frame-steps", "1", "--steps", "2",
                  "--eval-every", "2", "--eval-videos", "2", "--out", str(out)],
                 env={**os.environ, "VIDEOGAN_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    logged = losses(out)
    evals = [r for r in logged if "eval" in r]
    assert [r["step"] for r in evals] == [2]
    figures = evals[0]["eval"]
    assert figures["fvd"] > 0 and figures["num_videos"] == 2
    rec = figures["reconstruction"]
    assert rec["clips"] == 2 and set(rec) >= {"reconstruction", "black", "mean_frame", "psnr_margin_db"}
    assert set(figures["sample_reconstruction"]) == set(rec)  # the model's own samples, same report
    assert [r["step"] for r in logged if "eval" not in r] == [1, 2]
