"""The family registry: train, export and bench look a system up there, so a fourth system is one
module (tests/toy_family.py) and one `register` call, with no change anywhere else."""
import json
import subprocess
from pathlib import Path

import pytest
import torch

from export.__main__ import export_checkpoint
from export.check import check_repository
from train.checkpoint import load_for_inference, read_checkpoint, save_checkpoint
from train.families import family_names, get_family, register, unregister
from train.models import FAMILIES, build_model
from train.recipes import RecipeOptions

from toy_family import TOY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy():
    register(TOY)
    yield TOY
    unregister(TOY.name)


def test_the_three_papers_are_registered_in_order():
    assert family_names() == FAMILIES == ("g3an", "encgan3", "avlae")
    assert [get_family(f).has_encoder(build_model(f, "tiny").config) for f in FAMILIES] == [False, True, True]
    assert not get_family("avlae").has_encoder(build_model("avlae", "tiny", use_motion_encoder=False).config)
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        get_family("nope")


def test_no_family_branches_outside_the_registry():
    found = subprocess.run(["grep", "-rn", "family ==", "train", "export"], cwd=ROOT, capture_output=True, text=True)
    assert found.stdout == ""


def test_a_toy_family_trains_saves_and_exports_without_touching_the_stages(toy, tmp_path):
    assert "toy" in family_names()
    torch.manual_seed(0)
    model = build_model("toy", "tiny")
    assert model.video_shape == [3, 4, 8, 8] and set(model.param_counts()) == {"generator", "encoder"}

    # train: the entry's optimizers and step, as train/run.py calls them
    nets = dict(model.named_children())
    options = RecipeOptions()
    optimizers = toy.make_optimizers(nets, options)
    real = torch.rand(2, *model.video_shape) * 2 - 1
    losses = toy.train_step(nets, optimizers, real, None, torch.Generator().manual_seed(0), model.config, options)
    assert set(losses) == {"rec", "prior"}

    # checkpoint round trip
    save_checkpoint(tmp_path / "toy.pt", model, step=1)
    assert read_checkpoint(tmp_path / "toy.pt")["family"] == "toy"
    loaded, meta = load_for_inference(tmp_path / "toy.pt")
    assert meta["family"] == "toy" and list(loaded.encode(real)) == ["z_a_mean", "z_a_logvar", "z_m_mean", "z_m_logvar"]

    # export: sample, encode, decode and the reconstruct ensemble, parity-gated, passing export.check
    repository = tmp_path / "repository"
    summary = export_checkpoint(tmp_path / "toy.pt", repository, name="toy", family="toy", runtime="onnxruntime",
                                parity_batches=(1, 2), threads=1)
    assert sorted(summary["models"]) == ["toy_decode", "toy_encode", "toy_reconstruct", "toy_sample"]
    assert check_repository(repository, run_checker=False)[0] == []
    manifest = json.loads((repository / "toy_reconstruct" / "manifest.json").read_text())
    ensemble = manifest["versions"]["1"]["ensemble"]
    assert ensemble["note"] == "toy decodes the means"
    assert ensemble["steps"][1]["input_map"] == {"z_a": "z_a_mean", "z_m": "z_m_mean"}
