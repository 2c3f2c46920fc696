"""Inference and training throughput of one model on this machine, every serving path in one run.

    python -m serving.bench --family g3an --preset paper64 [--batches 1,8,32] [--repeats N]
                            [--out bench_results/g3an-paper64.json] [--markdown BENCHMARKS.md]
    python -m serving.bench --family encgan3 --preset tiny --out bench_results/encgan3-tiny.json
    python -m serving.bench --render bench_results/a.json bench_results/b.json --markdown BENCHMARKS.md

What one run does, in this order:

1. Describes the machine: CPU model, MHz and flags from /proc/cpuinfo, physical cores, memory,
   library versions, and the FP32 peak = physical cores x clock x FP32 FLOP/cycle/core, where
   FLOP/cycle/core = SIMD lanes x 2 (FMA) x FMA units: AVX-512 (2 x 512-bit FMA) = 64,
   AVX2 + FMA (2 x 256-bit FMA) = 32, AVX without FMA (one add + one mul port) = 16, SSE = 8;
   plus a measured torch.mm rate (best of 7), a second denominator ("% GEMM").
2. Builds the model (random weights from --seed, or --checkpoint), saves a checkpoint, counts
   FLOPs per video with torch.utils.flop_counter.FlopCounterMode (2 FLOPs per multiply-add;
   only convolutions and matrix products are counted) and exports it with the real exporter
   (`python -m export --target cpu`, parity gate included) into a temporary repository.
3. For every batch size, interleaved so that a change in background load hits every path
   alike: PyTorch eager (the exported wrapper modules: generator in eval mode, spectral norm
   baked in by for_inference(), torch.inference_mode, uint8 quantisation included, i.e. the
   same computation as the graph), ONNX Runtime in this process on the exported model.onnx
   with the session options the served model.py uses ("served") and any --ort-variants, and
   Triton gRPC against the embedded server (serving.server.TritonServer) with --concurrency
   requests in flight (clients.triton.Connection, one per worker thread). Kinds: sample,
   plus encode and reconstruct (encode -> decode; on Triton the NAME_reconstruct ensemble)
   for encgan3 / avlae.
4. An ONNX Runtime session-option sweep (--sweep, at --sweep-batches) and an ONNX Runtime
   profile (per operator type, per module and per node, with FLOPs from the node shapes) at
   --profile-batch.
5. TensorRT FP16/FP32 engines through export.tensorrt when TensorRT and a CUDA GPU are there
   (skipped with the reason otherwise).
6. Training throughput: steps/s of train.recipes.STEPS[family] with make_optimizers, on random
   clips (no data loading), per --train-families x --train-presets.

Every cell: --warmup calls first, then up to --repeats timed calls, stopped early once the
cell has run --cell-budget-s seconds (never fewer than --min-repeats); n is recorded. Each
batch runs its paths in --passes alternating passes (A B C, then C B A: slow changes in the
background load hit every path alike), the repeats split between them; the per-pass figures
and ratios are kept. ONNX Runtime gets a new session per pass (one memory arena at a time) and
its warm-up every pass; eager skips its warm-up when one call is predicted above
--big-batch-warmup-s (PyTorch keeps no per-shape state). Videos/s
= batch / median latency (serial paths) or videos done / wall time (concurrent Triton).
p99 is numpy's linear-interpolated percentile of the n latencies: with small n it is ~ the
maximum. Each cell also records os.getloadavg() before and after and the CPU cores it kept
busy (process CPU time / wall time; for Triton: the server and its python stubs, from /proc).
Outputs of every path are compared with eager on the same inputs (uint8 levels, float max
|diff|): a faster path that changes results is reported, never hidden.

This tool spans every stage (train, export, serving, clients) on purpose: it measures them
against each other. Results: JSON (--out) and a markdown section (--markdown), written
between the markers BEGIN_MARK / END_MARK so hand-written notes around it survive.
"""
from __future__ import annotations

import argparse
import itertools
import contextlib
import datetime as _dt
import functools
import glob
import importlib.metadata
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # pragma: no cover - run as a file
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FORMAT = "videogan-bench/1"
BEGIN_MARK = "<!-- serving.bench: generated section begin (python -m serving.bench --render ...) -->"
END_MARK = "<!-- serving.bench: generated section end -->"
PATHS = ("eager", "ort", "triton", "tensorrt")
LIBRARIES = ("torch", "onnx", "onnxruntime", "numpy", "tritonclient", "nvidia-pytriton", "grpcio", "protobuf",
             "tensorrt")
# ONNX Runtime session-option variants (names joined with '+' combine).
ORT_VARIANTS = {
    "served": "as the served model.py (its ShardedSession): a batch split into one shard per core "
              "(at most 4), shards run side by side on one thread each; ORT_ENABLE_ALL, inter-op 1, "
              "sequential, memory pattern off, spinning on (ORT default)",
    "one_session": "no sharding (ORT_BATCH_SHARDS=1): one session.run over the whole batch with "
                   "intra-op threads = min(4, cores), as model.py did before the sharding; the other "
                   "variants below modify this one",
    "mem_pattern": "enable_mem_pattern=True (ORT default; model.py before it turned it off)",
    "no_spin": "session.intra_op.allow_spinning=0 (worker threads sleep instead of spinning between ops)",
    "extended": "graph optimisation ORT_ENABLE_EXTENDED (no NCHWc layout transformation)",
    "basic": "graph optimisation ORT_ENABLE_BASIC",
    "parallel": "execution mode ORT_PARALLEL, inter-op threads 2",
    "intra1": "intra-op threads 1",
    "daz": "session.set_denormal_as_zero=1 (flush denormals: may change results)",
}


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _str_list(text: str) -> list[str]:
    return [v.strip() for v in str(text).split(",") if v.strip()]


# --------------------------------------------------------------------------------- machine

def simd_flops_per_cycle(flags: set[str]) -> tuple[int, str]:
    """FP32 FLOP per cycle per core from the CPU flags, and how it was derived."""
    if "avx512f" in flags:
        return 64, "AVX-512F: 16 FP32 lanes x 2 (FMA) x 2 FMA units = 64 (1-FMA-unit parts: 32)"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2 + FMA: 8 FP32 lanes x 2 (FMA) x 2 FMA units = 32"
    if "avx" in flags:
        return 16, "AVX, no FMA: 8 FP32 lanes x (1 add + 1 mul port) = 16"
    return 8, "SSE: 4 FP32 lanes x (1 add + 1 mul port) = 8"


def parse_cpuinfo(text: str) -> dict:
    """Model, MHz, flags, logical CPUs and physical cores from /proc/cpuinfo text."""
    blocks = [b for b in text.strip().split("\n\n") if b.strip()]
    procs = []
    for block in blocks:
        entry = {}
        for line in block.splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                entry[key.strip()] = value.strip()
        if "processor" in entry:
            procs.append(entry)
    if not procs:
        return {}
    first = procs[0]
    cores = {(p.get("physical id", "0"), p.get("core id", p["processor"])) for p in procs}
    mhz = [float(p["cpu MHz"]) for p in procs if p.get("cpu MHz")]
    return {
        "model": first.get("model name", "unknown"),
        "vendor": first.get("vendor_id"),
        "family": first.get("cpu family"), "model_number": first.get("model"),
        "mhz": round(sum(mhz) / len(mhz), 3) if mhz else None,
        "flags": set(first.get("flags", "").split()),
        "logical_cpus": len(procs),
        "physical_cores": len(cores),
    }


def machine_info() -> dict:
    try:
        cpu = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu = {}
    flags = cpu.pop("flags", set())
    per_cycle, how = simd_flops_per_cycle(flags)
    cores = cpu.get("physical_cores") or os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count() or 1
    cores = min(cores, usable)
    mhz = cpu.get("mhz")
    max_mhz = None
    with contextlib.suppress(OSError, ValueError):
        max_mhz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000.0
    peak = cores * (mhz or 0) * 1e6 * per_cycle
    mem = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                mem[key] = round(int(rest.split()[0]) / 1024 / 1024, 2)
    versions = {"python": platform.python_version()}
    for lib in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[lib] = importlib.metadata.version(lib)
    return {
        "cpu": {**cpu, "simd_flags": sorted(f for f in flags if f.startswith(("avx", "fma", "sse4", "amx"))),
                "hypervisor": "hypervisor" in flags, "usable_cpus": usable, "cores_used_for_peak": cores,
                "cpufreq_max_mhz": max_mhz},
        "peak_fp32": {"flops_per_s": peak, "gflops_per_s": round(peak / 1e9, 2), "flop_per_cycle_per_core": per_cycle,
                      "derivation": f"{cores} physical cores x {mhz} MHz (/proc/cpuinfo 'cpu MHz') x {per_cycle} "
                                    f"FP32 FLOP/cycle/core ({how}) = {peak / 1e9:.1f} GFLOP/s"},
        "memory_gib": mem,
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
    }


def gemm_probe(threads: int, per_cycle: int, cores: int, n: int = 2048, repeats: int = 7) -> dict:
    """Measured FP32 matrix-multiply rate (torch.mm n x n, best of `repeats`): a second denominator
    next to the nominal peak. It exceeds the nominal peak when the cores run above the /proc/cpuinfo
    clock (turbo); the implied clock is rate / (cores x FLOP/cycle/core)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, load0 = math.inf, _load()
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    rate = 2.0 * n ** 3 / best
    return {"what": f"torch.mm {n}x{n} FP32, {threads} threads, best of {repeats}", "flops_per_s": rate,
            "gflops_per_s": round(rate / 1e9, 1), "implied_clock_mhz": round(rate / (cores * per_cycle) / 1e6),
            "loadavg_before": load0, "loadavg_after": _load()}


# --------------------------------------------------------------------------------- /proc helpers

_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children_map() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(stat.split("/")[2]))
    return out


def process_tree(pid: int) -> list[int]:
    children, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def proc_stats(pid: int) -> dict | None:
    """name, RSS and peak RSS (MiB), CPU seconds (user + system) of one process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    after = stat.rsplit(")", 1)[1].split()
    cpu = (int(after[11]) + int(after[12])) / _CLK   # utime, stime (fields 14, 15)
    kib = lambda key: int(fields.get(key, "0 kB").split()[0])  # noqa: E731
    return {"pid": pid, "name": fields.get("Name", "?"), "rss_mib": round(kib("VmRSS") / 1024, 1),
            "peak_rss_mib": round(kib("VmHWM") / 1024, 1), "cpu_s": cpu}


def tree_stats(pid: int) -> dict:
    procs = [s for s in (proc_stats(p) for p in process_tree(pid)) if s]
    return {"processes": [{k: v for k, v in s.items() if k != "cpu_s"} for s in procs],
            "rss_mib": round(sum(s["rss_mib"] for s in procs), 1),
            "peak_rss_mib_sum": round(sum(s["peak_rss_mib"] for s in procs), 1),
            "cpu_s": sum(s["cpu_s"] for s in procs)}


def self_rss_mib() -> float | None:
    stats = proc_stats(os.getpid())
    return stats["rss_mib"] if stats else None


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# --------------------------------------------------------------------------------- statistics

def summarize(latencies: list[float]) -> dict:
    a = np.asarray(latencies, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max())}


def measure_serial(fn, *, warmup: int, repeats: int, min_repeats: int, budget_s: float) -> dict:
    """Warm-up calls, then timed calls until `repeats` or the budget; CPU time of this process."""
    t_warm = time.perf_counter()
    out = None
    for _ in range(warmup):
        out = fn()
    warm_s = time.perf_counter() - t_warm
    latencies = []
    load0, cpu0, t0 = _load(), time.process_time(), time.perf_counter()
    while len(latencies) < max(1, repeats):
        t = time.perf_counter()
        out = fn()
        latencies.append(time.perf_counter() - t)
        if len(latencies) >= max(1, min_repeats) and time.perf_counter() - t0 >= budget_s:
            break
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {"latencies_s": [round(v, 6) for v in latencies], "n": len(latencies), "warmup": warmup,
            "warmup_s": round(warm_s, 3), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "cores_busy": round(cpu / wall, 2) if wall > 0 else None,
            "loadavg_before": load0, "loadavg_after": _load(), "output": out}


def measure_concurrent(make_worker, *, concurrency: int, warmup: int, repeats: int, min_repeats: int,
                       budget_s: float, server_pid: int | None) -> dict:
    """`concurrency` threads, each with its own client (make_worker() -> call), issue requests
    back to back; per-request latency and videos / wall time of the whole measured phase."""
    workers = [make_worker() for _ in range(concurrency)]
    t_warm = time.perf_counter()
    out = None
    for _ in range(warmup):
        out = workers[0]()
    warm_s = time.perf_counter() - t_warm
    per_worker = max(1, math.ceil(max(1, repeats) / concurrency))
    min_per_worker = max(1, math.ceil(max(1, min_repeats) / concurrency))
    records: list[tuple[float, float]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)
    outputs = [None] * concurrency

    def run(index: int) -> None:
        call = workers[index]
        barrier.wait()
        done = 0
        try:
            while done < per_worker:
                t = time.perf_counter()
                outputs[index] = call()
                end = time.perf_counter()
                with lock:
                    records.append((t, end))
                done += 1
                if done >= min_per_worker and end - t0_box[0] >= budget_s:
                    break
        except BaseException as error:  # reported below
            errors.append(error)

    t0_box = [0.0]
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(concurrency)]
    for th in threads:
        th.start()
    server0 = tree_stats(server_pid)["cpu_s"] if server_pid else None
    load0, cpu0 = _load(), time.process_time()
    t0_box[0] = time.perf_counter()
    barrier.wait()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    start = min(r[0] for r in records)
    wall = max(r[1] for r in records) - start
    cpu = time.process_time() - cpu0
    server_cpu = tree_stats(server_pid)["cpu_s"] - server0 if server_pid else None
    return {"latencies_s": [round(e - s, 6) for s, e in records], "n": len(records), "warmup": warmup,
            "warmup_s": round(warm_s, 3), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "server_cpu_s": round(server_cpu, 3) if server_cpu is not None else None,
            "cores_busy": round(((server_cpu or 0) + cpu) / wall, 2) if wall > 0 else None,
            "loadavg_before": load0, "loadavg_after": _load(), "output": outputs[0] if outputs[0] is not None else out}


def merge_cells(pieces: list[dict], batch: int, concurrency: int) -> dict:
    """One cell from the passes of one path: latencies pooled, times summed, per-pass figures kept."""
    merged = dict(pieces[0])
    merged["latencies_s"] = [v for c in pieces for v in c["latencies_s"]]
    for key in ("n", "warmup"):
        merged[key] = sum(c[key] for c in pieces)
    for key in ("warmup_s", "wall_s", "cpu_s", "server_cpu_s"):
        if pieces[0].get(key) is not None:
            merged[key] = round(sum(c.get(key) or 0 for c in pieces), 3)
    busy = (merged.get("server_cpu_s") or 0) + merged["cpu_s"]
    merged["cores_busy"] = round(busy / merged["wall_s"], 2) if merged["wall_s"] > 0 else None
    merged["loadavg_before"], merged["loadavg_after"] = pieces[0]["loadavg_before"], pieces[-1]["loadavg_after"]
    merged["output"] = pieces[-1]["output"]
    merged["passes"] = []
    for c in pieces:
        p50 = summarize(c["latencies_s"])["p50"]
        vps = batch * c["n"] / c["wall_s"] if concurrency > 1 else batch / p50
        merged["passes"].append({"pass": c["pass"], "n": c["n"], "warmup": c["warmup"], "p50_s": round(p50, 4),
                                 "videos_per_s": round(vps, 4), "cores_busy": c["cores_busy"],
                                 "loadavg_before": c["loadavg_before"], "loadavg_after": c["loadavg_after"]})
    return merged


def finish_cell(cell: dict, *, path: str, kind: str, batch: int, concurrency: int, flops_per_video: float | None,
                peak: float, gemm: float | None = None) -> dict:
    lat = summarize(cell["latencies_s"])
    if concurrency > 1:
        videos_per_s = batch * cell["n"] / cell["wall_s"] if cell["wall_s"] > 0 else None
    else:
        videos_per_s = batch / lat["p50"]
    flops = flops_per_video * videos_per_s if flops_per_video and videos_per_s else None
    return {"path": path, "kind": kind, "batch": batch, "concurrency": concurrency, "n": cell["n"],
            "warmup": cell["warmup"], "latency_s": {k: round(v, 6) for k, v in lat.items()},
            "videos_per_s": round(videos_per_s, 4) if videos_per_s else None,
            "gflops_per_s": round(flops / 1e9, 2) if flops else None,
            "peak_fraction": round(flops / peak, 4) if flops and peak else None,
            "gemm_fraction": round(flops / gemm, 4) if flops and gemm else None,
            "videos_per_cpu_s": round(batch * cell["n"] / ((cell.get("server_cpu_s") or 0) + cell["cpu_s"]), 4)
            if ((cell.get("server_cpu_s") or 0) + cell["cpu_s"]) > 0 else None,
            **{k: cell[k] for k in ("latencies_s", "wall_s", "warmup_s", "cpu_s", "cores_busy", "loadavg_before",
                                    "loadavg_after") if k in cell},
            **({"server_cpu_s": cell["server_cpu_s"]} if "server_cpu_s" in cell else {}),
            "rss_mib_after": self_rss_mib()}


# --------------------------------------------------------------------------------- inputs and comparison

def make_inputs(kind: str, spec, batch: int, num_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic feeds: latents from clients.latents (seeds 0..batch-1), one-hot label 0,
    uniform uint8 noise clips (seeded) for encode / reconstruct."""
    from clients.latents import latents_for_seeds, one_hot

    names = [t.name for t in spec.inputs]
    if "video" in names:
        t = next(t for t in spec.inputs if t.name == "video")
        rng = np.random.default_rng([seed, batch])
        return {"video": rng.integers(0, 256, size=(batch, *t.dims), dtype=np.uint8)}
    dims = {t.name: t.dims[0] for t in spec.inputs}
    first, second = names[0], names[1]          # z_a, z_m (sample / encgan3 decode) or w_a, w_m
    a, m = latents_for_seeds(range(seed, seed + batch), dims[first], dims[second])
    feeds = {first: a, second: m}
    if "label" in names:
        feeds["label"] = one_hot(0, num_classes, batch)
    return feeds


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict:
    """{tensor: max uint8 levels or max |float diff|} between two output dicts."""
    out = {}
    for name in sorted(set(a) & set(b)):
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.shape != y.shape:
            out[name] = {"shape_mismatch": [list(x.shape), list(y.shape)]}
        elif x.dtype == np.uint8:
            diff = np.abs(x.astype(np.int16) - y.astype(np.int16))
            out[name] = {"max_levels": int(diff.max()) if diff.size else 0, "values_off": int((diff > 0).sum())}
        else:
            out[name] = {"max_abs": float(np.max(np.abs(x.astype(np.float64) - y))) if x.size else 0.0}
    return out


def within_tolerance(result: dict, levels: int = 1, atol: float = 1e-3) -> bool:
    for entry in result.values():
        if "shape_mismatch" in entry:
            return False
        if entry.get("max_levels", 0) > levels or entry.get("max_abs", 0.0) > atol:
            return False
    return True


# --------------------------------------------------------------------------------- FLOPs

def count_flops(module, args) -> tuple[int, dict]:
    """FLOPs of module(*args) (FlopCounterMode: 2 per multiply-add) and a per-submodule breakdown."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, depth=None)
    with torch.inference_mode(), counter:
        module(*args)
    total = int(counter.get_total_flops())
    rel = {}
    for name, ops in counter.get_flop_counts().items():
        parts = name.split(".")
        if len(parts) >= 4 and parts[1] == "model":   # <wrapper>.model.<network>.<child>...
            rel[".".join(parts[2:])] = int(sum(ops.values()))
    # never-called containers (nn.ModuleList) have no entry of their own: their children stand in
    tops = {k for k in rel if k.count(".") == 1}
    tops |= {k for k in rel if k.count(".") == 2 and k.rsplit(".", 1)[0] not in rel}
    by_module = {}
    for key in sorted(tops):
        value = rel[key]
        depth = key.count(".") + 1
        children = {k: v for k, v in rel.items() if k.startswith(key + ".") and k.count(".") == depth}
        digits = all(k.rsplit(".", 1)[1].isdigit() for k in children)
        if children and (digits or value > 0.25 * total):
            by_module.update(children)           # ModuleList levels, or a big module split once more
        else:
            by_module[key] = value
    return total, dict(sorted(by_module.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------------------- ONNX Runtime

@functools.lru_cache(maxsize=1)
def served_session_class():
    """ShardedSession from export/templates/model.py: the in-process path runs the served code."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "export" / "templates" / "model.py"
    spec = importlib.util.spec_from_file_location("videogan_served_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ShardedSession


def ort_session(path: str, variant: str = "served", profile_prefix: str | None = None):
    """An ONNX Runtime session for `variant`: "served" is model.py's ShardedSession (the default
    config: one shard per core, at most 4); every other variant is one plain session
    ("one_session") with the named options changed. Profiling uses a plain session."""
    import onnxruntime as ort

    names = [v for v in variant.split("+") if v]
    unknown = [v for v in names if v not in ORT_VARIANTS]
    if unknown:
        raise ValueError(f"unknown ONNX Runtime variant(s) {unknown}; known: {sorted(ORT_VARIANTS)}")
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count() or 1
    if names == ["served"] and not profile_prefix:
        auto = max(1, min(4, cores))                          # model.py's "auto"
        return served_session_class()(path, shards=auto, intra=auto, inter=1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, min(4, cores))     # export/templates/model.py "auto"
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.enable_mem_pattern = False                        # export/templates/model.py
    for name in names:
        if name == "mem_pattern":
            options.enable_mem_pattern = True
        elif name == "no_spin":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        elif name == "extended":
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        elif name == "basic":
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        elif name == "parallel":
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            options.inter_op_num_threads = 2
        elif name == "intra1":
            options.intra_op_num_threads = 1
        elif name == "daz":
            options.add_session_config_entry("session.set_denormal_as_zero", "1")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def _node_flops(op: str, inputs: list, outputs: list, kernels: dict, name: str) -> float | None:
    def dims(entry):
        return list(entry.values())[0] if entry else None
    try:
        if op in ("MatMul", "FusedMatMul", "Gemm"):
            a, out = dims(inputs[0]), dims(outputs[0])
            return 2.0 * float(np.prod(out)) * a[-1]
        if op in ("Conv", "FusedConv"):
            w, out = dims(inputs[1]), dims(outputs[0])
            return 2.0 * float(np.prod(out)) * float(np.prod(w[1:]))
        if op == "ConvTranspose":
            x, out = dims(inputs[0]), dims(outputs[0])
            kernel = kernels.get(name)
            if kernel is None:
                return None
            # weight [Cin, Cout/group, k...]: every input element meets Cout/group x prod(k) weights
            return 2.0 * float(np.prod(x)) * float(np.prod(kernel[1:]))
    except (TypeError, IndexError, ValueError):
        return None
    return None


def parse_ort_profile(trace_path: str, onnx_path: str, top: int = 15) -> dict:
    """Per operator type and per node: seconds of the LAST model_run in the trace, share, FLOPs
    (from the node shapes: MatMul/Conv/ConvTranspose) and achieved GFLOP/s."""
    import onnx

    events = json.loads(Path(trace_path).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    if not runs:
        return {"error": "no model_run event in the profile"}
    last = runs[-1]
    t0, t1 = last["ts"], last["ts"] + last["dur"]
    model = onnx.load(onnx_path, load_external_data=False)
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    kernels = {n.name: inits.get(n.input[1]) for n in model.graph.node if n.op_type == "ConvTranspose"}
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
             and t0 <= e["ts"] <= t1]
    total = sum(e["dur"] for e in nodes) or 1
    by_op: dict[str, dict] = {}
    by_node: dict[str, dict] = {}
    by_module: dict[str, dict] = {}
    for e in nodes:
        name = e["name"][: -len("_kernel_time")]
        op = e["args"].get("op_name", "?")
        flops = _node_flops(op, e["args"].get("input_type_shape", []), e["args"].get("output_type_shape", []),
                            kernels, name)
        for table, key in ((by_op, op), (by_node, name), (by_module, _module_of(name))):
            entry = table.setdefault(key, {"us": 0, "flops": 0.0, "calls": 0, "op": op})
            entry["us"] += e["dur"]
            entry["calls"] += 1
            entry["flops"] += flops or 0.0
            if key == name:
                entry["shapes"] = [list(x.values())[0] for x in e["args"].get("input_type_shape", [])][:2]

    def rows(table, n=None):
        out = []
        for key, v in sorted(table.items(), key=lambda kv: -kv[1]["us"])[:n]:
            s = v["us"] / 1e6
            row = {"name": key, "op": v["op"], "s": round(s, 4), "share": round(v["us"] / total, 4),
                   "gflop": round(v["flops"] / 1e9, 3) if v["flops"] else None,
                   "gflops_per_s": round(v["flops"] / 1e9 / s, 2) if v["flops"] and s > 0 else None}
            if "shapes" in v:
                row["input_shapes"] = v["shapes"]
            out.append(row)
        return out

    return {"run_s": round(last["dur"] / 1e6, 4), "node_s": round(total / 1e6, 4), "runs_in_trace": len(runs),
            "by_op_type": rows(by_op), "by_module": rows(by_module, top), "top_nodes": rows(by_node, top)}


def _module_of(node_name: str) -> str:
    """'/generator/fsa/spatial/MatMul_1' -> '/generator/fsa/spatial' (node's module path)."""
    parts = node_name.strip("/").split("/")
    parts = [p for p in parts if not re.fullmatch(r"[A-Z][A-Za-z]*(_\d+)?|MatmulTransposeFusion|", p)]
    return "/" + "/".join(parts[:4]) if parts else node_name


# --------------------------------------------------------------------------------- runners

class Runners:
    """Callables per (path, kind): eager modules, ONNX Runtime sessions, Triton clients."""

    def __init__(self, family: str, model, specs: dict, repository: Path, name: str):
        from export.onnx_export import RECONSTRUCT_MAP, RECONSTRUCT_OUTPUT

        self.family, self.model, self.specs, self.repository, self.name = family, model, specs, repository, name
        self.map = RECONSTRUCT_MAP.get(family, {})
        self.reconstruct_output = RECONSTRUCT_OUTPUT

    def spec_for_inputs(self, kind: str):
        return self.specs["encode" if kind == "reconstruct" else kind]

    def onnx_path(self, kind: str) -> Path:
        return self.repository / f"{self.name}_{kind}" / "1" / "model.onnx"

    # eager ------------------------------------------------------------------
    def eager(self, kind: str, feeds: dict):
        import torch

        def run_spec(spec, arrays):
            args = [torch.from_numpy(np.ascontiguousarray(arrays[t.name])) for t in spec.inputs]
            results = spec.module(*args)
            return {t.name: r.numpy() for t, r in zip(spec.outputs, results)}

        def call():
            with torch.inference_mode():
                if kind != "reconstruct":
                    return run_spec(self.specs[kind], feeds)
                latents = run_spec(self.specs["encode"], feeds)
                dec = {dst: latents[src] for src, dst in self.map.items()}
                dec.update({k: v for k, v in feeds.items() if k == "label"})
                out = run_spec(self.specs["decode"], dec)
                return {self.reconstruct_output: out["video"]}
        return call

    # ONNX Runtime -----------------------------------------------------------
    def ort(self, kind: str, feeds: dict, variant: str):
        if kind != "reconstruct":
            session = ort_session(str(self.onnx_path(kind)), variant)
            names = [o.name for o in session.get_outputs()]

            def call():
                return dict(zip(names, session.run(names, feeds)))
            return call
        enc = ort_session(str(self.onnx_path("encode")), variant)
        dec = ort_session(str(self.onnx_path("decode")), variant)
        enc_names = [o.name for o in enc.get_outputs()]

        def call_reconstruct():
            latents = dict(zip(enc_names, enc.run(enc_names, feeds)))
            feed = {dst: latents[src] for src, dst in self.map.items()}
            feed.update({k: v for k, v in feeds.items() if k == "label"})
            return {self.reconstruct_output: dec.run(["video"], feed)[0]}
        return call_reconstruct

    # Triton -----------------------------------------------------------------
    def triton_worker_factory(self, url: str, kind: str, feeds: dict):
        from clients.triton import Connection

        model = f"{self.name}_{kind}"

        def make():
            connection = Connection(url, retries=2, log=lambda msg: _log(msg))
            connection.model_info(model)

            def call():
                return connection.infer(model, feeds)
            return call
        return make


class TensorRTPath:
    """TensorRT engines (FP16 / FP32) of the exported graphs; only on a GPU host with TensorRT."""

    @staticmethod
    def unavailable_reason() -> str | None:
        try:
            import torch
            if not torch.cuda.is_available():
                return "no CUDA GPU visible (torch.cuda.is_available() is False)"
        except Exception as error:  # pragma: no cover
            return f"torch CUDA check failed: {error}"
        try:
            import tensorrt  # noqa: F401
        except ImportError as error:
            return f"TensorRT is not installed (import tensorrt: {error})"
        return None

    def __init__(self, onnx_bytes: bytes, spec, precision: str, max_batch: int):
        from export import tensorrt as trt_support

        t0 = time.monotonic()
        self.trt = trt_support
        self.engine_bytes = trt_support.build_engine(onnx_bytes, spec.inputs, precision=precision,
                                                     max_batch=max_batch)
        self.engine = trt_support._deserialize(trt_support.require_tensorrt(), self.engine_bytes)
        self.output_names = spec.output_names
        self.build_s = round(time.monotonic() - t0, 1)

    def runner(self, feeds: dict):
        def call():  # host -> device, execute, device -> host (what a server pays per request)
            return self.trt.run_engine(self.engine_bytes, feeds, self.output_names, engine=self.engine)
        return call


# --------------------------------------------------------------------------------- training

def bench_training(family: str, preset: str, batch: int, *, warmup: int, repeats: int, min_repeats: int,
                   budget_s: float, seed: int, precision: str = "fp32") -> dict:
    import torch

    from train.models import build_model
    from train.recipes import STEPS, RecipeOptions, make_optimizers
    from train.runtime import check_precision, keep_freed_memory, wrap_networks

    try:
        check_precision(precision, torch.device("cpu"))
    except ValueError as error:
        return {"family": family, "preset": preset, "batch": batch, "precision": precision, "refused": str(error)}
    keep_freed_memory()  # as train/run.py does

    torch.manual_seed(seed)
    model = build_model(family, preset).train()
    cfg = model.config
    nets = dict(model.named_children())
    options = RecipeOptions()
    optimizers = make_optimizers(family, nets, options)
    nets = wrap_networks(nets, precision, torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    real = torch.rand((batch, *model.video_shape), generator=gen) * 2 - 1
    onehot = None
    if model.num_classes:
        onehot = torch.nn.functional.one_hot(torch.arange(batch) % model.num_classes, model.num_classes).float()
    step = STEPS[family]
    counter = [0]

    def one():
        losses = step(nets, optimizers, real, onehot, torch.Generator().manual_seed(seed + counter[0]), cfg, options)
        counter[0] += 1
        if not all(math.isfinite(v) for v in losses.values()):
            raise FloatingPointError(f"{family}/{preset}: non-finite training loss {losses}")
        return losses

    cell = measure_serial(one, warmup=warmup, repeats=repeats, min_repeats=min_repeats, budget_s=budget_s)
    lat = summarize(cell["latencies_s"])
    return {"family": family, "preset": preset, "batch": batch, "precision": precision, "n": cell["n"], "warmup": warmup,
            "s_per_step": {k: round(v, 4) for k, v in lat.items()},
            "steps_per_s": round(1.0 / lat["p50"], 4), "clips_per_s": round(batch / lat["p50"], 3),
            "params": model.param_counts(), "cores_busy": cell["cores_busy"],
            "loadavg_before": cell["loadavg_before"], "loadavg_after": cell["loadavg_after"],
            "data": "random clips in [-1, 1] held in memory (no data loading), unconditional"}


# --------------------------------------------------------------------------------- the run

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m serving.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=("g3an", "encgan3", "avlae"), default="g3an")
    p.add_argument("--preset", choices=("paper64", "paper128", "tiny"), default="paper64")
    p.add_argument("--checkpoint", help="benchmark this checkpoint (default: random weights from --seed; speed "
                                        "does not depend on the weights)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batches", type=_int_list, default=[1, 8, 32], help="batch sizes (default 1,8,32)")
    p.add_argument("--kinds", type=_str_list, default=None,
                   help="sample,encode,reconstruct (default: every kind the family has)")
    p.add_argument("--paths", type=_str_list, default=list(PATHS), help=f"subset of {','.join(PATHS)}")
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
    p.add_argument("--ort-variants", type=_str_list, default=["served"],
                   help="ONNX Runtime session options timed at every batch (default served); known: "
                        + ", ".join(ORT_VARIANTS))
    p.add_argument("--sweep", type=_str_list,
                   default=["served", "one_session", "mem_pattern", "no_spin", "extended", "parallel"],
                   help="session-option variants compared at --sweep-batches, the first is the baseline "
                        "(default served,mem_pattern,no_spin,extended,parallel; '' to skip). Each gets two "
                        "warm-up calls: with a memory pattern ONNX Runtime needs two calls per new shape")
    p.add_argument("--sweep-batches", type=_int_list, default=[8], help="batches of the sweep (default 8)")
    p.add_argument("--sweep-repeats", type=int, default=3, help="timed calls per sweep variant (default 3)")
    p.add_argument("--profile-batch", type=int, default=8, help="batch of the ONNX Runtime profile (0 = none)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: physical cores)")
    p.add_argument("--max-batch-size", type=int, default=0, help="Triton max_batch_size (default: largest batch)")
    p.add_argument("--queue-delay-us", type=int, default=2000, help="Triton dynamic batching delay (default 2000)")
    p.add_argument("--preferred-batch-sizes", default="",
                   help="Triton dynamic batching preferred sizes, e.g. 8 (default: the exporter's, max/2 and max)")
    p.add_argument("--instances", type=int, default=1, help="Triton instances per model (default 1)")
    p.add_argument("--ort-threads", type=int, default=0, help="served ORT intra-op threads (default 0 = auto)")
    p.add_argument("--tensorrt-precisions", type=_str_list, default=["FP16", "FP32"])
    p.add_argument("--train-families", type=_str_list, default=["g3an", "encgan3", "avlae"],
                   help="training throughput for these families (default all three; empty to skip)")
    p.add_argument("--train-presets", type=_str_list, default=["tiny"], help="presets for training (default tiny)")
    p.add_argument("--train-batch-size", type=int, default=4, help="clips per training step (default 4)")
    p.add_argument("--train-repeats", type=int, default=5, help="timed training steps at most (default 5)")
    p.add_argument("--train-warmup", type=int, default=1, help="untimed training steps first (default 1)")
    p.add_argument("--train-precisions", type=_str_list, default=["fp32", "bf16"],
                   help="training precisions (default fp32,bf16; bf16 is recorded as refused where not native)")
    p.add_argument("--out", help="JSON results (default bench_results/<family>-<preset>-<UTC time>.json)")
    p.add_argument("--markdown", help="also write the markdown section of this run into this file")
    p.add_argument("--render", nargs="+", metavar="JSON",
                   help="do not measure: render these result files into --markdown (or stdout)")
    p.add_argument("--workdir", help="keep the checkpoint, repository and server log here (default: a temp folder, "
                                     "removed afterwards)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.render:
        return args
    bad = [x for x in args.paths if x not in PATHS]
    if bad:
        p.error(f"unknown --paths {bad}; known {PATHS}")
    for variant in args.ort_variants + args.sweep:
        bad = [v for v in variant.split("+") if v not in ORT_VARIANTS]
        if bad:
            p.error(f"unknown ONNX Runtime variant(s) {bad}; known {sorted(ORT_VARIANTS)}")
    return args


def _write_json(path: Path | None, result: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
    os.replace(tmp, path)


def run(args: argparse.Namespace, out_path: Path | None = None) -> dict:
    """Measure everything; `out_path` gets the results so far ("complete": false) after every cell."""
    import torch

    from export.onnx_export import graph_specs, has_encoder
    from train.checkpoint import load_for_inference, save_checkpoint
    from train.models import build_model, make_config

    started = time.monotonic()
    started_at = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    machine = machine_info()
    peak = machine["peak_fp32"]["flops_per_s"]
    cores = machine["cpu"]["cores_used_for_peak"]
    threads = args.threads or cores
    torch.set_num_threads(threads)
    result: dict = {"format": FORMAT, "complete": False,
                    "command": "python -m serving.bench " + shlex.join(getattr(args, "argv", [])),
                    "started_at": started_at, "machine": machine, "loadavg_start": _load()}

    cells: list[dict] = []

    def save_partial():
        result["inference"] = cells
        _write_json(out_path, result)
    machine["gemm_probe"] = gemm_probe(threads, machine["peak_fp32"]["flop_per_cycle_per_core"], cores)
    gemm = machine["gemm_probe"]["flops_per_s"]
    _log(f"machine: {machine['cpu'].get('model')} x {cores} cores, peak {machine['peak_fp32']['gflops_per_s']} "
         f"GFLOP/s (nominal), torch.mm {machine['gemm_probe']['gflops_per_s']} GFLOP/s; load {result['loadavg_start']}")

    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="videogan-bench-")) if own_workdir else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        # ---------------------------------------------------------------- model + checkpoint
        if args.checkpoint:
            checkpoint = Path(args.checkpoint)
            model, meta = load_for_inference(checkpoint)
            family, preset = meta["family"], meta["preset"]
        else:
            family, preset = args.family, args.preset
            torch.manual_seed(args.seed)
            built = build_model(family, preset)
            built.eval()                              # spectral-norm vectors stay as initialised
            checkpoint = workdir / f"{family}-{preset}.pt"
            save_checkpoint(checkpoint, built)
            del built
            model, meta = load_for_inference(checkpoint)   # what the exporter loads, identically
        specs = {s.kind: s for s in graph_specs(model)}
        kinds = args.kinds or (["sample", "encode", "reconstruct"] if has_encoder(model) else ["sample"])
        kinds = [k for k in kinds if k in specs or (k == "reconstruct" and "encode" in specs)]
        result["model"] = {"family": family, "preset": preset, "params": model.param_counts(),
                           "video_shape": model.video_shape, "z_a_dim": model.z_a_dim, "z_m_dim": model.z_m_dim,
                           "num_classes": model.num_classes,
                           "weights": str(args.checkpoint) if args.checkpoint else f"random init, seed {args.seed}"}
        result["config"] = {k: v for k, v in vars(args).items() if k not in ("render", "argv")}
        result["config"]["torch_threads"] = threads
        result["config"]["kinds"] = kinds

        # ---------------------------------------------------------------- FLOPs
        flops = {}
        for kind in ("sample", "encode", "decode"):
            if kind not in specs:
                continue
            spec = specs[kind]
            feeds = make_inputs(kind, spec, 1, model.num_classes)
            total, by_module = count_flops(spec.module, [torch.from_numpy(feeds[t.name]) for t in spec.inputs])
            flops[kind] = {"per_video": total, "gflop_per_video": round(total / 1e9, 3), "by_module": by_module}
        if "encode" in flops:
            flops["reconstruct"] = {"per_video": flops["encode"]["per_video"] + flops["decode"]["per_video"]}
            flops["reconstruct"]["gflop_per_video"] = round(flops["reconstruct"]["per_video"] / 1e9, 3)
        if getattr(model.config, "fsa_after", None) is not None:
            from export.onnx_export import graph_specs as _gs
            no_fsa = build_model(family, preset, **{**_config_overrides(model.config, make_config(family, preset)),
                                                    "fsa_after": None}).for_inference()
            spec = next(s for s in _gs(no_fsa) if s.kind == "sample")
            feeds = make_inputs("sample", spec, 1, no_fsa.num_classes)
            total, _ = count_flops(spec.module, [torch.from_numpy(feeds[t.name]) for t in spec.inputs])
            flops["sample"]["without_fsa_per_video"] = total
            flops["sample"]["gflop_per_video_without_fsa"] = round(total / 1e9, 3)
            del no_fsa
        flops["counting"] = ("torch.utils.flop_counter.FlopCounterMode at batch 1: 2 FLOPs per multiply-add of "
                             "convolutions, transposed convolutions and matrix products; softmax, norms, "
                             "activations and data movement count 0")
        result["flops"] = flops
        _log("FLOPs per video: " + ", ".join(f"{k} {v['gflop_per_video']} GFLOP" for k, v in flops.items()
                                             if isinstance(v, dict)))

        # ---------------------------------------------------------------- export
        name = f"bench_{family}"
        repository = workdir / "repository"
        max_batch = args.max_batch_size or max(args.batches)
        export_cmd = [sys.executable, "-m", "export", "--checkpoint", str(checkpoint), "--repository",
                      str(repository), "--name", name, "--target", "cpu", "--max-batch-size", str(max_batch),
                      "--parity-batches", ",".join(str(b) for b in sorted({1, min(2, max_batch)})),
                      "--threads", str(threads), "--queue-delay-us", str(args.queue_delay_us),
                      "--instances", str(args.instances), "--ort-threads", str(args.ort_threads), "--replace"]
        if args.preferred_batch_sizes:
            export_cmd += ["--preferred-batch-sizes", args.preferred_batch_sizes]
        if any(path in args.paths for path in ("ort", "triton", "tensorrt")):
            t0 = time.monotonic()
            done = subprocess.run(export_cmd, capture_output=True, text=True,
                                  cwd=str(Path(__file__).resolve().parents[1]))
            if done.returncode != 0:
                raise RuntimeError(f"export failed ({' '.join(export_cmd)}):\n{done.stderr[-3000:]}")
            summary = json.loads(done.stdout.strip().splitlines()[-1])
            result["export"] = {"command": " ".join(export_cmd[1:]), "seconds": round(time.monotonic() - t0, 1),
                                "parity": summary.get("parity"), "max_batch_size": max_batch,
                                "onnx_bytes": {k: (repository / f"{name}_{k}" / "1" / "model.onnx").stat().st_size
                                               for k in specs}}
            _log(f"exported {', '.join(summary['models'])} in {result['export']['seconds']} s")
        runners = Runners(family, model, specs, repository, name)
        runners.gemm = gemm

        # ---------------------------------------------------------------- Triton server
        server = None
        triton_info: dict = {}
        if "triton" in args.paths:
            from serving.server import TritonServer
            server = TritonServer(repository, log_file=workdir / "tritonserver.log", startup_timeout=600)
            server.start()
            triton_info = {"startup_s": round(server.startup_seconds, 1), "memory_after_load": tree_stats(server.pid),
                           "max_batch_size": max_batch, "queue_delay_us": args.queue_delay_us,
                           "instances": args.instances,
                           "config": (repository / f"{name}_sample" / "config.pbtxt").read_text()}
            triton_info["preferred_batch_sizes"] = [int(v) for v in re.findall(
                r"preferred_batch_size: (\d+)", triton_info["config"])]
            with contextlib.suppress(Exception):
                import tritonclient.grpc as grpcclient
                client = grpcclient.InferenceServerClient(server.grpc_url)
                triton_info["server_version"] = client.get_server_metadata(as_json=True).get("version")
                client.close()
            _log(f"Triton up in {triton_info['startup_s']} s, RSS {triton_info['memory_after_load']['rss_mib']} MiB")

        # ---------------------------------------------------------------- inference cells
        outputs, previous = {}, {}
        try:
            for batch in args.batches:
                for kind in kinds:
                    spec = runners.spec_for_inputs(kind)
                    feeds = make_inputs(kind, spec, batch, model.num_classes)
                    fpv = flops.get(kind, {}).get("per_video")

                    def warm_for(path_key):
                        prev = previous.get((path_key, kind))
                        if prev and prev[1] / prev[0] * batch > args.big_batch_warmup_s:
                            return 0
                        return args.warmup

                    def record(path_key, label, cell, concurrency=1):
                        out = cell.pop("output")
                        entry = finish_cell(cell, path=label, kind=kind, batch=batch, concurrency=concurrency,
                                            flops_per_video=fpv, peak=peak, gemm=gemm)
                        if "passes" in cell:
                            entry["passes"] = cell["passes"]
                        outputs[(label, kind, batch)] = out
                        previous[(path_key, kind)] = (batch, entry["latency_s"]["p50"] / max(1, concurrency))
                        if ("eager", kind, batch) in outputs and label != "eager":
                            entry["vs_eager"] = compare(outputs[("eager", kind, batch)], out)
                            entry["matches_eager"] = within_tolerance(entry["vs_eager"])
                        cells.append(entry)
                        save_partial()
                        _log(f"{label:>16s} {kind:<11s} b{batch:<3d} c{concurrency} n{entry['n']}: "
                             f"{entry['videos_per_s']:.3f} videos/s, p50 {entry['latency_s']['p50']:.3f} s"
                             + (f", {100 * entry['peak_fraction']:.1f}% peak" if entry["peak_fraction"] else "")
                             + f", {entry['cores_busy']} cores busy, load {entry['loadavg_before'][0]}->"
                               f"{entry['loadavg_after'][0]}")

                    plan = []                  # (path key for the warm-up rule, label, requests in flight)
                    if "eager" in args.paths:
                        plan.append(("eager", "eager", 1))
                    if "ort" in args.paths:
                        plan += [(lbl, lbl, 1) for lbl in
                                 ("ort" if v == "served" else f"ort[{v}]" for v in args.ort_variants)]
                    if server is not None:
                        plan += [("triton", "triton", c) for c in args.concurrency]
                    passes = max(1, args.passes)
                    per_pass = dict(repeats=math.ceil(args.repeats / passes),
                                    min_repeats=math.ceil(args.min_repeats / passes),
                                    budget_s=args.cell_budget_s / passes)
                    parts: dict[tuple, list] = {}
                    for index in range(passes):
                        order = plan if index % 2 == 0 else plan[::-1]      # A B C, then C B A, ...
                        for path_key, label, conc in order:
                            # ONNX Runtime (a new session every pass: one arena at a time) and Triton (its
                            # session grows its arena on the first call of a new size) always get their
                            # warm-up: a cold first call at batch 32 took 2.4x the median. Eager has no cache.
                            if label == "eager":
                                warm = warm_for(path_key) if index == 0 else 0
                            else:
                                warm = args.warmup if index == 0 or label.startswith("ort") else 0
                            if label == "eager":
                                cell = measure_serial(runners.eager(kind, feeds), warmup=warm, **per_pass)
                            elif label.startswith("ort"):
                                call = runners.ort(kind, feeds, "served" if label == "ort" else label[4:-1])
                                cell = measure_serial(call, warmup=warm, **per_pass)
                                del call
                            else:
                                factory = runners.triton_worker_factory(server.grpc_url, kind, feeds)
                                cell = measure_concurrent(factory, concurrency=conc, warmup=warm,
                                                          server_pid=server.pid, **per_pass)
                            # copies: an ONNX Runtime output array keeps its session's arena alive
                            cell["output"] = _own(cell["output"])
                            cell["pass"] = index
                            parts.setdefault((path_key, label, conc), []).append(cell)
                            if server is not None:
                                cell["server_rss_mib"] = tree_stats(server.pid)["rss_mib"]
                            _log(f"  pass {index}: {label} {kind} b{batch} c{conc} n{cell['n']} p50 "
                                 f"{summarize(cell['latencies_s'])['p50']:.3f} s, load {cell['loadavg_before'][0]}")
                    for (path_key, label, conc), pieces in parts.items():
                        merged = merge_cells(pieces, batch, conc)
                        record(path_key, label, merged, concurrency=conc)
                        cells[-1]["server_rss_mib"] = pieces[-1].get("server_rss_mib")
            if server is not None:
                triton_info["memory_after_bench"] = tree_stats(server.pid)
        finally:
            if server is not None:
                server.stop()
        result["inference"] = cells

        # ---------------------------------------------------------------- TensorRT
        if "tensorrt" in args.paths:
            result["tensorrt"] = _bench_tensorrt(args, runners, kinds, model, flops, peak, outputs)
        result["triton"] = triton_info

        # ---------------------------------------------------------------- session-option sweep + profile
        if "ort" in args.paths and args.sweep:
            result["ort_sweep"] = [_sweep(args, runners, model, flops, peak, b) for b in args.sweep_batches]
        if "ort" in args.paths and args.profile_batch:
            result["ort_profile"] = _profile(args, runners, model, workdir)

        # ---------------------------------------------------------------- training
        training = []
        for fam, pre, prec in itertools.product(args.train_families, args.train_presets, args.train_precisions):
            _log(f"training throughput {fam}/{pre} batch {args.train_batch_size} {prec}")
            try:
                training.append(bench_training(fam, pre, args.train_batch_size, warmup=args.train_warmup,
                                               repeats=args.train_repeats, min_repeats=args.min_repeats,
                                               budget_s=args.cell_budget_s, seed=args.seed, precision=prec))
                t = training[-1]
                _log(f"  {t['refused']}" if "refused" in t else
                     f"  {t['steps_per_s']} steps/s ({t['s_per_step']['p50']} s/step, n {t['n']})")
            except Exception as error:  # report, do not lose the inference results
                training.append({"family": fam, "preset": pre, "precision": prec,
                                 "error": f"{type(error).__name__}: {error}"})
        result["training"] = training

        result["ratios"] = ratios(cells)
        result["loadavg_end"] = _load()
        result["bench_process_peak_rss_mib"] = (proc_stats(os.getpid()) or {}).get("peak_rss_mib")
        result["complete"] = True
        result["wall_s"] = round(time.monotonic() - started, 1)
        result["finished_at"] = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        return result
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _own(outputs: dict | None) -> dict:
    """Copies of a call's outputs. An ONNX Runtime output array keeps its session's whole memory
    arena alive after the session is deleted (2 GB per session at paper64 batch 8, ~8 GB at 32):
    keeping the arrays themselves ran the machine out of memory."""
    return {k: np.array(v, copy=True) for k, v in (outputs or {}).items()}


def _config_overrides(config, default) -> dict:
    import dataclasses
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(default, f.name)}


def _bench_tensorrt(args, runners: Runners, kinds, model, flops, peak, outputs) -> dict:
    reason = TensorRTPath.unavailable_reason()
    if reason:
        _log(f"TensorRT skipped: {reason}")
        return {"skipped": reason}
    cells = []
    for precision in args.tensorrt_precisions:
        for kind in [k for k in kinds if k != "reconstruct"]:
            try:
                spec = runners.specs[kind]
                engine = TensorRTPath(runners.onnx_path(kind).read_bytes(), spec, precision, max(args.batches))
                for batch in args.batches:
                    feeds = make_inputs(kind, spec, batch, model.num_classes)
                    cell = measure_serial(engine.runner(feeds), warmup=args.warmup, repeats=args.repeats,
                                          min_repeats=args.min_repeats, budget_s=args.cell_budget_s)
                    out = _own(cell.pop("output"))
                    entry = finish_cell(cell, path=f"tensorrt-{precision.lower()}", kind=kind, batch=batch,
                                        concurrency=1, flops_per_video=flops.get(kind, {}).get("per_video"),
                                        peak=0.0)
                    entry["build_s"] = engine.build_s
                    if ("eager", kind, batch) in outputs:
                        entry["vs_eager"] = compare(outputs[("eager", kind, batch)], out)
                    cells.append(entry)
            except Exception as error:
                cells.append({"path": f"tensorrt-{precision.lower()}", "kind": kind,
                              "error": f"{type(error).__name__}: {error}"})
    return {"cells": cells, "note": "GPU FLOP/s are not compared with the CPU peak"}


def _sweep(args, runners: Runners, model, flops, peak, batch: int) -> dict:
    """Session-option variants of the sample graph at one batch, in alternating passes like the
    main cells; speed-ups against the first variant, overall and within each pass."""
    spec = runners.specs["sample"]
    feeds = make_inputs("sample", spec, batch, model.num_classes)
    passes = max(1, args.passes)
    parts: dict[str, list] = {}
    for index in range(passes):
        for variant in (args.sweep if index % 2 == 0 else args.sweep[::-1]):
            call = runners.ort("sample", feeds, variant)
            cell = measure_serial(call, warmup=max(2, args.warmup), repeats=math.ceil(args.sweep_repeats / passes),
                                  min_repeats=math.ceil(args.min_repeats / passes), budget_s=args.cell_budget_s / passes)
            del call
            cell["output"] = _own(cell["output"])
            cell["pass"] = index
            parts.setdefault(variant, []).append(cell)
    rows, reference = [], None
    for variant in args.sweep:
        merged = merge_cells(parts[variant], batch, 1)
        out = merged.pop("output")
        entry = finish_cell(merged, path=f"ort[{variant}]", kind="sample", batch=batch, concurrency=1,
                            flops_per_video=flops["sample"]["per_video"], peak=peak,
                            gemm=runners.gemm)
        entry["passes"] = merged["passes"]
        entry["variant"] = variant
        entry["description"] = "; ".join(ORT_VARIANTS[v] for v in variant.split("+"))
        if reference is None:
            reference = out
        entry["vs_first"] = compare(reference, out)
        entry["matches_first"] = within_tolerance(entry["vs_first"])
        rows.append(entry)
        _log(f"sweep {variant:>12s} b{batch}: {entry['videos_per_s']:.3f} videos/s (p50 "
             f"{entry['latency_s']['p50']:.3f} s, {entry['cores_busy']} cores busy)")
    base = rows[0] if rows else None
    for row in rows:
        row["speedup_vs_first"] = round(row["videos_per_s"] / base["videos_per_s"], 3) if base else None
        row["speedup_vs_first_by_pass"] = [round(a["videos_per_s"] / b["videos_per_s"], 3)
                                           for a, b in zip(row["passes"], base["passes"])]
    return {"batch": batch, "rows": rows, "first_is_baseline": args.sweep[0] if args.sweep else None}


def _profile(args, runners: Runners, model, workdir: Path) -> dict:
    batch = args.profile_batch
    out = {}
    for kind in (["sample", "encode", "decode"] if "encode" in runners.specs else ["sample"]):
        spec = runners.specs[kind]
        feeds = make_inputs(kind, spec, batch, model.num_classes)
        session = ort_session(str(runners.onnx_path(kind)), "served", profile_prefix=str(workdir / f"ortprof-{kind}"))
        names = [o.name for o in session.get_outputs()]
        session.run(names, feeds)            # warm-up (kept out of the figures: only the last run is read)
        load0 = _load()
        session.run(names, feeds)
        trace = session.end_profiling()
        del session
        out[kind] = {"batch": batch, "loadavg_before": load0, "loadavg_after": _load(),
                     **parse_ort_profile(trace, str(runners.onnx_path(kind)))}
        top = out[kind]["by_op_type"][:4]
        _log(f"profile {kind} b{batch}: " + ", ".join(f"{r['name']} {100 * r['share']:.0f}%" for r in top))
    return out


def ratios(cells: list[dict]) -> dict:
    """Throughput ratios between paths of the same run, per kind and batch (best concurrency for
    Triton), over all passes and, under "by_pass", within each pass (paths measured minutes apart)."""
    best: dict[tuple, float] = {}
    per_pass: dict[tuple, list] = {}
    for c in cells:
        key = (c["path"], c["kind"], c["batch"])
        if c.get("videos_per_s") and c["videos_per_s"] > best.get(key, 0.0):
            best[key] = c["videos_per_s"]
            per_pass[key] = [p["videos_per_s"] for p in c.get("passes", [])]
    out = {}
    for (path, kind, batch), value in sorted(best.items()):
        if path == "eager":
            continue
        entry = out.setdefault(f"{kind}/b{batch}", {})
        for base in ("eager", "ort"):
            ref = best.get((base, kind, batch))
            if not ref or path == base:
                continue
            entry[f"{path}/{base}"] = round(value / ref, 3)
            mine, theirs = per_pass.get((path, kind, batch), []), per_pass.get((base, kind, batch), [])
            if len(mine) > 1 and len(mine) == len(theirs):
                entry.setdefault("by_pass", {})[f"{path}/{base}"] = [round(a / b, 3) for a, b in zip(mine, theirs)]
    return out


# --------------------------------------------------------------------------------- markdown

def _fmt(value, digits=3):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(results: list[dict]) -> str:
    lines = [BEGIN_MARK, ""]
    machine = results[0]["machine"]
    cpu, peak = machine["cpu"], machine["peak_fp32"]
    lines += ["### Machine", "",
              f"- CPU: {cpu.get('model')} ({cpu.get('vendor')}, family {cpu.get('family')} model "
              f"{cpu.get('model_number')}), {cpu.get('physical_cores')} physical cores / {cpu.get('logical_cpus')} "
              f"logical CPUs{' under a hypervisor' if cpu.get('hypervisor') else ''}, {cpu.get('mhz')} MHz; "
              f"SIMD flags {', '.join(cpu.get('simd_flags', []))}",
              f"- FP32 peak: {peak['derivation']}",
              *([f"- measured: {g['what']} = {g['gflops_per_s']} GFLOP/s "
                 f"({100 * g['flops_per_s'] / peak['flops_per_s']:.0f}% of the nominal peak; implied clock "
                 f"{g['implied_clock_mhz']} MHz: above 100% means the cores run faster than /proc/cpuinfo says, "
                 f"so the '% FP32 peak' column overstates the true fraction; '% GEMM' uses this rate instead)"]
                if (g := machine.get("gemm_probe")) else []),
              f"- memory: {machine['memory_gib'].get('MemTotal')} GiB; {machine['os']}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()), ""]
    for r in results:
        m, fl = r["model"], r["flops"]
        lines += [f"### {m['family']} / {m['preset']}", "",
                  f"`{r['command']}` — {r['started_at']}, {r['wall_s']} s wall; weights: {m['weights']}; "
                  f"1-min load average {r['loadavg_start'][0]} at the start, {r['loadavg_end'][0]} at the end, on "
                  f"{cpu.get('physical_cores')} cores (every cell's load and the cores it kept busy are in the "
                  f"table).", ""]
        fl_parts = [f"{k} {v['gflop_per_video']} GFLOP/video" for k, v in fl.items() if isinstance(v, dict)]
        if "gflop_per_video_without_fsa" in fl.get("sample", {}):
            fl_parts.append(f"sample without F-SA {fl['sample']['gflop_per_video_without_fsa']} GFLOP/video")
        lines += ["FLOPs: " + "; ".join(fl_parts) + f". {fl['counting']}."]
        for kind in ("sample", "encode"):
            by = (fl.get(kind) or {}).get("by_module") or {}
            if by:
                lines.append(f"{kind} GFLOP/video by module: " + ", ".join(
                    f"{k} {v / 1e9:.2f}" for k, v in list(by.items())[:10]) + ".")
        lines.append("")
        lines += ["| kind | path | batch | in flight | n | videos/s | p50 s | p99 s | GFLOP/s | % FP32 peak | % GEMM "
                  "| cores busy | videos/CPU-s | load before→after | = eager |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for c in r["inference"]:
            match = "" if "matches_eager" not in c else ("yes" if c["matches_eager"] else "**NO** " + json.dumps(c["vs_eager"]))
            lines.append(f"| {c['kind']} | {c['path']} | {c['batch']} | {c['concurrency']} | {c['n']}"
                         f"{'' if c['warmup'] else ' (no warm-up)'} | {_fmt(c['videos_per_s'])} "
                         f"| {_fmt(c['latency_s']['p50'])} | {_fmt(c['latency_s']['p99'])} | {_fmt(c['gflops_per_s'], 1)} "
                         f"| {_fmt(100 * c['peak_fraction'] if c['peak_fraction'] else None, 1)} "
                         f"| {_fmt(100 * c['gemm_fraction'] if c.get('gemm_fraction') else None, 1)} | {_fmt(c['cores_busy'], 2)} "
                         f"| {_fmt(c.get('videos_per_cpu_s'))} | {c['loadavg_before'][0]}→{c['loadavg_after'][0]} | {match} |")
        lines.append("")
        if r.get("ratios"):
            keys = sorted({k for v in r["ratios"].values() for k in v if k != "by_pass"})
            lines += ["Ratios of videos/s between paths of this run (Triton at its best concurrency); in brackets "
                      "the same ratio within each pass (paths measured back to back):", "",
                      "| kind/batch | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
            for kb, v in r["ratios"].items():
                cells_ = []
                for k in keys:
                    by = v.get("by_pass", {}).get(k)
                    cells_.append(_fmt(v.get(k)) + (f" ({', '.join(_fmt(x, 2) for x in by)})" if by else ""))
                lines.append(f"| {kb} | " + " | ".join(cells_) + " |")
            lines.append("")
        t = r.get("triton") or {}
        if t:
            mem0, mem1 = t.get("memory_after_load", {}), t.get("memory_after_bench", {})
            procs = ", ".join(f"{p['name']} {p['rss_mib']} MiB (peak {p['peak_rss_mib']})" for p in mem1.get("processes", []))
            lines += [f"Triton {t.get('server_version', '?')} (embedded, CPU, python backend + ONNX Runtime): "
                      f"startup {t.get('startup_s')} s; max_batch_size {t.get('max_batch_size')}, dynamic batching "
                      f"preferred sizes {t.get('preferred_batch_sizes', '?')}, delay {t.get('queue_delay_us')} µs, {t.get('instances')} instance(s). Server RSS (tritonserver + "
                      f"python stubs, /proc VmRSS): {mem0.get('rss_mib')} MiB after load, {mem1.get('rss_mib')} MiB after "
                      f"the benchmark ({procs}).", ""]
        trt = r.get("tensorrt")
        if trt:
            if "skipped" in trt:
                lines += [f"TensorRT: skipped ({trt['skipped']}).", ""]
            else:
                lines += ["TensorRT (host↔device copies included):", "", "| kind | path | batch | n | videos/s | p50 s | build s |",
                          "|---|---|---:|---:|---:|---:|---:|"]
                for c in trt["cells"]:
                    if "error" in c:
                        lines.append(f"| {c['kind']} | {c['path']} | – | – | error: {c['error']} | | |")
                    else:
                        lines.append(f"| {c['kind']} | {c['path']} | {c['batch']} | {c['n']} | {_fmt(c['videos_per_s'])} "
                                     f"| {_fmt(c['latency_s']['p50'])} | {c.get('build_s')} |")
                lines.append("")
        for sweep in r.get("ort_sweep") or []:
            lines += [f"ONNX Runtime session options, sample, batch {sweep['batch']} (in-process):", "",
                      "| variant | n | videos/s | p50 s | × first (per pass) | cores busy | load before→after | same output | what |",
                      "|---|---:|---:|---:|---:|---:|---|---|---|"]
            for row in sweep["rows"]:
                lines.append(f"| {row['variant']} | {row['n']} | {_fmt(row['videos_per_s'])} | {_fmt(row['latency_s']['p50'])} "
                             f"| {_fmt(row['speedup_vs_first'])}"
                             + (f" ({', '.join(_fmt(x, 2) for x in row.get('speedup_vs_first_by_pass', []))})"
                                if len(row.get("speedup_vs_first_by_pass", [])) > 1 else "")
                             + f" | {_fmt(row['cores_busy'], 2)} | "
                             f"{row['loadavg_before'][0]}→{row['loadavg_after'][0]} | "
                             f"{'yes' if row['matches_first'] else '**NO** ' + json.dumps(row['vs_first'])} | {row['description']} |")
            lines.append("")
        prof = r.get("ort_profile")
        if prof:
            for kind, p in prof.items():
                if "error" in p:
                    continue
                lines += [f"ONNX Runtime profile, {kind}, batch {p['batch']} (one run after a warm-up, {p['run_s']} s; "
                          f"load {p['loadavg_before'][0]}→{p['loadavg_after'][0]}):", "",
                          "| operator | s | share | GFLOP | GFLOP/s |", "|---|---:|---:|---:|---:|"]
                for row in p["by_op_type"][:10]:
                    lines.append(f"| {row['name']} | {row['s']:.3f} | {100 * row['share']:.1f}% | {_fmt(row['gflop'], 1)} "
                                 f"| {_fmt(row['gflops_per_s'], 1)} |")
                lines += ["", "| node | op | input shapes | s | share | GFLOP/s |", "|---|---|---|---:|---:|---:|"]
                for row in p["top_nodes"][:12]:
                    shapes = " ".join("×".join(str(d) for d in s) for s in row.get("input_shapes", []))
                    lines.append(f"| `{row['name']}` | {row['op']} | {shapes} | {row['s']:.3f} | {100 * row['share']:.1f}% "
                                 f"| {_fmt(row['gflops_per_s'], 1)} |")
                lines.append("")
        if r.get("training"):
            lines += ["Training throughput (train.recipes, random in-memory clips, unconditional):", "",
                      "| family | preset | precision | batch | n | steps/s | s/step p50 | clips/s | cores busy | load before→after |",
                      "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
            for t in r["training"]:
                prec = t.get("precision", "fp32")
                if "error" in t or "refused" in t:
                    why = f"error: {t['error']}" if "error" in t else t["refused"]
                    lines.append(f"| {t['family']} | {t['preset']} | {prec} | | | {why} | | | | |")
                    continue
                lines.append(f"| {t['family']} | {t['preset']} | {prec} | {t['batch']} | {t['n']} | {_fmt(t['steps_per_s'])} "
                             f"| {_fmt(t['s_per_step']['p50'])} | {_fmt(t['clips_per_s'])} | {_fmt(t['cores_busy'], 2)} "
                             f"| {t['loadavg_before'][0]}→{t['loadavg_after'][0]} |")
            lines.append("")
    lines += ["How to read: videos/s = batch / median latency (serial) or videos / wall time (Triton, requests in "
              "flight); p99 is interpolated from n latencies (≈ max for small n); cores busy = CPU seconds of the "
              "measured process(es) / wall seconds (for Triton: server + python stubs + client); videos/CPU-s = videos "
              "per CPU-second those processes used (less sensitive to other work on the machine, but spinning "
              "threads count as used); load = 1-minute "
              "load average before → after the cell; '= eager' compares the outputs with eager on the same inputs "
              "(uint8 ≤ 1 level, floats ≤ 1e-3).", "", END_MARK]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, section: str, title: str = "# Benchmarks\n\n") -> None:
    """Replace the generated section of `path` (between the markers), keeping everything else."""
    text = path.read_text() if path.exists() else title
    if BEGIN_MARK in text and END_MARK in text:
        head, rest = text.split(BEGIN_MARK, 1)
        _, tail = rest.split(END_MARK, 1)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def console_table(result: dict) -> str:
    rows = [f"{'kind':<11} {'path':<16} {'batch':>5} {'inflt':>5} {'n':>3} {'videos/s':>9} {'p50 s':>8} {'p99 s':>8} "
            f"{'GFLOP/s':>8} {'%peak':>6} {'busy':>5}"]
    for c in result["inference"]:
        rows.append(f"{c['kind']:<11} {c['path']:<16} {c['batch']:>5} {c['concurrency']:>5} {c['n']:>3} "
                    f"{_fmt(c['videos_per_s']):>9} {_fmt(c['latency_s']['p50']):>8} {_fmt(c['latency_s']['p99']):>8} "
                    f"{_fmt(c['gflops_per_s'], 1):>8} {_fmt(100 * c['peak_fraction'] if c['peak_fraction'] else None, 1):>6} "
                    f"{_fmt(c['cores_busy'], 2):>5}")
    rows.append("ratios: " + json.dumps(result.get("ratios", {})))
    return "\n".join(rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        results = [json.loads(Path(p).read_text()) for p in args.render]
        section = render_markdown(results)
        if args.markdown:
            write_markdown(Path(args.markdown), section)
            _log(f"wrote {args.markdown}")
        else:
            print(section)
        return 0
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else Path("bench_results") / f"{args.family}-{args.preset}-{stamp}.json"
    result = run(args, out)
    _write_json(out, result)
    if args.markdown:
        write_markdown(Path(args.markdown), render_markdown([result]))
    print(console_table(result))
    _log(f"wrote {out} ({result['wall_s']} s)")
    return 0


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
