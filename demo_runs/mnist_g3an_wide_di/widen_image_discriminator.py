"""One-off: continue the G3AN demo run (demo_runs/mnist_g3an, step 6531) with a wider, fresh D_I.

Why (QUALITY.md, G3AN section): the demo run's FVD was flat at 250-285 (N = 128) from step 3000 to
6531, its samples are glyph fragments, not digits, and its image discriminator D_I (`tiny`: 8 base
channels, 45 k parameters) sat at a loss of 0.4-0.85 the whole time while D_V won outright: a
digit-shape critic that small may not tell a stroke fragment from a "4". In the equal-budget
control (demo_runs/compare), a 32-wide D_I from step 0 gave FVD 2046.9 / 770.6 at 300 / 600 steps
against 2703.8 / 894.8.

What it does to a copy of the demo checkpoint (the original run stays as it was): the config's
`d_image_channels` becomes WIDTH, D_I is replaced by a freshly initialised one of that width (the
model's own initialisation, seed 0), in the live weights and in the weight average, and D_I's Adam
state starts empty. The generator, D_V, their optimizers, the weight average of G, the step and the
RNG states are kept, so training resumes from here exactly as any run resumes.

    cp demo_runs/mnist_g3an/checkpoint.pt demo_runs/mnist_g3an/losses.jsonl demo_runs/mnist_g3an_wide_di/
    .venv/bin/python demo_runs/mnist_g3an_wide_di/widen_image_discriminator.py demo_runs/mnist_g3an_wide_di/checkpoint.pt 32
"""
import sys

import torch

from train.checkpoint import atomic_torch_save, read_checkpoint
from train.models import build_from_config, make_config
from train.recipes import RecipeOptions, make_optimizers


def widen(state: dict, width: int) -> None:
    if state["family"] != "g3an":
        raise SystemExit(f"a G3AN checkpoint is needed, this one holds {state['family']}")
    state["config"]["d_image_channels"] = width
    torch.manual_seed(0)
    model = build_from_config(state["family"], state["preset"], make_config(state["family"], state["preset"],
                                                                           **state["config"]))
    fresh = {k: v for k, v in model.state_dict().items() if k.startswith("d_image.")}
    for weights in [state["model"]] + ([state["ema"]["weights"]] if state.get("ema") else []):
        for key in [k for k in weights if k.startswith("d_image.")]:
            del weights[key]
        weights.update({k: v.clone() for k, v in fresh.items()})
    nets = dict(model.named_children())
    state["optimizers"]["d_image"] = make_optimizers("g3an", nets, RecipeOptions())["d_image"].state_dict()


if __name__ == "__main__":
    path, width = sys.argv[1], int(sys.argv[2])
    state = read_checkpoint(path)
    widen(state, width)
    atomic_torch_save(state, path)
    print(f"{path}: D_I replaced by a fresh {width}-wide one at step {state['step']}")
