"""One benchmark run: every path of one model on this machine, interleaved, into one result dict.

In this order:

1. the machine (bench.machine: CPU, ISA, FP32 and BF16 peaks, torch.mm probes);
2. the model (random weights from --seed, or --checkpoint), saved as a checkpoint; FLOPs per
   video (bench.profiles.count_flops), with and without F-SA;
3. the export of every served variant the paths need (bench.triton.export_variants: the real
   exporter as a library call, parity gate included) into a temporary repository;
4. Triton start-up per variant (ONNX Runtime; OpenVINO with an empty, then a filled compile
   cache), then one server over all variants (`python -m serving up`, its own process);
5. for every batch size, interleaved so that a change in background load hits every path
   alike: each path in --passes alternating passes (A B C, then C B A), the repeats split
   between them. The in-process served sessions are opened anew every pass (one memory arena
   at a time) and always get their warm-up; eager skips its warm-up when one call is predicted
   above --big-batch-warmup-s (PyTorch keeps no per-shape state). Triton cells also record
   Triton's statistics (where a request's time goes). BF16 paths run only where the CPU has
   native bf16 and are recorded as refused, with the reason, elsewhere;
6. TensorRT (a GPU host only), the ONNX Runtime session-option sweep, per-operator profiles of
   ONNX Runtime and of OpenVINO (FP32, and BF16 where native) at --profile-batch;
7. training steps/s per family, preset and precision.

The result is written to `out_path` after every cell ("complete": false until the end).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import itertools
import math
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.host import loadavg, proc_stats, summarize, tree_stats

from .machine import gemm_probe, machine_info
from .measure import finish_cell, measure_concurrent, measure_serial, merge_cells, ratios
from .paths import SERVED, Runners, TensorRTPath, make_inputs, own, precision_of, served_variant, vs_eager
from .profiles import ORT_VARIANTS, count_flops, openvino_profile, ort_session, parse_ort_profile
from .report import write_json
from .training import bench_training
from .triton import ServedTriton, export_variants, model_prefix, sub_repository, where_time_goes, worker_factory

FORMAT = "videogan-bench/2"


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------- steps

def add_gemm_probes(machine: dict, threads: int) -> None:
    """torch.mm rates beside the nominal peaks: FP32, and BF16 where the CPU has a BF16 peak."""
    cores = machine["cpu"]["cores_used_for_peak"]
    machine["gemm_probe"] = gemm_probe(threads, machine["peak_fp32"]["flop_per_cycle_per_core"], cores)
    if machine["peak_bf16"]["flops_per_s"]:
        machine["gemm_probe_bf16"] = gemm_probe(threads, machine["peak_bf16"]["flop_per_cycle_per_core"], cores,
                                                dtype="bf16")


def refused_paths(paths: list[str], machine: dict) -> dict[str, str]:
    """BF16 paths on a CPU without native bf16: {path: why}."""
    why = machine["peak_bf16"]["derivation"]
    if machine["peak_bf16"]["flops_per_s"]:
        return {}
    return {p: f"bf16 is not native here ({why.removeprefix('no BF16 peak: ')})"
            for p in paths if precision_of(p) == "bf16"}


def load_model(args, workdir: Path):
    """(model for inference, checkpoint path, family, preset): --checkpoint, or random weights saved as one."""
    import torch

    from train.checkpoint import load_for_inference, save_checkpoint
    from train.models import build_model

    if args.checkpoint:
        model, meta = load_for_inference(Path(args.checkpoint))
        return model, Path(args.checkpoint), meta["family"], meta["preset"]
    torch.manual_seed(args.seed)
    built = build_model(args.family, args.preset)
    built.eval()                              # spectral-norm vectors stay as initialised
    checkpoint = workdir / f"{args.family}-{args.preset}.pt"
    save_checkpoint(checkpoint, built)
    del built
    model, _ = load_for_inference(checkpoint)   # what the exporter loads, identically
    return model, checkpoint, args.family, args.preset


def count_model_flops(model, specs: dict, family: str, preset: str) -> dict:
    import torch

    from export.onnx_export import graph_specs
    from train.models import build_model, make_config

    flops = {}
    for kind in ("sample", "encode", "decode"):
        if kind in specs:
            spec = specs[kind]
            feeds = make_inputs(spec, 1, model.num_classes)
            total, by_module = count_flops(spec.module, [torch.from_numpy(feeds[t.name]) for t in spec.inputs])
            flops[kind] = {"per_video": total, "gflop_per_video": round(total / 1e9, 3), "by_module": by_module}
    if "encode" in flops:
        total = flops["encode"]["per_video"] + flops["decode"]["per_video"]
        flops["reconstruct"] = {"per_video": total, "gflop_per_video": round(total / 1e9, 3)}
    if getattr(model.config, "fsa_after", None) is not None:
        overrides = {f.name: getattr(model.config, f.name) for f in dataclasses.fields(model.config)
                     if getattr(model.config, f.name) != getattr(make_config(family, preset), f.name)}
        no_fsa = build_model(family, preset, **{**overrides, "fsa_after": None}).for_inference()
        spec = next(s for s in graph_specs(no_fsa) if s.kind == "sample")
        feeds = make_inputs(spec, 1, no_fsa.num_classes)
        total, _ = count_flops(spec.module, [torch.from_numpy(feeds[t.name]) for t in spec.inputs])
        flops["sample"]["without_fsa_per_video"] = total
        flops["sample"]["gflop_per_video_without_fsa"] = round(total / 1e9, 3)
    flops["counting"] = ("torch.utils.flop_counter.FlopCounterMode at batch 1: 2 FLOPs per multiply-add of "
                         "convolutions, transposed convolutions and matrix products; softmax, norms, "
                         "activations and data movement count 0")
    return flops


def measure_startup(repository: Path, workdir: Path, family: str, variants: list[str],
                    server_args: list[str]) -> list[dict]:
    """Seconds from `python -m serving up` to every model ready, one variant's models per start;
    OpenVINO twice: with an empty compile cache, and with the cache the first start filled."""
    out = []
    for variant in variants:
        prefix = model_prefix(family, variant)
        alone = sub_repository(repository, workdir / f"startup-{variant}" / "repository", prefix)
        cache = workdir / f"startup-{variant}" / "ov-cache"
        starts = ("empty", "filled") if SERVED[variant][0] == "openvino" else ("not used",)
        for state in starts:
            server = ServedTriton(alone, workdir / f"startup-{variant}", cache, server_args=server_args)
            seconds = server.start()
            server.stop()
            out.append({"variant": variant, "cache": state, "seconds": round(seconds, 2)})
            _log(f"start-up {variant} (cache {state}): {seconds:.1f} s")
    return out


# --------------------------------------------------------------------------------- the cells of one batch

class Cells:
    """Measures and records the cells of the run; `outputs` keeps each cell's outputs for comparison."""

    def __init__(self, args, runners: Runners, model, flops: dict, machine: dict, server: ServedTriton | None,
                 family: str, save):
        self.args, self.runners, self.model, self.flops, self.server = args, runners, model, flops, server
        self.family, self.save = family, save
        self.peak = machine["peak_fp32"]["flops_per_s"]
        self.peak_bf16 = machine["peak_bf16"]["flops_per_s"]
        self.gemm = machine["gemm_probe"]["flops_per_s"]
        self.cells: list[dict] = []
        self.statistics: list[dict] = []
        self.outputs: dict[tuple, dict] = {}
        self.previous: dict[tuple, tuple] = {}

    def plan(self, paths: list[str]) -> list[tuple[str, int]]:
        """(path, requests in flight) in measuring order."""
        out = []
        for path in paths:
            if path == "tensorrt":
                continue
            if path.startswith("triton-"):
                out += [(path, c) for c in self.args.concurrency] if self.server else []
            elif path in SERVED or path.startswith("eager"):
                out.append((path, 1))
        return out

    def warmup(self, path: str, kind: str, batch: int, first_pass: bool) -> int:
        if path.startswith("eager"):
            prev = self.previous.get((path, kind))
            if not first_pass or (prev and prev[1] / prev[0] * batch > self.args.big_batch_warmup_s):
                return 0
            return self.args.warmup
        # in-process sessions are new every pass; Triton grows its arenas on a new batch size
        return self.args.warmup if first_pass or path in SERVED else 0

    def call(self, path: str, kind: str, feeds: dict):
        if path.startswith("eager"):
            return self.runners.eager(kind, feeds, precision_of(path))
        return self.runners.served(kind, feeds, path)

    def measure(self, path: str, conc: int, kind: str, batch: int, feeds: dict, warm: int, budget: dict) -> dict:
        if not path.startswith("triton-"):
            call = self.call(path, kind, feeds)
            cell = measure_serial(call, warmup=warm, **budget)
            del call
            return cell
        model = f"{model_prefix(self.family, served_variant(path))}_{kind}"
        before = self.server.snapshot()
        cell = measure_concurrent(worker_factory(self.server.grpc_url, model, feeds, _log), concurrency=conc,
                                  warmup=warm, server_pid=self.server.pid, **budget)
        cell["where"] = where_time_goes(before, self.server.snapshot(), self.server.models, model)
        return cell

    def batch(self, kind: str, batch: int, paths: list[str]) -> None:
        args = self.args
        feeds = make_inputs(self.runners.spec_for_inputs(kind), batch, self.model.num_classes)
        passes = max(1, args.passes)
        budget = dict(repeats=math.ceil(args.repeats / passes), min_repeats=math.ceil(args.min_repeats / passes),
                      budget_s=args.cell_budget_s / passes)
        plan = self.plan(paths)
        parts: dict[tuple, list] = {}
        for index in range(passes):
            for path, conc in (plan if index % 2 == 0 else plan[::-1]):      # A B C, then C B A, ...
                cell = self.measure(path, conc, kind, batch, feeds, self.warmup(path, kind, batch, index == 0), budget)
                cell["output"] = own(cell["output"])   # copies: an output array keeps its session's arena alive
                cell["pass"] = index
                if self.server is not None and path.startswith("triton-"):
                    cell["server_rss_mib"] = tree_stats(self.server.pid)["rss_mib"]
                parts.setdefault((path, conc), []).append(cell)
                _log(f"  pass {index}: {path} {kind} b{batch} c{conc} n{cell['n']} p50 "
                     f"{summarize(cell['latencies_s'])['p50']:.3f} s, load {cell['loadavg_before'][0]}")
        for (path, conc), pieces in parts.items():
            self.record(path, kind, batch, conc, pieces)

    def record(self, path: str, kind: str, batch: int, conc: int, pieces: list[dict]) -> None:
        merged = merge_cells(pieces, batch, conc)
        out = merged.pop("output")
        fpv = self.flops.get(kind, {}).get("per_video")
        entry = finish_cell(merged, path=path, kind=kind, batch=batch, concurrency=conc, flops_per_video=fpv,
                            peak=self.peak, gemm=self.gemm)
        if precision_of(path) == "bf16" and entry["gflops_per_s"] and self.peak_bf16:
            entry["bf16_peak_fraction"] = round(entry["gflops_per_s"] * 1e9 / self.peak_bf16, 4)
        if "server_rss_mib" in pieces[-1]:
            entry["server_rss_mib"] = pieces[-1]["server_rss_mib"]
        self.outputs[(path, kind, batch)] = out
        self.previous[(path, kind)] = (batch, entry["latency_s"]["p50"] / max(1, conc))
        if ("eager", kind, batch) in self.outputs and path != "eager":
            entry["vs_eager"], entry["matches_eager"] = vs_eager(path, self.outputs[("eager", kind, batch)], out)
        if path.startswith("triton-"):
            self.statistics.append(self.where_time_goes(path, kind, batch, conc, entry, pieces))
        self.cells.append(entry)
        self.save()
        _log(f"{path:>16s} {kind:<11s} b{batch:<3d} c{conc} n{entry['n']}: {entry['videos_per_s']:.3f} videos/s, "
             f"p50 {entry['latency_s']['p50']:.3f} s"
             + (f", {100 * entry['peak_fraction']:.1f}% FP32 peak" if entry["peak_fraction"] else "")
             + f", {entry['cores_busy']} cores busy, load {entry['loadavg_before'][0]}->{entry['loadavg_after'][0]}")

    def where_time_goes(self, path, kind, batch, conc, entry, pieces) -> dict:
        """Over the cell's passes (warm-ups included): Triton's phases per request of every model,
        the CPU milliseconds per request of each process, beside the client's p50 latency and the
        in-process path's p50 and CPU per call at the same batch."""
        requests = sum(p["where"]["requests"] or 0 for p in pieces)
        models: dict[str, dict] = {}
        for name in {m for p in pieces for m in p["where"]["models"]}:
            parts = [p["where"]["models"][name] for p in pieces if name in p["where"]["models"]]
            n = sum(m["requests"] for m in parts)
            models[name] = {"requests": n, "videos": sum(m["videos"] for m in parts),
                            "executions": sum(m["executions"] for m in parts),
                            **{key: round(sum(m[key] * m["requests"] for m in parts) / n, 3)
                               for key in parts[0] if key.endswith("_ms_per_request")}}
            models[name]["videos_per_execution"] = (round(models[name]["videos"] / models[name]["executions"], 2)
                                                    if models[name]["executions"] else None)
        cpu = {role: round(sum(p["where"]["cpu_ms_per_request"].get(role, 0) * (p["where"]["requests"] or 0)
                               for p in pieces) / requests, 2) for role in pieces[0]["where"]["cpu_ms_per_request"]} \
            if requests else {}
        top = models.get(f"{model_prefix(self.family, served_variant(path))}_{kind}", {})
        triton_ms = sum(top.get(f"{p}_ms_per_request", 0.0) for p in ("queue", "compute_input", "compute_infer",
                                                                        "compute_output"))
        client_ms = entry["latency_s"]["p50"] * 1e3
        same = [c for c in self.cells if c["path"] == served_variant(path) and c["kind"] == kind and c["batch"] == batch]
        return {"path": path, "kind": kind, "batch": batch, "concurrency": conc, "models": models,
                "cpu_ms_per_request": cpu, "client_p50_ms": round(client_ms, 2),
                "outside_ms": round(client_ms - triton_ms, 2) if top else None,
                "in_process_ms": round(same[0]["latency_s"]["p50"] * 1e3, 2) if same else None,
                "in_process_cpu_ms": round(1e3 * same[0]["cpu_s"] / same[0]["n"], 2) if same else None}


# --------------------------------------------------------------------------------- the run

def run(args, out_path: Path | None = None) -> dict:
    """Measure everything; `out_path` gets the results so far ("complete": false) after every cell."""
    import torch

    from export.onnx_export import graph_specs, has_encoder

    started = time.monotonic()
    machine = machine_info()
    cores = machine["cpu"]["cores_used_for_peak"]
    threads = args.threads or cores
    torch.set_num_threads(threads)
    add_gemm_probes(machine, threads)
    result: dict = {"format": FORMAT, "complete": False, "command": "python -m bench " + shlex.join(args.argv),
                    "started_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
                    "machine": machine, "loadavg_start": loadavg()}
    _log(f"machine: {machine['cpu'].get('model')} x {cores} cores, {machine['cpu']['isa']}, FP32 peak "
         f"{machine['peak_fp32']['gflops_per_s']} GFLOP/s, BF16 peak {machine['peak_bf16']['gflops_per_s']}, "
         f"torch.mm {machine['gemm_probe']['gflops_per_s']} GFLOP/s; load {result['loadavg_start']}")
    refused = refused_paths(args.paths, machine)
    paths = [p for p in args.paths if p not in refused]
    result["refused"] = [{"path": p, "refused": why} for p, why in refused.items()]

    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="videogan-bench-")) if own_workdir else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        model, checkpoint, family, preset = load_model(args, workdir)
        specs = {s.kind: s for s in graph_specs(model)}
        kinds = args.kinds or (["sample", "encode", "reconstruct"] if has_encoder(model) else ["sample"])
        kinds = [k for k in kinds if k in specs or (k == "reconstruct" and "encode" in specs)]
        result["model"] = {"family": family, "preset": preset, "params": model.param_counts(),
                           "video_shape": model.video_shape, "z_a_dim": model.z_a_dim, "z_m_dim": model.z_m_dim,
                           "num_classes": model.num_classes,
                           "weights": str(args.checkpoint) if args.checkpoint else f"random init, seed {args.seed}"}
        result["config"] = {**{k: v for k, v in vars(args).items() if k not in ("render", "argv")},
                            "torch_threads": threads, "kinds": kinds}
        flops = result["flops"] = count_model_flops(model, specs, family, preset)
        _log("FLOPs per video: " + ", ".join(f"{k} {v['gflop_per_video']} GFLOP" for k, v in flops.items()
                                             if isinstance(v, dict)))

        # ---------------------------------------------------------------- export, Triton
        max_batch = args.max_batch_size or max(args.batches)
        repository = workdir / "repository"
        onnx_paths, paths = export_for_paths(args, result, checkpoint, repository, family, paths, specs, max_batch,
                                             threads)
        runners = Runners(family, model, specs, onnx_paths)
        server, triton_info = start_triton(args, repository, workdir, family, paths, max_batch)

        # ---------------------------------------------------------------- inference cells
        def save():
            result["inference"] = cells.cells
            write_json(out_path, result)
        cells = Cells(args, runners, model, flops, machine, server, family, save)
        try:
            for batch, kind in itertools.product(args.batches, kinds):
                cells.batch(kind, batch, paths)
            if server is not None:
                triton_info["memory_after_bench"] = tree_stats(server.pid)
        finally:
            if server is not None:
                server.stop()
        result["inference"] = cells.cells
        triton_info["statistics"] = cells.statistics
        result["triton"] = triton_info

        # ---------------------------------------------------------------- TensorRT, sweep, profiles
        if "tensorrt" in paths:
            result["tensorrt"] = bench_tensorrt(args, runners, kinds, model, flops, cells.outputs)
        if "ort" in paths and args.sweep:
            result["ort_sweep"] = [sweep(args, runners, model, flops, machine, b) for b in args.sweep_batches]
        if args.profile_batch and "ort" in paths:
            result["ort_profile"] = ort_profiles(args.profile_batch, runners, model, workdir)
        if args.profile_batch and any(served_variant(p) in ("ov", "ov-bf16") for p in paths):
            result["ov_profile"] = ov_profiles(args.profile_batch, runners, model, threads, paths, flops)

        # ---------------------------------------------------------------- training
        result["training"] = training(args)
        result["ratios"] = ratios(cells.cells)
        result["loadavg_end"] = loadavg()
        result["bench_process_peak_rss_mib"] = (proc_stats(os.getpid()) or {}).get("peak_rss_mib")
        result["complete"] = True
        result["wall_s"] = round(time.monotonic() - started, 1)
        result["finished_at"] = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        return result
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def export_for_paths(args, result: dict, checkpoint, repository: Path, family: str, paths, specs, max_batch: int,
                     threads: int) -> dict:
    """Export the served variants the paths need (result["export"]); → (the ONNX file per graph kind,
    the paths left: those of a variant the parity gate refused join result["refused"], with why)."""
    variants = [v for v in SERVED if any(served_variant(p) == v for p in paths)]
    if "tensorrt" in paths and not variants:
        variants = ["ort"]                        # TensorRT builds from the exported graph
    if not variants:
        return {}, paths
    result["export"] = export_variants(
        checkpoint, repository, family, variants, max_batch_size=max_batch,
        parity_batches=tuple(sorted({1, min(2, max_batch)})), threads=threads,
        queue_delay_us=args.queue_delay_us, instances=args.instances, ort_threads=args.ort_threads,
        preferred_batch_sizes=tuple(int(b) for b in args.preferred_batch_sizes.split(",") if b.strip()))
    _log(f"exported {', '.join(variants)}: " + ", ".join(
        f"{v} {e['seconds']} s" + (" (refused by the parity gate)" if "refused" in e else "")
        for v, e in result["export"].items()))
    gated = {v: e["refused"] for v, e in result["export"].items() if "refused" in e}
    for p in paths:
        if served_variant(p) in gated:
            result["refused"].append({"path": p, "refused": gated[served_variant(p)]})
    paths = [p for p in paths if served_variant(p) not in gated]
    exported = [v for v in variants if v not in gated]
    if not exported:
        return {}, paths
    first = result["export"][exported[0]]         # the graphs of every variant are the same bytes
    return {k: repository / f"{first['name']}_{k}" / str(first["version"]) / "model.onnx" for k in specs}, paths


def start_triton(args, repository: Path, workdir: Path, family: str, paths, max_batch: int):
    """Triton over the exported repository when a triton-* path is asked for (start-up measured);
    → (the server or None, its description)."""
    triton_variants = [served_variant(p) for p in paths if p.startswith("triton-")]
    if not triton_variants:
        return None, {}
    triton_info = {}
    if args.startup:
        triton_info["startup"] = measure_startup(repository, workdir, family, triton_variants, args.server_args)
    server = ServedTriton(repository, workdir / "served", workdir / "served" / "ov-cache", server_args=args.server_args)
    triton_info["startup_all_s"] = round(server.start(), 2)
    config = (repository / f"{model_prefix(family, triton_variants[0])}_sample" / "config.pbtxt").read_text()
    triton_info.update({"memory_after_load": tree_stats(server.pid), "max_batch_size": max_batch,
                        "queue_delay_us": args.queue_delay_us, "instances": args.instances,
                        "server_version": server.server_version(), "config": config,
                        "preferred_batch_sizes": [int(v) for v in re.findall(r"preferred_batch_size: (\d+)", config)]})
    _log(f"Triton up in {triton_info['startup_all_s']} s, RSS {triton_info['memory_after_load']['rss_mib']} MiB")
    return server, triton_info


def bench_tensorrt(args, runners: Runners, kinds, model, flops, outputs) -> dict:
    reason = TensorRTPath.unavailable_reason()
    if reason:
        _log(f"TensorRT skipped: {reason}")
        return {"skipped": reason}
    cells = []
    for precision in args.tensorrt_precisions:
        for kind in [k for k in kinds if k != "reconstruct"]:
            try:
                spec = runners.specs[kind]
                engine = TensorRTPath(runners.onnx_paths[kind].read_bytes(), spec, precision, max(args.batches))
                for batch in args.batches:
                    feeds = make_inputs(spec, batch, model.num_classes)
                    cell = measure_serial(engine.runner(feeds), warmup=args.warmup, repeats=args.repeats,
                                          min_repeats=args.min_repeats, budget_s=args.cell_budget_s)
                    out = own(cell.pop("output"))
                    entry = finish_cell(cell, path=f"tensorrt-{precision.lower()}", kind=kind, batch=batch,
                                        concurrency=1, flops_per_video=flops.get(kind, {}).get("per_video"), peak=None)
                    entry["build_s"] = engine.build_s
                    if ("eager", kind, batch) in outputs:
                        entry["vs_eager"], _ = vs_eager("tensorrt", outputs[("eager", kind, batch)], out)
                    cells.append(entry)
            except Exception as error:
                cells.append({"path": f"tensorrt-{precision.lower()}", "kind": kind,
                              "error": f"{type(error).__name__}: {error}"})
    return {"cells": cells, "note": "GPU FLOP/s are not compared with the CPU peak"}


def sweep(args, runners: Runners, model, flops, machine, batch: int) -> dict:
    """Session-option variants of the sample graph at one batch, in alternating passes like the
    main cells; speed-ups against the first variant, overall and within each pass."""
    feeds = make_inputs(runners.specs["sample"], batch, model.num_classes)
    passes = max(1, args.passes)
    parts: dict[str, list] = {}
    for index in range(passes):
        for variant in (args.sweep if index % 2 == 0 else args.sweep[::-1]):
            call = runners.sessions_call("sample", feeds, lambda k: ort_session(str(runners.onnx_paths[k]), variant))
            cell = measure_serial(call, warmup=max(2, args.warmup), repeats=math.ceil(args.sweep_repeats / passes),
                                  min_repeats=math.ceil(args.min_repeats / passes), budget_s=args.cell_budget_s / passes)
            del call
            cell["output"] = own(cell["output"])
            cell["pass"] = index
            parts.setdefault(variant, []).append(cell)
    rows, reference = [], None
    for variant in args.sweep:
        merged = merge_cells(parts[variant], batch, 1)
        out = merged.pop("output")
        entry = finish_cell(merged, path=f"ort[{variant}]", kind="sample", batch=batch, concurrency=1,
                            flops_per_video=flops["sample"]["per_video"], peak=machine["peak_fp32"]["flops_per_s"],
                            gemm=machine["gemm_probe"]["flops_per_s"])
        entry.update(variant=variant, description="; ".join(ORT_VARIANTS[v] for v in variant.split("+")))
        reference = out if reference is None else reference
        entry["vs_first"], entry["matches_first"] = vs_eager("ort", reference, out)
        rows.append(entry)
        _log(f"sweep {variant:>12s} b{batch}: {entry['videos_per_s']:.3f} videos/s (p50 "
             f"{entry['latency_s']['p50']:.3f} s, {entry['cores_busy']} cores busy)")
    base = rows[0] if rows else None
    for row in rows:
        row["speedup_vs_first"] = round(row["videos_per_s"] / base["videos_per_s"], 3) if base else None
        row["speedup_vs_first_by_pass"] = [round(a["videos_per_s"] / b["videos_per_s"], 3)
                                           for a, b in zip(row["passes"], base["passes"])]
    return {"batch": batch, "rows": rows, "first_is_baseline": args.sweep[0] if args.sweep else None}


def _graph_kinds(runners: Runners) -> list[str]:
    return ["sample", "encode", "decode"] if "encode" in runners.specs else ["sample"]


def ort_profiles(batch: int, runners: Runners, model, workdir: Path) -> dict:
    out = {}
    for kind in _graph_kinds(runners):
        feeds = make_inputs(runners.specs[kind], batch, model.num_classes)
        session = ort_session(str(runners.onnx_paths[kind]), "served", profile_prefix=str(workdir / f"ortprof-{kind}"))
        session.run(session.output_names, feeds)   # warm-up (kept out of the figures: only the last run is read)
        load0 = loadavg()
        session.run(session.output_names, feeds)
        trace = session.end_profiling()
        del session
        out[kind] = {"batch": batch, "loadavg_before": load0, "loadavg_after": loadavg(),
                     **parse_ort_profile(trace, str(runners.onnx_paths[kind]))}
        top = out[kind]["by_op_type"][:4]
        _log(f"ONNX Runtime profile {kind} b{batch}: " + ", ".join(f"{r['name']} {100 * r['share']:.0f}%" for r in top))
    return out


def ov_profiles(batch: int, runners: Runners, model, threads: int, paths: list[str], flops: dict) -> dict:
    """OpenVINO per-operator profiles, one stream on all threads, FP32 (and BF16 where measured)."""
    out = {}
    precisions = [p for p in ("fp32", "bf16") if any(served_variant(x) == ("ov" if p == "fp32" else "ov-bf16")
                                                     for x in paths)]
    for precision, kind in itertools.product(precisions, _graph_kinds(runners)):
        feeds = make_inputs(runners.specs[kind], batch, model.num_classes)
        load0 = loadavg()
        profile = openvino_profile(str(runners.onnx_paths[kind]), feeds, precision=precision, threads=threads,
                                   total_flops=flops[kind]["per_video"] * batch)
        key = kind if precision == "fp32" else f"{kind} bf16"
        out[key] = {"batch": batch, "loadavg_before": load0, "loadavg_after": loadavg(), **profile}
        top = profile["by_op_type"][:4]
        _log(f"OpenVINO {precision} profile {kind} b{batch}: "
             + ", ".join(f"{r['name']} {100 * r['share']:.0f}%" for r in top))
    return out


def training(args) -> list[dict]:
    from train.run import parse_overrides
    overrides = parse_overrides(args.train_set)
    out = []
    for fam, pre, prec in itertools.product(args.train_families, args.train_presets, args.train_precisions):
        _log(f"training throughput {fam}/{pre} batch {args.train_batch_size} {prec} {overrides or ''}")
        try:
            out.append(bench_training(fam, pre, args.train_batch_size, warmup=args.train_warmup,
                                      repeats=args.train_repeats, min_repeats=args.min_repeats,
                                      budget_s=args.cell_budget_s, seed=args.seed, precision=prec,
                                      overrides=overrides))
            t = out[-1]
            _log(f"  {t['refused']}" if "refused" in t else
                 f"  {t['steps_per_s']} steps/s ({t['s_per_step']['p50']} s/step, n {t['n']})")
        except Exception as error:  # report, do not lose the inference results
            out.append({"family": fam, "preset": pre, "precision": prec, "error": f"{type(error).__name__}: {error}"})
    return out

