"""One-off: make a conditional G3AN checkpoint from the unconditional 16-wide one, to train on.

Why (QUALITY.md, G3AN section, sessions 8-9): the 16-wide generator learned fast unconditionally
(demo_runs/compare/g3an_ch16: FVD 223.7 at N = 128 after 1200 steps, smooth moving strokes), while
every conditional 16-wide run from scratch either collapsed (z_a influence 1-4 grey levels) or,
with the mode-seeking term, learned much more slowly. So the conditional demo candidate starts
from the unconditional generator and learns the label on top of it.

What it does to a copy of demo_runs/compare/g3an_ch16/checkpoint.pt (step 1200; that run stays as
it was): the config becomes conditional with the demo's conditioning (num_classes 10, label into
G_S, G_V and G_T, projection discriminators). Every weight whose shape did not change is kept
(live weights and the generator's weight average). The first layers of the three streams gain
input channels for the one-hot label; they are appended after the existing ones (the generator
concatenates the label last) and start at zero, so the conditional generator draws exactly what
the unconditional one drew, whatever the label. Spectral norm's power-iteration vector v of those
layers is zero-padded the same way, which is exact (the new columns of W are zero). The
discriminators' projection embeddings are new (the model's own initialisation, seed 0; in the
live weights and in the weight average, which holds the whole model). Every
Adam state starts empty (parameter shapes changed). Step, RNG and the weight average's decay are
kept, so training resumes from step 1200 as any run resumes.

    cp demo_runs/compare/g3an_ch16/checkpoint.pt demo_runs/compare/g3an_ch16/losses.jsonl demo_runs/mnist_g3an_ch16_warm/
    .venv/bin/python demo_runs/mnist_g3an_ch16_warm/condition_unconditional.py demo_runs/mnist_g3an_ch16_warm/checkpoint.pt
"""
import sys

import torch

from train.checkpoint import atomic_torch_save, read_checkpoint
from train.models import build_from_config, make_config
from train.recipes import RecipeOptions, make_optimizers

CONDITIONING = {"num_classes": 10, "label_into_spatial": True, "label_into_video": True, "d_condition": "projection"}


def padded(old: torch.Tensor, new: torch.Tensor, key: str) -> torch.Tensor:
    """`old` inside a zero tensor of `new`'s shape: the one grown dimension keeps old's leading slice."""
    grown = [d for d, (a, b) in enumerate(zip(old.shape, new.shape)) if a != b]
    if old.dim() != new.dim() or len(grown) != 1 or old.shape[grown[0]] > new.shape[grown[0]]:
        raise SystemExit(f"{key}: cannot map {tuple(old.shape)} onto {tuple(new.shape)}")
    out = torch.zeros_like(new)
    out.narrow(grown[0], 0, old.shape[grown[0]]).copy_(old)
    return out


def condition(state: dict) -> list[str]:
    if state["family"] != "g3an" or state["config"]["num_classes"]:
        raise SystemExit("an unconditional G3AN checkpoint is needed")
    state["config"].update(CONDITIONING)
    state["data"]["num_classes"] = CONDITIONING["num_classes"]
    torch.manual_seed(0)
    model = build_from_config(state["family"], state["preset"],
                              make_config(state["family"], state["preset"], **state["config"]))
    fresh = model.state_dict()
    changed = []
    for weights in [state["model"]] + ([state["ema"]["weights"]] if state.get("ema") else []):
        for key in list(weights):
            if key not in fresh:
                raise SystemExit(f"{key} is not in the conditional model")
            if weights[key].shape != fresh[key].shape:
                weights[key] = padded(weights[key], fresh[key], key)
                changed.append(key)
        for key, value in fresh.items():  # the average holds the whole model, discriminators too
            if key not in weights:
                if key.startswith("generator."):
                    raise SystemExit(f"{key}: a new generator weight (only grown ones are expected)")
                weights[key] = value.clone()
                changed.append(key)
    nets = dict(model.named_children())
    state["optimizers"] = {name: opt.state_dict() for name, opt in make_optimizers("g3an", nets, RecipeOptions()).items()}
    return sorted(set(changed))


if __name__ == "__main__":
    path = sys.argv[1]
    state = read_checkpoint(path)
    changed = condition(state)
    atomic_torch_save(state, path)
    print(f"{path}: conditional at step {state['step']}; grown or new: {', '.join(changed)}")
