"""Do a conditional G3AN's discriminators and generator use the label? (QUALITY.md, G3AN, session 7)

For a checkpoint (live weights): the mean logit of D_I (frame 8) and D_V on 64 held-out clips with
their own label minus with a wrong one (the label shifted by 5), and the generator's latent
influence (train.quality.latent_influence, averaged weights). A discriminator that ignores the
label has a gap of 0; a generator that ignores it moves its output by ~0 grey levels.

    .venv/bin/python demo_runs/mnist_g3an_wide_di/label_gap.py demo_runs/mnist_g3an_wide_di/checkpoint.pt
"""
import json
import sys

import torch

from train.checkpoint import model_from_checkpoint, read_checkpoint
from train.quality import held_out, latent_influence


@torch.no_grad()
def label_gap(path: str, clips: int = 64) -> dict:
    state = read_checkpoint(path)
    model = model_from_checkpoint(state).eval()
    test = held_out(state["data"])
    items = [test[i] for i in range(clips)]
    video, label = torch.stack([v for v, _ in items]), torch.as_tensor([y for _, y in items])
    right = torch.nn.functional.one_hot(label, 10).float()
    wrong = torch.nn.functional.one_hot((label + 5) % 10, 10).float()
    frame = video[:, :, 8]
    return {"checkpoint": path, "step": state["step"],
            "d_image_gap": round(float((model.d_image(frame, right) - model.d_image(frame, wrong)).mean()), 3),
            "d_video_gap": round(float((model.d_video(video, right) - model.d_video(video, wrong)).mean()), 3),
            "influence": latent_influence(model_from_checkpoint(state, averaged=True).eval())}


if __name__ == "__main__":
    torch.set_num_threads(1)
    for path in sys.argv[1:]:
        print(json.dumps(label_gap(path)), flush=True)
