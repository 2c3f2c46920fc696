"""One-off repair of this run's checkpoint (applied once, at step 5460; QUALITY.md says why).

From about step 2000 on, frame 1 of every G3AN sample was black. Forward hooks showed where it
came from: the temporal stream of the last G3 module (G_T of G3_4: a 1x1x1 conv, BatchNorm, ReLU;
its output is added to the video stream as a per-frame, per-channel bias) had become a one-frame
"eraser": after its BatchNorm every frame but frame 1 is negative (ReLU → 0) and frame 1 is ~3.8,
which drives the pre-tanh output of frame 1 to −35 on average (max −15), where tanh' is 0 in
float32. No loss can then reach that sub-network: no gradient passes tanh at frame 1 and none
passes the ReLU at the other frames. Changing the frames D_I sees (--d-image-frames clip, all)
therefore could not undo it (measured: frame 1 stayed at brightness 0.0 for 400 more steps).

The repair sets that BatchNorm's scale to 0 and its shift to 1e-3, in the live weights and in the
weight average: G_T of G3_4 then adds the same 1e-3 to every frame (it added 0 to every frame but
frame 1 before), the eraser is gone, and gradients reach the sub-network again (ReLU'(1e-3) = 1).
Every other weight, the optimizers' state and the RNG state are kept.

    .venv/bin/python demo_runs/mnist_g3an/repair_dead_frame.py demo_runs/mnist_g3an/checkpoint.pt

`--restart-average` (applied once, at step 6082) restarts the weight average from the live weights
with its ramp: after the repair the average (decay 0.999, a horizon of ~1000 steps) still mixed
the pre-repair weights with the repaired ones (frame 1 of its samples grey-white, brightness 70
at step 5500 and 35 at 6000, where the live weights' frame 1 looked like every other frame).

    .venv/bin/python demo_runs/mnist_g3an/repair_dead_frame.py demo_runs/mnist_g3an/checkpoint.pt --restart-average
"""
import sys

from train.checkpoint import atomic_torch_save, read_checkpoint

PREFIX = "generator.blocks.4.temporal.1."


def repair(weights: dict) -> None:
    weights[PREFIX + "weight"].zero_()
    weights[PREFIX + "bias"].fill_(1e-3)


if __name__ == "__main__":
    path = sys.argv[1]
    state = read_checkpoint(path)
    if "--restart-average" in sys.argv[2:]:
        state["ema"] = {"weights": {k: v.clone() for k, v in state["model"].items()},
                        "decay": state["ema"]["decay"], "start_step": state["step"]}
        print(f"{path}: weight average restarted from the live weights at step {state['step']}")
    else:
        repair(state["model"])
        if state.get("ema"):
            repair(state["ema"]["weights"])
        print(f"repaired {path} at step {state['step']}")
    atomic_torch_save(state, path)
