"""Write clips of a data set to video files, to look at them or to feed the clients.

    python -m train.data moving-mnist --split test --count 4 --out clips/      # clip0000.mp4 …
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import build_dataset
from common.video_files import write_video

from ..samples import to_uint8


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="moving-mnist | moving-mnist-same-class | pedestrians | carphone | a folder")
    p.add_argument("--split", default="test", help="train, test or all (default test)")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--frame-steps", default="1", help="time steps between frames (default 1)")
    p.add_argument("--count", type=int, default=1, help="clips to write (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=["mp4", "gif"], default="mp4")
    p.add_argument("--out", required=True, help="output folder")
    args = p.parse_args(argv)
    dataset = build_dataset(args.spec, resolution=args.resolution, split=args.split, seed=args.seed,
                            steps=tuple(int(s) for s in args.frame_steps.split(",")))
    out = Path(args.out)
    for i in range(min(args.count, len(dataset))):
        video, label = dataset[i]
        frames = to_uint8(video[None])[0]
        path = out / f"clip{i:04d}.{args.format}"
        write_video(path, frames)
        print(json.dumps({"file": str(path), "label": label}))


if __name__ == "__main__":
    main()
