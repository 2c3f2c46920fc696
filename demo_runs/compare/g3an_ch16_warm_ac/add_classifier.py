"""One-off: give the served G3AN run's checkpoint D_I's auxiliary classifier (`d_classifier`), to train on.

Why (QUALITY.md, G3AN section, session 10): the conditional 16-wide run `compare/g3an_ch16_warm_plain`
kept improving on FVD but ignored its label (requested digit 1.6-3 %). The AC-GAN classifier is the
direct route from the label to G; this run continues that run with it, so the label is the only
change. The config gains `d_classifier=true`; D_I gains `classifier.weight/bias` (the model's own
initialisation, seed 0, in the live weights and in the weight average); every other weight and
every Adam state are kept (the classifier's parameters come last in D_I, so its Adam state only
grows; Adam fills the new ones on their first step). Step, RNG and weight-average decay are kept.

    cp demo_runs/compare/g3an_ch16_warm_plain/{checkpoint.pt,losses.jsonl,quality.jsonl} demo_runs/compare/g3an_ch16_warm_ac/
    .venv/bin/python demo_runs/compare/g3an_ch16_warm_ac/add_classifier.py demo_runs/compare/g3an_ch16_warm_ac/checkpoint.pt
"""
import sys

import torch

from train.checkpoint import atomic_torch_save, read_checkpoint
from train.models import build_from_config, make_config


def add_classifier(state: dict) -> list[str]:
    if state["family"] != "g3an" or not state["config"]["num_classes"] or state["config"].get("d_classifier"):
        raise SystemExit("a conditional G3AN checkpoint without a classifier is needed")
    state["config"]["d_classifier"] = True
    torch.manual_seed(0)
    model = build_from_config(state["family"], state["preset"],
                              make_config(state["family"], state["preset"], **state["config"]))
    fresh = model.state_dict()
    new = [key for key in fresh if key not in state["model"]]
    if not new or not all(key.startswith("d_image.classifier.") for key in new):
        raise SystemExit(f"unexpected new weights: {new}")
    for weights in [state["model"]] + ([state["ema"]["weights"]] if state.get("ema") else []):
        for key in new:
            weights[key] = fresh[key].clone()
    group = state["optimizers"]["d_image"]["param_groups"][0]
    group["params"] += [max(group["params"]) + 1 + i for i in range(len(new))]
    return new


if __name__ == "__main__":
    path = sys.argv[1]
    state = read_checkpoint(path)
    new = add_classifier(state)
    atomic_torch_save(state, path)
    print(f"{path}: step {state['step']}, new: {', '.join(new)}")
