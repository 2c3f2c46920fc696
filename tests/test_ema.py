"""train/ema.py: the weight average that sampling, evaluation and export use."""
import torch
from torch import nn

from train.checkpoint import load_for_inference, save_checkpoint
from train.ema import WeightAverage
from train.models import build_model


def test_average_follows_the_live_weights_with_the_ramped_decay():
    live = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = WeightAverage(live, decay=0.9, start_step=0)
    expected = [p.detach().clone() for p in live.parameters()]
    for step in range(1, 30):
        with torch.no_grad():
            for p in live.parameters():
                p.add_(1.0)
            live[1].running_mean.add_(0.5)
        average.update(live, step)
        beta = min(0.9, (1 + step) / (10 + step))
        expected = [beta * e + (1 - beta) * p.detach() for e, p in zip(expected, live.parameters())]
    for mine, want, now in zip(average.model.parameters(), expected, live.parameters()):
        assert torch.allclose(mine, want, atol=1e-5)
        assert (mine < now - 1.0).all()  # it lags the live weights
    assert torch.equal(average.model[1].running_mean, live[1].running_mean)  # buffers are copied
    assert not any(p.requires_grad for p in average.model.parameters()) and not average.model.training


def test_inference_uses_the_average_and_resuming_uses_the_live_weights(tmp_path):
    torch.manual_seed(0)
    model = build_model("g3an", "tiny", fsa_after=None)
    average = WeightAverage(model, 0.99, start_step=5)
    with torch.no_grad():
        for p in average.model.parameters():
            p.mul_(0.5)
    path = tmp_path / "c.pt"
    save_checkpoint(path, model, step=7, ema=average.state())
    loaded, meta = load_for_inference(path)
    assert meta["weights"] == "average (decay 0.99, since step 5)"
    z_a, z_m = torch.randn(2, model.z_a_dim), torch.randn(2, model.z_m_dim)
    with torch.no_grad():
        want = average.model.for_inference().sample(z_a, z_m)
        assert torch.equal(loaded.sample(z_a, z_m), want)

    save_checkpoint(path, model, step=7)
    assert load_for_inference(path)[1]["weights"] == "live"
