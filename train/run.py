"""Train G3AN, EncGAN3 or AVLAE — or describe one with --summary.

    python train/run.py --model g3an --preset paper64 --summary
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.models import FAMILIES, PRESETS, build_model  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=FAMILIES, required=True, help="which paper's system")
    p.add_argument("--preset", choices=PRESETS, default="tiny", help="model size (default: tiny)")
    p.add_argument("--summary", action="store_true", help="print the model's description as JSON and exit")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.summary:
        model = build_model(args.model, args.preset)
        print(json.dumps(model.describe()))
        return


if __name__ == "__main__":
    main()
