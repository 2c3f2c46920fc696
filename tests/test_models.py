"""The three systems: paper sizes, ablation switches, export-readiness, gradient paths."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.models import build_model, make_config
from train.models.flow import HornSchunckFlow, build_flow_estimator
from train.models.layers import FactorizedSelfAttention, SpatialSelfAttention, TemporalSelfAttention

ROOT = Path(__file__).resolve().parents[1]


def test_g3an_paper64_matches_official_parameter_counts():
    counts = build_model("g3an", "paper64").param_counts()
    assert counts == {"generator": 23_090_437, "d_image": 2_764_737, "d_video": 8_347_009}
    assert build_model("g3an", "paper64", fsa_after=None).param_counts()["generator"] == 22_925_955


def test_g3an_paper64_output_shape_and_range():
    model = build_model("g3an", "paper64").eval()
    with torch.no_grad():
        video = model.sample(torch.randn(2, 128), torch.randn(2, 10))
    assert list(video.shape) == [2] + model.video_shape == [2, 3, 16, 64, 64]
    assert video.abs().max() <= 1.0


def test_summary_command_prints_json_last_line():
    out = subprocess.run([sys.executable, "train/run.py", "--model", "encgan3", "--preset", "paper64", "--summary"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["video_shape"] == [3, 16, 64, 64]
    assert summary["params"]["generator"] == 23_090_437 and summary["params"]["encoder"] > 0


def _generator_children(model):
    return model.generator.blocks


def test_ablation_without_spatial_and_temporal_streams():
    full = build_model("g3an", "tiny")
    no_s = build_model("g3an", "tiny", use_spatial=False)
    no_t = build_model("g3an", "tiny", use_temporal=False)
    no_both = build_model("g3an", "tiny", use_spatial=False, use_temporal=False)
    assert all(b.spatial is None and b.temporal is not None for b in no_s.generator.blocks)
    assert all(b.temporal is None and b.spatial is not None for b in no_t.generator.blocks)
    assert all(b.temporal is None and b.spatial is None for b in no_both.generator.blocks)
    # without G_S nothing is concatenated: the next video stream takes `out`, not 2·out channels
    assert no_s.generator.to_rgb[0].in_channels * 2 == full.generator.to_rgb[0].in_channels
    counts = [m.param_counts()["generator"] for m in (full, no_s, no_t, no_both)]
    assert counts[0] > counts[2] > counts[3] and counts[0] > counts[1] > counts[3]
    for m in (no_s, no_t, no_both):
        with torch.no_grad():
            assert m.eval().sample(torch.randn(1, 128), torch.randn(1, 10)).shape == (1, 3, 16, 64, 64)


def test_without_temporal_stream_motion_enters_only_through_the_video_stream():
    model = build_model("g3an", "tiny", use_temporal=False).eval()
    first = model.generator.blocks[0]
    assert first.video[0].in_channels == 128 + 10


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_fsa_position(level):
    model = build_model("g3an", "tiny", fsa_after=level).eval()
    fsa = model.generator.fsa
    v_channels = [b.video[-3].out_channels * 2 for b in model.generator.blocks]
    assert fsa.temporal.value.in_channels == v_channels[level]
    # the attention must run at that level: a non-zero gain changes the output
    z = torch.randn(1, 128), torch.randn(1, 10)
    with torch.no_grad():
        before = model.sample(*z)
        fsa.temporal.gamma.fill_(1.0)
        assert not torch.allclose(before, model.sample(*z))


def test_no_fsa_has_no_attention_module():
    assert build_model("g3an", "tiny", fsa_after=None).generator.fsa is None


@pytest.mark.parametrize("mode, n_convs", [("1p2d", 2), ("2p1d", 2), ("3d", 1)])
def test_video_stream_convolution_types(mode, n_convs):
    model = build_model("g3an", "tiny", video_conv=mode)
    convs = [m for m in model.generator.blocks[1].video if isinstance(m, torch.nn.ConvTranspose3d)]
    assert len(convs) == n_convs
    kernels = [tuple(c.kernel_size) for c in convs]
    expected = {"1p2d": [(4, 1, 1), (1, 4, 4)], "2p1d": [(1, 4, 4), (4, 1, 1)], "3d": [(4, 4, 4)]}[mode]
    assert kernels == expected
    with torch.no_grad():
        assert model.eval().sample(torch.randn(1, 128), torch.randn(1, 10)).shape == (1, 3, 16, 64, 64)


def test_fsa_quirk_is_a_different_but_shape_preserving_reshape():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 4, 3, 5)
    for cls in (TemporalSelfAttention, SpatialSelfAttention):
        correct, quirky = cls(16, spectral=False), cls(16, spectral=False, official_view_quirk=True)
        quirky.load_state_dict(correct.state_dict())
        for m in (correct, quirky):
            m.gamma.data.fill_(1.0)
        assert correct(x).shape == quirky(x).shape == x.shape
        assert not torch.allclose(correct(x), quirky(x))


def test_temporal_attention_mixes_only_along_time():
    torch.manual_seed(0)
    sa = TemporalSelfAttention(16, spectral=False)
    sa.gamma.data.fill_(1.0)
    x = torch.randn(1, 16, 4, 3, 3)
    y = x.clone()
    y[:, :, :, 0, 0] += 1.0  # change one spatial position at every time step
    diff = (sa(x) - sa(y)).abs().sum(dim=(0, 1, 2))
    assert diff[0, 0] > 0 and diff.flatten()[1:].max() < 1e-5


def test_spatial_attention_mixes_only_within_a_frame():
    torch.manual_seed(0)
    sa = SpatialSelfAttention(16, spectral=False)
    sa.gamma.data.fill_(1.0)
    x = torch.randn(1, 16, 4, 3, 3)
    y = x.clone()
    y[:, :, 1] += 1.0  # change frame 1 only
    diff = (sa(x) - sa(y)).abs().sum(dim=(0, 1, 3, 4))
    assert diff[1] > 0 and diff[[0, 2, 3]].max() < 1e-5


def _reference_attention(sa, x, per_group, ungroup):
    """SAGAN attention written out directly: 1x1x1 convs, regroup, softmax(q k^T) v, regroup back."""
    q, k, v = (per_group(conv(x)) for conv in (sa.query, sa.key, sa.value))
    out = torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v
    return sa.gamma * ungroup(out) + x


def test_fsa_channels_last_equals_the_direct_formulation():
    """F-SA runs on one channels-last copy with q/k/v as matrix products (for speed); it must be
    the same function as T-SA then S-SA written directly, in values and in gradients."""
    torch.manual_seed(0)
    fsa = FactorizedSelfAttention(32, spectral=True)
    fsa.temporal.gamma.data.fill_(0.7)
    fsa.spatial.gamma.data.fill_(-0.4)
    b, c, t, h, w = 2, 32, 4, 3, 5
    x = torch.randn(b, c, t, h, w, requires_grad=True)

    def reference(x):
        y = _reference_attention(
            fsa.temporal, x, lambda z: z.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, -1),
            lambda o: o.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2))
        return _reference_attention(
            fsa.spatial, y, lambda z: z.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, -1),
            lambda o: o.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3))

    fsa.eval()  # fixed spectral-norm vectors, so both runs see the same weights
    fast, ref = fsa(x), reference(x)
    assert torch.allclose(fast, ref, atol=1e-5)
    assert not torch.allclose(ref, x, atol=1e-2)  # the attention did change the features
    params = [x] + [p for n, p in fsa.named_parameters() if "key.bias" not in n]  # key bias: zero grad
    g_fast = torch.autograd.grad(fast.square().sum(), params)
    g_ref = torch.autograd.grad(ref.square().sum(), params)
    for a, r in zip(g_fast, g_ref):
        assert torch.allclose(a, r, rtol=1e-4, atol=1e-4 * float(r.abs().max()))
    # each attention alone too
    temporal_only = _reference_attention(
        fsa.temporal, x, lambda z: z.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, -1),
        lambda o: o.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2))
    assert torch.allclose(fsa.temporal(x), temporal_only, atol=1e-5)
    spatial_only = _reference_attention(
        fsa.spatial, x, lambda z: z.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, -1),
        lambda o: o.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3))
    assert torch.allclose(fsa.spatial(x), spatial_only, atol=1e-5)


def test_conditional_g3an_label_joins_z_m():
    model = build_model("g3an", "tiny", num_classes=6).eval()
    assert model.generator.blocks[0].temporal[0].parametrizations.weight.original.shape[0] == 10 + 6
    assert model.generator.blocks[0].video[0].parametrizations.weight.original.shape[0] == 128 + 10
    both = build_model("g3an", "paper64", num_classes=6, label_into_video=True)
    assert both.param_counts()["generator"] - 23_090_437 == 4096 * 6
    z_a, z_m = torch.randn(1, 128), torch.randn(1, 10)
    labels = torch.eye(6)[[0, 3]]
    with torch.no_grad():
        videos = model.sample(z_a.repeat(2, 1), z_m.repeat(2, 1), labels)
        assert not torch.allclose(videos[0], videos[1])
        assert model.d_video(videos, labels).shape == (2,)
    with pytest.raises(ValueError, match="one-hot label"):
        model.sample(z_a, z_m)


def test_paper128_variant_has_one_more_g3_module():
    m64, m128 = build_model("g3an", "tiny"), build_model("g3an", "tiny", resolution=128)
    assert len(m128.generator.blocks) == len(m64.generator.blocks) + 1
    with torch.no_grad():
        video = m128.eval().sample(torch.randn(1, 128), torch.randn(1, 10))
        assert video.shape == (1, 3, 16, 128, 128)
        assert m128.d_video(video).shape == (1,) and m128.d_image(video[:, :, 0]).shape == (1,)


def test_paper_3d_video_discriminator():
    model = build_model("g3an", "tiny", d_video="3d")
    assert model.d_video(torch.randn(2, 3, 16, 64, 64)).shape == (2,)


@pytest.mark.parametrize("family", ["g3an", "encgan3", "avlae"])
def test_paper_sizes_build(family):
    for preset in ("paper64", "paper128"):
        model = build_model(family, preset)
        assert model.param_counts()["generator"] > 20_000_000


@pytest.mark.parametrize("family", ["g3an", "encgan3"])
def test_image_discriminator_width_is_its_own_switch(family):
    base = build_model(family, "tiny").param_counts()
    wide = build_model(family, "tiny", d_image_channels=32)
    counts = wide.param_counts()
    assert counts["d_video"] == base["d_video"] and counts["generator"] == base["generator"]
    assert counts["d_image"] > 10 * base["d_image"]
    assert wide.d_image.body[0].out_channels == 32 and wide.d_video.first[0].out_channels == 8
    assert wide.d_image(torch.randn(2, 3, 64, 64)).shape == (2,)
    with pytest.raises(ValueError, match="d_image_channels"):
        build_model(family, "tiny", d_image_channels=0)


def test_avlae_generator_is_about_g3an_sized():
    counts = build_model("avlae", "paper128").param_counts()
    assert 0.8 < counts["generator"] / 23_090_437 < 1.2
    assert build_model("avlae", "paper128").video_shape == [3, 16, 128, 128]


@pytest.mark.parametrize("family", ["encgan3", "avlae"])
def test_tiny_encode_decode_shapes(family):
    model = build_model(family, "tiny").eval()
    video = torch.rand(2, *model.video_shape) * 2 - 1
    with torch.no_grad():
        latents = model.encode(video)
        means = {k: v for k, v in latents.items() if not k.endswith("logvar")}
        assert model.decode(**means).shape == video.shape


def test_encgan3_motion_stream_sees_only_frame_differences():
    model = build_model("encgan3", "tiny").eval()
    video = torch.rand(1, *model.video_shape) * 2 - 1
    with torch.no_grad():
        a = model.encode(video)
        b = model.encode(video + 0.3)  # same differences, different content
    assert torch.allclose(a["z_m_mean"], b["z_m_mean"], atol=1e-5)
    assert not torch.allclose(a["z_a_mean"], b["z_a_mean"])


def test_avlae_samples_depend_on_the_latent_from_the_first_step():
    """With the N(0, 0.02) init the 5-layer mapping networks scale z by ~1e-4 and every latent
    draws the same video (the collapse seen in training); He init keeps z's scale."""
    def spread(init):
        torch.manual_seed(0)
        model = build_model("avlae", "tiny", mapping_init=init).train()  # train mode: what a step sees
        with torch.no_grad():
            w = model.mapping_a(torch.randn(8, 128))
            video = model.sample(torch.randn(8, 128), torch.randn(8, 128))
        return w.std(0).mean() / w.abs().mean(), video.std(0).mean() / video.abs().mean()
    w_he, video_he = spread("he")
    w_official, video_official = spread("official")
    assert w_he > 0.5 and video_he > 0.2
    assert w_official < 0.01 and video_official < 0.02
    with pytest.raises(ValueError, match="mapping_init"):
        build_model("avlae", "tiny", mapping_init="xavier")


def test_avlae_flow_estimator_has_no_trainable_weights_and_passes_gradients_to_generator():
    model = build_model("avlae", "tiny")
    flow = model.encoder_m.flow
    assert isinstance(flow, HornSchunckFlow) and sum(p.numel() for p in flow.parameters()) == 0
    assert all(not n.startswith("flow.") for n, _ in model.encoder_m.named_parameters())
    z_a, z_m = torch.randn(2, 128), torch.randn(2, 128)
    video = model.sample(z_a, z_m)
    flows = flow(video)
    assert flows.shape == (2, 2, 15, 8, 8)
    model.encoder_m(video).pow(2).sum().backward()
    grads = [p.grad for p in model.generator.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    # ...and the gradient reaches the generator only through the flow (E_M* sees nothing else)
    model.zero_grad()
    v = video.detach().requires_grad_(True)
    flow(v).sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0


def test_horn_schunck_recovers_a_known_translation():
    torch.manual_seed(0)
    base = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 96, 96), 5, 1, 2)  # smooth texture
    base = torch.nn.functional.interpolate(base, size=(200, 200), mode="bilinear")
    shift = 8  # pixels at full resolution = 1 pixel at 1/8
    frame0 = base[..., 20:148, 20:148]
    frame1 = base[..., 20:148, 20 - shift:148 - shift]  # content moves +x
    video = torch.stack([frame0, frame1], dim=2).repeat(1, 3, 1, 1, 1) * 2 - 1
    flow = HornSchunckFlow(iterations=200, alpha=0.02)(video)[0, :, 0]
    u, v = flow[0, 3:-3, 3:-3].mean().item(), flow[1, 3:-3, 3:-3].mean().item()
    assert 0.5 < u < 1.5 and abs(v) < 0.3


def test_raft_is_refused_without_local_weights(tmp_path):
    with pytest.raises(ValueError, match="nothing is downloaded"):
        build_flow_estimator("raft-small", None)
    with pytest.raises(FileNotFoundError, match="never runs an untrained RAFT"):
        build_flow_estimator("raft-small", str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("family", ["g3an", "encgan3", "avlae"])
def test_inference_is_deterministic_and_spectral_norm_can_be_removed(family):
    torch.manual_seed(0)
    model = build_model(family, "tiny")
    model.train()
    with torch.no_grad():  # a few training-mode passes to move BN stats and SN vectors
        for _ in range(2):
            model.sample(torch.randn(4, model.z_a_dim), torch.randn(4, model.z_m_dim))
    model.eval()
    z = torch.randn(2, model.z_a_dim), torch.randn(2, model.z_m_dim)
    with torch.no_grad():
        before = model.sample(*z)
        assert torch.equal(before, model.sample(*z))
        model.for_inference()
        after = model.sample(*z)
    assert not any("parametrizations" in n for n, _ in model.named_parameters())
    assert torch.allclose(before, after, atol=1e-5)


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="unknown g3an option"):
        make_config("g3an", "tiny", fsa_level=2)
    with pytest.raises(ValueError, match="video_conv"):
        build_model("g3an", "tiny", video_conv="4d")


def test_spectral_norm_vectors_match_the_initialised_weights():
    torch.manual_seed(0)
    model = build_model("avlae", "tiny")
    for module in model.modules():
        if torch.nn.utils.parametrize.is_parametrized(module, "weight"):
            sn = module.parametrizations.weight[0]
            w = sn._reshape_weight_to_matrix(module.parametrizations.weight.original)
            estimate = torch.dot(sn._u, w @ sn._v)
            true = torch.linalg.matrix_norm(w, ord=2)
            assert abs(estimate - true) / true < 0.1  # 50 power iterations: ≤ 3 % seen


def test_avlae_minibatch_std_lets_its_discriminators_see_a_batch_s_spread():
    from train.models.layers import count_parameters, minibatch_std
    h = torch.tensor([[0.0, 2.0], [2.0, 4.0]])
    assert torch.allclose(minibatch_std(h)[:, 2], torch.tensor([1.0, 1.0]), atol=1e-6)
    plain, with_std = build_model("avlae", "tiny"), build_model("avlae", "tiny", minibatch_std=True)
    assert count_parameters(with_std.d_image) == count_parameters(plain.d_image) + 128   # one more input
    assert count_parameters(with_std.generator) == count_parameters(plain.generator)
    torch.manual_seed(0)
    same = torch.randn(1, 128).repeat(4, 1)
    varied = same + torch.randn(4, 128)
    d_image = with_std.d_image.eval()
    # the first row is the same input in both batches: only the batch around it changes its logit
    with torch.no_grad():
        alone, among_varied = d_image(same)[0], d_image(torch.cat([same[:1], varied[1:]]))[0]
        assert not torch.allclose(alone, among_varied)
        assert torch.allclose(plain.d_image.eval()(same)[0], plain.d_image(torch.cat([same[:1], varied[1:]]))[0])
