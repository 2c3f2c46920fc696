"""Export a videogan checkpoint into a Triton model repository (ONNX, parity-gated).

    python -m export --checkpoint runs/g3an/checkpoint.pt --repository model_repository --name g3an --target cpu
    python -m export --checkpoint C --repository R --name g3an --target cpu --precision bf16        # AMX / AVX512-BF16 CPUs
    python -m export --checkpoint C --repository R --name g3an --target cpu --runtime onnxruntime   # ONNX Runtime instead of OpenVINO
    python -m export --checkpoint C --repository R --name encgan3 --target gpu                 # onnxruntime + TensorRT accelerator (FP16)
    python -m export --checkpoint C --repository R --name avlae --target gpu --tensorrt        # TensorRT engines (on the GPU host)
    python -m export.check R                                                                    # validate a repository

Writes NAME_sample (every family) and NAME_encode, NAME_decode, NAME_reconstruct (encgan3,
avlae) as version N = 1 + the newest existing version of any NAME_* model. Order of work:
check the repository is writable and the export is compatible with what it holds, load the
checkpoint, trace every graph to ONNX (onnx.checker, opset >= 17, no random ops, dynamic
batch), run the parity gate (the runtime that will serve vs PyTorch on batches 1, 3, 8: on
--target cpu OpenVINO, or ONNX Runtime with --runtime onnxruntime, at the serving precision;
on --target gpu ONNX Runtime's CPU provider, then each TensorRT engine), build TensorRT
engines if asked, stage every model folder next to the repository, validate the staged
folders with export.check, swap them in. Any error before the swap leaves the repository as
it was. The last line printed is a JSON summary; `export_checkpoint()` is the same export as
a library call (it returns that summary).

Precision on --target cpu: fp32 (default) is gated exactly (export.parity.Tolerance); bf16 runs
OpenVINO with INFERENCE_PRECISION_HINT bf16 on a CPU with AVX512-BF16 or AMX and is gated by
export.parity.BF16_TOLERANCE (PSNR / SNR >= 40 dB against the FP32 reference; the figures and
the bound go into every manifest). On a CPU without either, bf16 is refused before any work:
the gate has to measure the real bf16 arithmetic, and emulated bf16 would serve slower than
fp32 (export on the machine that will serve).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from train.families import family_names

from export.onnx_export import DEFAULT_OPSET, RECONSTRUCT_OUTPUT, ExportError, Tensor, reconstruct_map
from export.parity import DEFAULT_BATCHES, ParityError, Runtime, Tolerance, tolerance_for
from export.repository import (CPU_RUNTIMES, ENSEMBLE_KEEP, KINDS, ModelPlan, Options, RepositoryError,
                               check_name, conflicts,
                               model_name, next_version, python_backend_files, read_existing,
                               sha256_bytes, sha256_file, staging_parent, tool_versions, write_models)

EXPORTER_VERSION = "1"


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint written by train/run.py (train/checkpoint.py format)")
    p.add_argument("--repository", required=True, help="Triton model repository folder (created if missing)")
    p.add_argument("--name", help="model name prefix: NAME_sample, NAME_encode, ... (default: the checkpoint's family)")
    p.add_argument("--target", choices=("cpu", "gpu"), required=True,
                   help="cpu: python backend running model.onnx with OpenVINO or ONNX Runtime (embedded Triton); "
                        "gpu: Triton's onnxruntime backend on KIND_GPU with the TensorRT accelerator, "
                        "or tensorrt_plan engines with --tensorrt")
    p.add_argument("--family", choices=family_names(),
                   help="refuse the checkpoint unless it holds this family")
    p.add_argument("--tensorrt", action="store_true",
                   help="gpu: build tensorrt_plan engines here (needs TensorRT and the serving GPU)")
    p.add_argument("--precision", type=str.upper, choices=("FP32", "BF16", "FP16"),
                   help="cpu: fp32 (default, exact gate) or bf16 (OpenVINO on CPUs with AVX512-BF16 or AMX, "
                        "gated by PSNR/SNR >= 40 dB; refused on other CPUs); gpu: TensorRT precision of the "
                        "accelerator / engines, fp16 (default) or fp32")
    p.add_argument("--runtime", choices=CPU_RUNTIMES, default="openvino",
                   help="cpu: what model.py runs the graph with (default openvino; onnxruntime: ONNX Runtime)")
    p.add_argument("--quality", help="a JSON file of the model's measured quality (python -m train.quality "
                                     "--output): copied into every manifest as 'quality'")
    p.add_argument("--max-batch-size", type=int, default=8, help="config max_batch_size (default 8)")
    p.add_argument("--preferred-batch-sizes", type=int_list, default=(),
                   help="dynamic_batching preferred sizes, e.g. 4,8 (default: max/2 and max)")
    p.add_argument("--queue-delay-us", type=int, default=2000,
                   help="dynamic_batching max_queue_delay_microseconds (default 2000)")
    p.add_argument("--instances", type=int, default=1, help="instance_group count (default 1)")
    p.add_argument("--ort-threads", type=int, default=0,
                   help="cpu: ONNX Runtime intra-op threads per instance, config parameter "
                        "ORT_INTRA_OP_THREADS (default 0 = auto: cores available, at most 4); used for "
                        "one-video batches, and for all batches with --ort-batch-shards 1")
    p.add_argument("--ort-batch-shards", type=int, default=0,
                   help="cpu: split a batch into this many shards run side by side on one thread each, "
                        "config parameter ORT_BATCH_SHARDS (default 0 = auto: one per core, at most 4; "
                        "1 = off)")
    p.add_argument("--ov-threads", type=int, default=0,
                   help="cpu/openvino: threads of a one-video batch, config parameter OV_THREADS (default 0 = auto: "
                        "the cores available)")
    p.add_argument("--ov-batch-shards", type=int, default=0,
                   help="cpu/openvino: split a batch into this many shards run side by side (one stream and one "
                        "thread each), config parameter OV_BATCH_SHARDS (default 0 = auto: one per core, at most 4; "
                        "1 = off)")
    p.add_argument("--ov-cache-dir", default="auto",
                   help="cpu/openvino: compile cache, config parameter OV_CACHE_DIR: auto (default: "
                        "$VIDEOGAN_OV_CACHE_DIR, else ~/.cache/videogan/openvino, a folder per graph), off, or a folder")
    p.add_argument("--serve-versions", type=int, default=2,
                   help="version_policy latest N (default 2: the new and the previous version); 0 = all")
    p.add_argument("--no-warmup", action="store_true", help="leave model_warmup out of the configs")
    p.add_argument("--replace", action="store_true",
                   help="drop the existing versions of NAME_* (needed when tensors/backend/target change)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (>= 17, default {DEFAULT_OPSET})")
    p.add_argument("--parity-batches", type=int_list, default=DEFAULT_BATCHES,
                   help="batch sizes of the parity gate (default 1,3,8; those above max_batch_size are skipped)")
    p.add_argument("--atol", type=float, default=1e-4, help="parity: float tolerance, absolute part (default 1e-4)")
    p.add_argument("--rtol", type=float, default=1e-5,
                   help="parity: float tolerance, part relative to max|torch| of the tensor (default 1e-5)")
    p.add_argument("--max-uint8-diff", type=int, default=1, help="parity: uint8 levels allowed (default 1)")
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads, and shards of the served session in the parity gate, used here (default 2)")
    p.add_argument("--trt-opt-batch", type=int, default=0, help="--tensorrt: profile opt batch (default max)")
    p.add_argument("--trt-workspace-mib", type=int, default=4096, help="TensorRT workspace (MiB)")
    p.add_argument("--trt-builder", choices=("python", "trtexec"), default="python",
                   help="--tensorrt: build with the TensorRT Python API (default) or the trtexec binary")
    p.add_argument("--trtexec", default="trtexec",
                   help="trtexec binary for --trt-builder trtexec (default: PATH, then /usr/src/tensorrt/bin/trtexec)")
    return p.parse_args(argv)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _checkpoint_entry(path: Path, meta: dict) -> dict:
    entry = {
        "path": str(path.resolve()),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "step": meta.get("step"),
        "format_version": meta.get("format_version"),
        "data": meta.get("data") or {},
    }
    for key in ("weights", "recipe", "seed", "trained_at", "saved_at"):
        if key in meta:
            entry[key] = meta[key]
    return entry


@dataclasses.dataclass
class Graphs:
    """The traced graphs of one export, by kind (sample / encode / decode)."""

    specs: dict
    protos: dict
    onnx_bytes: dict


def run(args: argparse.Namespace) -> dict:
    """The export, step by step (the module docstring says why in this order). → the summary."""
    import torch

    from train.checkpoint import load_for_inference

    options = export_options(args)
    served = served_runtime(options, max(1, args.threads))
    tolerance = tolerance_for(served.precision, Tolerance(atol=args.atol, rtol=args.rtol,
                                                          max_uint8_levels=args.max_uint8_diff))
    batches = [b for b in args.parity_batches if b <= options.max_batch_size]
    if not batches:
        raise ValueError(f"every --parity-batches size is above --max-batch-size {options.max_batch_size}")
    repository, checkpoint = Path(args.repository), Path(args.checkpoint)
    if args.name is not None:
        check_name(args.name)

    # 1. cheap checks first: nothing is computed for an export that cannot be written
    quality = preflight(args, options, served, checkpoint, repository)
    torch.set_num_threads(max(1, args.threads))

    # 2. the model, and the version it will be
    model, meta = load_for_inference(checkpoint)
    if args.family and meta["family"] != args.family:
        raise ValueError(f"{checkpoint} holds a {meta['family']} model, not {args.family} (--family)")
    name = check_name(args.name or meta["family"])
    all_names = [model_name(name, k) for k in KINDS]
    existing = read_existing(repository, all_names)
    planned_names = check_model_set(model, name, existing, all_names, options, repository)
    version = next_version(existing)
    _log(f"export: {checkpoint} holds {model.family}/{model.preset} (step {meta.get('step')}); "
         f"writing {', '.join(planned_names)} version {version} to {repository} (target {options.target}, "
         f"backend {options.backend})")

    # 3. ONNX graphs, 4. parity gate (raises ParityError: nothing written), 5. TensorRT engines
    graphs = trace_graphs(model, meta, name, args.opset)
    parity = parity_gate(graphs, model, name, batches, tolerance, served)
    engines, engine_info = build_engines(args, options, graphs, name, batches) if options.tensorrt else ({}, {})

    # 6. plans, checked against what the repository holds now that the tensors are known
    plans = model_plans(graphs, options, engines, engine_info, parity, name, model.family, args.opset)
    if not options.replace:
        late = conflicts(existing, plans, all_names, options)
        if late:
            raise RepositoryError(_conflict_message(repository, name, late))

    # 7. stage, validate, swap
    common = manifest_common(args, model, meta, checkpoint, quality, options, served, batches, tolerance)
    written = write_models(repository, plans, export_name=name, all_names=all_names, version=version,
                           options=options, common=common, validate=_validate_staged)
    return {
        "repository": str(repository.resolve()), "name": name, "version": version,
        "family": model.family, "preset": model.preset, "target": options.target, "backend": options.backend,
        "runtime": served.name, "precision": served.precision,
        "models": {n: sorted(str(p.relative_to(f)) for p in (f / str(version)).rglob("*") if p.is_file())
                   for n, f in written.items()},
        "parity": {model_name(name, k): _parity_figures(r) for k, r in parity.items()},
    }


def export_options(args: argparse.Namespace) -> Options:
    options = Options(
        target=args.target, tensorrt=args.tensorrt,
        precision=args.precision or ("FP32" if args.target == "cpu" else "FP16"), runtime=args.runtime,
        max_batch_size=args.max_batch_size, preferred_batch_sizes=tuple(args.preferred_batch_sizes),
        queue_delay_us=args.queue_delay_us, instances=args.instances, ort_intra_threads=args.ort_threads,
        ort_batch_shards=args.ort_batch_shards, ov_threads=args.ov_threads, ov_batch_shards=args.ov_batch_shards,
        ov_cache_dir=args.ov_cache_dir,
        serve_versions=args.serve_versions, warmup=not args.no_warmup, replace=args.replace,
        trt_opt_batch=args.trt_opt_batch, trt_workspace_mib=args.trt_workspace_mib)
    options.validate()
    return options


def preflight(args, options: Options, served: Runtime, checkpoint: Path, repository: Path):
    """What can be refused before any work: the checkpoint, --quality, a writable repository,
    native bf16, the TensorRT builder. → the --quality figures (or None)."""
    from export import tensorrt as trt_support

    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    quality = read_quality(args.quality) if args.quality else None
    staging_parent(repository)
    if served.precision == "bf16":
        require_native_bf16()
    if options.tensorrt:
        if args.trt_builder == "python":
            trt_support.require_tensorrt()
        else:
            trt_support.find_trtexec(args.trtexec)
    return quality


def check_model_set(model, name: str, existing: dict, all_names: list[str], options: Options,
                    repository: Path) -> list[str]:
    """The models this export writes; refuses early what conflicts with the repository already
    (the model set and backend are known before tracing, the tensors only after)."""
    from export.onnx_export import has_encoder

    kinds = ["sample"] + (["encode", "decode", "reconstruct"] if has_encoder(model) else [])
    planned_names = [model_name(name, k) for k in kinds]
    if not options.replace:
        sketch = [ModelPlan(n, n.rsplit("_", 1)[1], [], [], steps=[] if n.endswith("_reconstruct") else None)
                  for n in planned_names]
        early = [p for p in conflicts(existing, sketch, all_names, options) if p.what != "tensors"]
        if early:
            raise RepositoryError(_conflict_message(repository, name, early))
    return planned_names


def trace_graphs(model, meta: dict, name: str, opset: int) -> Graphs:
    from export.onnx_export import export_all

    t0 = time.monotonic()
    graphs = export_all(model, opset=opset,
                        metadata={"videogan.family": model.family, "videogan.preset": model.preset,
                                  "videogan.checkpoint_step": meta.get("step"), "videogan.export_name": name})
    _log(f"export: traced {len(graphs)} graph(s) in {time.monotonic() - t0:.1f} s")
    protos = {spec.kind: proto for spec, proto in graphs}
    return Graphs(specs={spec.kind: spec for spec, _ in graphs}, protos=protos,
                  onnx_bytes={kind: proto.SerializeToString() for kind, proto in protos.items()})


def parity_gate(graphs: Graphs, model, name: str, batches: list[int], tolerance: Tolerance, served: Runtime) -> dict:
    """The served runtime against PyTorch, per graph and for the reconstruct chain; raises ParityError."""
    from export.parity import check_parity, check_reconstruct_parity

    specs, onnx_bytes = graphs.specs, graphs.onnx_bytes
    parity = {}
    for kind, spec in specs.items():
        t0 = time.monotonic()
        parity[kind] = check_parity(onnx_bytes[kind], spec, name=model_name(name, kind), batches=batches,
                                    tolerance=tolerance, runtime=served)
        _log(f"export: parity {model_name(name, kind)}: {_parity_line(parity[kind])} ({time.monotonic() - t0:.1f} s)")
    if "encode" in specs:
        parity["reconstruct"] = check_reconstruct_parity(
            onnx_bytes["encode"], onnx_bytes["decode"], specs["encode"], specs["decode"],
            reconstruct_map(model.family), name=model_name(name, "reconstruct"), batches=batches,
            tolerance=tolerance, runtime=served)
        _log(f"export: parity {model_name(name, 'reconstruct')}: {_parity_line(parity['reconstruct'])}")
    return parity


def build_engines(args, options: Options, graphs: Graphs, name: str, batches: list[int]) -> tuple[dict, dict]:
    """--tensorrt (GPU host only): an engine per graph, compared with PyTorch where TensorRT's
    Python module can run it. → (engines, their manifest entries)"""
    from export import tensorrt as trt_support

    engines, engine_info = {}, {}
    can_run = trt_support.tensorrt_python_available()
    opt_batch = options.trt_opt_batch or options.max_batch_size
    for kind, spec in graphs.specs.items():
        t0 = time.monotonic()
        build = dict(precision=options.precision, max_batch=options.max_batch_size, opt_batch=opt_batch,
                     workspace_mib=options.trt_workspace_mib)
        if args.trt_builder == "python":
            engines[kind] = trt_support.build_engine(graphs.onnx_bytes[kind], spec.inputs, **build)
        else:
            engines[kind] = trt_support.build_engine_trtexec(graphs.onnx_bytes[kind], spec.inputs,
                                                             trtexec=args.trtexec, **build)
        info = {"builder": args.trt_builder, "precision": options.precision,
                "profile": {"min": 1, "opt": opt_batch, "max": options.max_batch_size},
                "build_seconds": round(time.monotonic() - t0, 1), **trt_support.gpu_description()}
        if can_run:
            import tensorrt as trt

            report = trt_support.engine_parity(engines[kind], spec, name=model_name(name, kind),
                                               precision=options.precision, batches=batches)
            info.update({"tensorrt": trt.__version__, "io": trt_support.engine_io(engines[kind]), "parity": report})
            _log(f"export: TensorRT {options.precision} engine {model_name(name, kind)}: {_parity_line(report)}")
        else:
            info["parity"] = {"passed": None, "skipped": "the TensorRT Python module is not importable here: "
                              "the engine was built by trtexec and not compared with PyTorch"}
            _log(f"export: TensorRT engine {model_name(name, kind)} built by trtexec (not compared with "
                 "PyTorch: no TensorRT Python module)")
        engine_info[kind] = info
    return engines, engine_info


def model_plans(graphs: Graphs, options: Options, engines: dict, engine_info: dict, parity: dict, name: str,
                family: str, opset: int) -> list[ModelPlan]:
    """One ModelPlan per Triton model: the backend's files and the manifest entry of each graph,
    plus the reconstruct ensemble of an encoder family."""
    plans = []
    for kind, spec in graphs.specs.items():
        onnx_bytes, proto = graphs.onnx_bytes[kind], graphs.protos[kind]
        if options.backend == "python":
            files = python_backend_files(onnx_bytes, options)
        elif options.backend == "onnxruntime":
            files = {"model.onnx": onnx_bytes}
        else:
            files = {"model.plan": engines[kind], "model.onnx": onnx_bytes}
        entry = {"graph": kind, "parity": parity[kind],
                 "onnx": {"opset": opset, "sha256": sha256_bytes(onnx_bytes), "bytes": len(onnx_bytes),
                          "nodes": len(proto.graph.node), "ir_version": proto.ir_version}}
        if kind in engine_info:
            entry["tensorrt_engine"] = engine_info[kind]
        plans.append(ModelPlan(model_name(name, kind), kind, spec.inputs, spec.outputs, files, entry))
    if "encode" in graphs.specs:
        plans.append(_reconstruct_plan(name, family, graphs.specs, parity["reconstruct"]))
    return plans


def manifest_common(args, model, meta: dict, checkpoint: Path, quality, options: Options, served: Runtime,
                    batches: list[int], tolerance: Tolerance) -> dict:
    """What every manifest of this export says about the model, checkpoint, options and tools."""
    return {
        "family": model.family, "preset": model.preset,
        "model_config": dataclasses.asdict(model.config),
        "video_shape": {"T": model.video_shape[1], "H": model.video_shape[2], "W": model.video_shape[3], "C": 3},
        "latent_dims": {"z_a": model.z_a_dim, "z_m": model.z_m_dim, "num_classes": model.num_classes},
        "checkpoint": _checkpoint_entry(checkpoint, meta),
        "metrics": meta.get("metrics"),
        "quality": quality,
        "target": options.target, "backend": options.backend,
        **({"runtime": {"name": served.name, "precision": served.precision}} if options.target == "cpu" else {}),
        "export_options": {**options.to_json(), "opset": args.opset, "parity_batches": batches,
                           "tolerance": tolerance.to_json()},
        "tools": {**tool_versions(), "exporter": EXPORTER_VERSION},
    }


def _validate_staged(view: Path, _existing) -> None:
    from export.check import check_repository

    problems, _ = check_repository(view, run_checker=False)
    if problems:
        raise RepositoryError("the staged export does not pass export.check (nothing written): " + "; ".join(problems))


def served_runtime(options: Options, threads: int) -> Runtime:
    """What the parity gate runs: the served runtime and precision on --target cpu; ONNX Runtime's
    CPU provider in FP32 for --target gpu (its engines are gated on their own, export.tensorrt)."""
    if options.target == "cpu":
        return Runtime(options.runtime, options.precision.lower(), threads)
    return Runtime("onnxruntime", "fp32", threads)


def require_native_bf16() -> None:
    """--precision bf16 only where the CPU computes bf16 natively (the flags train.runtime reads)."""
    import torch

    from train.runtime import bf16_native

    ok, why = bf16_native(torch.device("cpu"))
    if not ok:
        raise ValueError(f"--precision bf16 refused: {why}. Export with --precision fp32 (the default), or on the "
                         "AVX512-BF16 / AMX machine that will serve (the parity gate measures the real bf16 arithmetic).")


def export_checkpoint(checkpoint, repository, *, target: str = "cpu", **flags) -> dict:
    """The export as a library call: `flags` are the command line's options by their argparse
    names (name="g3an", runtime="openvino", precision="BF16", max_batch_size=32, replace=True, ...).
    Returns the summary the command prints; raises what the command reports as an error."""
    args = parse_args(["--checkpoint", str(checkpoint), "--repository", str(repository), "--target", target])
    unknown = sorted(set(flags) - set(vars(args)))
    if unknown:
        raise TypeError(f"export_checkpoint: unknown option(s) {unknown}")
    vars(args).update(flags)
    return run(args)


def read_quality(path: str) -> list:
    """The JSON lines `python -m train.quality --output` wrote (figures of the model and floors)."""
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"--quality {path}: not a file of JSON lines ({error})") from error


def _reconstruct_plan(name: str, family: str, specs: dict, report: dict) -> ModelPlan:
    enc, dec = specs["encode"], specs["decode"]
    from train.families import get_family

    mapping = reconstruct_map(family)
    extra = [t for t in dec.inputs if t.name not in mapping.values()]   # label of a conditional model
    video_in = next(t for t in enc.inputs if t.name == "video")
    video_out = next(t for t in dec.outputs if t.name == "video")
    steps = [
        {"model": model_name(name, "encode"), "input_map": {"video": "video"},
         "output_map": {src: src for src in mapping}},
        {"model": model_name(name, "decode"),
         "input_map": {**{dst: src for src, dst in mapping.items()}, **{t.name: t.name for t in extra}},
         "output_map": {"video": RECONSTRUCT_OUTPUT}},
    ]
    entry = {"graph": "reconstruct", "parity": report,
             "ensemble": {"steps": steps, "note": get_family(family).reconstruct_note}}
    return ModelPlan(model_name(name, "reconstruct"), "reconstruct", [video_in, *extra],
                     [Tensor(RECONSTRUCT_OUTPUT, video_out.dtype, video_out.dims)], {ENSEMBLE_KEEP: b""}, entry,
                     steps=steps)


def _conflict_message(repository: Path, name: str, problems: list) -> str:
    return (f"cannot add a version of {name} to {repository}: " + "; ".join(map(str, problems))
            + ". Use another --name, or --replace to drop the existing NAME_* versions. Nothing was written.")


def _parity_figures(report: dict) -> dict:
    """The summary figures of every tensor (per-batch figures stay in the manifest)."""
    return {tensor: {k: v for k, v in entry.items() if k not in ("dtype", "per_batch")}
            for tensor, entry in report.get("tensors", {}).items()}


def _db(value) -> str:
    return "exact" if value is None else f"{value:.1f} dB"


def _parity_line(report: dict) -> str:
    parts = []
    for tensor, f in _parity_figures(report).items():
        if "psnr_db" in f and "max_levels" in f:
            parts.append(f"{tensor} PSNR {_db(f['psnr_db'])}, {100 * f['within_fraction']:.3f} % within 2 levels, "
                         f"max {f['max_levels']} level(s)")
        elif "max_levels" in f:
            parts.append(f"{tensor} max {f['max_levels']} level(s), {f['values_off']}/{f['values']} off")
        elif "psnr_db" in f:
            parts.append(f"{tensor} PSNR {_db(f['psnr_db'])}")
        elif "snr_db" in f:
            parts.append(f"{tensor} SNR {_db(f['snr_db'])}")
        else:
            parts.append(f"{tensor} max|diff| {f['max_abs']:.2e} (max|ref| {f['max_ref']:.2e})")
    return "; ".join(parts) + f" on batches {report.get('batches')} ({report.get('runtime')})"


def main(argv=None) -> int:
    args = parse_args(argv)
    from export.tensorrt import TensorRTError, TensorRTUnavailable

    try:
        summary = run(args)
    except (FileNotFoundError, ValueError, ExportError, ParityError, RepositoryError,
            TensorRTUnavailable, TensorRTError, OSError) as error:
        print(f"export: error: {error}", file=sys.stderr)
        return 1
    for model, files in summary["models"].items():
        _log(f"export: wrote {model}/{summary['version']}: {', '.join(files) or '(ensemble, no files)'}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
