"""Inference and training throughput of one model on this machine, every serving path in one run.

    python -m bench --family g3an --preset paper64 [--batches 1,8,32] [--repeats N]
                    [--out bench_results/g3an-paper64.json] [--markdown BENCHMARKS.md]
    python -m bench --family encgan3 --preset tiny --out bench_results/encgan3-tiny.json
    python -m bench --checkpoint demo_runs/mnist_g3an/checkpoint.pt --batches 8 --out bench_results/demo-g3an.json
    python -m bench --render bench_results/a.json bench_results/b.json --markdown BENCHMARKS.md

Paths (--paths): eager, eager-bf16, ort, ov, ov-bf16, triton-ort, triton-ov, triton-ov-bf16,
tensorrt (bench/paths.py says what each runs); bf16 paths are recorded as refused, with the
reason, on a CPU without native bf16. What one run does, in order, is in bench/run.py; how each
number is measured in bench/measure.py; the peaks in bench/machine.py. Results: JSON (--out,
rewritten after every cell) and a markdown section (--markdown, or --render later), written
between markers so that hand-written notes around it survive.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

from export.__main__ import int_list

from .paths import PATHS
from .profiles import ORT_VARIANTS
from .report import console_table, render_markdown, write_json, write_markdown


def _int_list(text: str) -> list[int]:
    return list(int_list(str(text)))


def _str_list(text: str) -> list[str]:
    return [v.strip() for v in str(text).split(",") if v.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    from train.families import family_names
    from train.models import PRESETS

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=family_names(), default="g3an")
    p.add_argument("--preset", choices=PRESETS, default="paper64")
    p.add_argument("--checkpoint", help="benchmark this checkpoint (default: random weights from --seed; speed "
                                        "does not depend on the weights)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batches", type=_int_list, default=[1, 8, 32], help="batch sizes (default 1,8,32)")
    p.add_argument("--kinds", type=_str_list, default=None,
                   help="sample,encode,reconstruct (default: every kind the family has)")
    p.add_argument("--paths", type=_str_list, default=list(PATHS), help=f"subset of {','.join(PATHS)} (default all)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per cell (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per cell at most (default 5)")
    p.add_argument("--min-repeats", type=int, default=2, help="timed calls per cell at least (default 2)")
    p.add_argument("--cell-budget-s", type=float, default=45.0,
                   help="stop timing a cell after this many seconds once --min-repeats are done (default 45)")
    p.add_argument("--big-batch-warmup-s", type=float, default=20.0,
                   help="eager only: skip the warm-up when the previous batch predicts (linearly) a call longer "
                        "than this (PyTorch keeps no per-shape state to warm; default 20)")
    p.add_argument("--passes", type=int, default=2,
                   help="run each batch's paths this many times in alternating order (A B C, C B A), --repeats "
                        "split between passes, so that slow changes in background load hit every path alike "
                        "(default 2)")
    p.add_argument("--concurrency", type=_int_list, default=[2],
                   help="Triton requests in flight per cell (default 2; e.g. 2,4)")
    p.add_argument("--sweep", type=_str_list,
                   default=["served", "one_session", "mem_pattern", "no_spin", "extended", "parallel"],
                   help="ONNX Runtime session-option variants compared at --sweep-batches, the first is the "
                        "baseline ('' to skip). Each gets two warm-up calls: with a memory pattern ONNX Runtime "
                        "needs two calls per new shape. Known: " + ", ".join(ORT_VARIANTS))
    p.add_argument("--sweep-batches", type=_int_list, default=[8], help="batches of the sweep (default 8)")
    p.add_argument("--sweep-repeats", type=int, default=3, help="timed calls per sweep variant (default 3)")
    p.add_argument("--profile-batch", type=int, default=8,
                   help="batch of the ONNX Runtime and OpenVINO per-operator profiles (0 = none)")
    p.add_argument("--no-startup", dest="startup", action="store_false",
                   help="do not measure Triton start-up per variant (ONNX Runtime; OpenVINO with an empty and a "
                        "filled compile cache)")
    p.add_argument("--server-arg", dest="server_args", action="append", default=[],
                   help="a tritonserver option for the benchmark's server (passed through `python -m serving up "
                        "-- ...`), e.g. --server-arg=--backend-config=python,shm-default-byte-size=67108864; repeatable")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: physical cores)")
    p.add_argument("--max-batch-size", type=int, default=0, help="Triton max_batch_size (default: largest batch)")
    p.add_argument("--queue-delay-us", type=int, default=2000, help="Triton dynamic batching delay (default 2000)")
    p.add_argument("--preferred-batch-sizes", default="",
                   help="Triton dynamic batching preferred sizes, e.g. 8 (default: the exporter's, max/2 and max)")
    p.add_argument("--instances", type=int, default=1, help="Triton instances per model (default 1)")
    p.add_argument("--ort-threads", type=int, default=0, help="served ORT intra-op threads (default 0 = auto)")
    p.add_argument("--tensorrt-precisions", type=_str_list, default=["FP16", "FP32"])
    p.add_argument("--train-families", type=_str_list, default=list(family_names()),
                   help="training throughput for these families (default all three; empty to skip)")
    p.add_argument("--train-presets", type=_str_list, default=["tiny"], help="presets for training (default tiny)")
    p.add_argument("--train-batch-size", type=int, default=4, help="clips per training step (default 4)")
    p.add_argument("--train-repeats", type=int, default=5, help="timed training steps at most (default 5)")
    p.add_argument("--train-warmup", type=int, default=1, help="untimed training steps first (default 1)")
    p.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                   help="model option for the training throughput, as train/run.py's --set (e.g. the demo run's "
                        "config: --train-set channels=16 --train-set num_classes=10); repeatable")
    p.add_argument("--train-precisions", type=_str_list, default=["fp32", "bf16"],
                   help="training precisions (default fp32,bf16; bf16 is recorded as refused where not native)")
    p.add_argument("--out", help="JSON results (default bench_results/<family>-<preset>-<UTC time>.json)")
    p.add_argument("--markdown", help="also write the markdown section of this run into this file")
    p.add_argument("--render", nargs="+", metavar="JSON",
                   help="do not measure: render these result files into --markdown (or stdout)")
    p.add_argument("--workdir", help="keep the checkpoint, repository and server logs here (default: a temp folder, "
                                     "removed afterwards)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.render:
        return args
    bad = [x for x in args.paths if x not in PATHS]
    if bad:
        p.error(f"unknown --paths {bad}; known {', '.join(PATHS)}")
    for variant in args.sweep:
        bad = [v for v in variant.split("+") if v not in ORT_VARIANTS]
        if bad:
            p.error(f"unknown ONNX Runtime variant(s) {bad}; known {sorted(ORT_VARIANTS)}")
    return args


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        section = render_markdown([json.loads(Path(p).read_text()) for p in args.render])
        if args.markdown:
            write_markdown(Path(args.markdown), section)
            _log(f"wrote {args.markdown}")
        else:
            print(section)
        return 0
    from .run import run

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else Path("bench_results") / f"{args.family}-{args.preset}-{stamp}.json"
    result = run(args, out)
    write_json(out, result)
    if args.markdown:
        write_markdown(Path(args.markdown), render_markdown([result]))
    print(console_table(result))
    _log(f"wrote {out} ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
