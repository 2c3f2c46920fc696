"""Measurement loops: one cell = one path at one batch size, timed, with the load it ran under.

Every cell: `warmup` calls first, then up to `repeats` timed calls, stopped early once the cell
has run `budget_s` seconds (never fewer than `min_repeats`); n is recorded. Serial paths
(`measure_serial`): videos/s = batch / median latency. Triton (`measure_concurrent`):
`concurrency` threads, each with its own client, keep that many requests in flight, in the
warm-up rounds too (so the dynamic batcher forms the batch sizes it will form when timed); videos/s =
videos done / wall time. p99 is numpy's linear-interpolated percentile of the n latencies:
with small n it is ~ the maximum. Each cell also records os.getloadavg() before and after and
the CPU cores it kept busy (CPU seconds of the measured processes / wall seconds; for Triton
the server's process tree too, from /proc). A path measured in several passes is merged by
`merge_cells`, keeping the per-pass figures; `ratios` compares paths of one run.
"""
from __future__ import annotations

import math
import threading
import time

from bench.host import loadavg, self_rss_mib, summarize, tree_stats


def measure_serial(fn, *, warmup: int, repeats: int, min_repeats: int, budget_s: float) -> dict:
    """Warm-up calls, then timed calls until `repeats` or the budget; CPU time of this process."""
    t_warm = time.perf_counter()
    out = None
    for _ in range(warmup):
        out = fn()
    warm_s = time.perf_counter() - t_warm
    latencies = []
    load0, cpu0, t0 = loadavg(), time.process_time(), time.perf_counter()
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
            "loadavg_before": load0, "loadavg_after": loadavg(), "output": out}


def measure_concurrent(make_worker, *, concurrency: int, warmup: int, repeats: int, min_repeats: int,
                       budget_s: float, server_pid: int | None) -> dict:
    """`concurrency` threads, each with its own client (make_worker() -> call, closed afterwards
    through call.close where it has one), issue requests back to back; per-request latency and
    videos / wall time of the whole measured phase."""
    workers = [make_worker() for _ in range(concurrency)]
    try:
        return _run_concurrent(workers, warmup=warmup, repeats=repeats, min_repeats=min_repeats, budget_s=budget_s,
                               server_pid=server_pid)
    finally:
        for worker in workers:
            getattr(worker, "close", lambda: None)()


def _in_flight(workers: list, calls: int, min_calls: int, budget_s: float, outputs: list) -> list:
    """Every worker in its own thread, back to back, `calls` each (at least `min_calls`, then until
    `budget_s` from the common start): [(start, end)] of every call; each worker's last output
    lands in `outputs`."""
    records: list[tuple[float, float]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(workers) + 1)
    t0_box = [0.0]

    def run(index: int) -> None:
        call = workers[index]
        barrier.wait()
        done = 0
        try:
            while done < calls:
                t = time.perf_counter()
                outputs[index] = call()
                end = time.perf_counter()
                with lock:
                    records.append((t, end))
                done += 1
                if done >= min_calls and end - t0_box[0] >= budget_s:
                    break
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(workers))]
    for th in threads:
        th.start()
    t0_box[0] = time.perf_counter()
    barrier.wait()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return records


def _run_concurrent(workers: list, *, warmup: int, repeats: int, min_repeats: int, budget_s: float,
                    server_pid: int | None) -> dict:
    """Warm-up rounds keep as many requests in flight as the timed phase: the server's dynamic
    batcher then merges them into the same batch sizes, and a runtime that prepares kernels per
    input shape (OpenVINO with dynamic shapes) meets each of them before timing starts."""
    concurrency = len(workers)
    outputs = [None] * concurrency
    t_warm = time.perf_counter()
    if warmup:
        _in_flight(workers, warmup, warmup, math.inf, outputs)
    warm_s = time.perf_counter() - t_warm
    per_worker = max(1, math.ceil(max(1, repeats) / concurrency))
    min_per_worker = max(1, math.ceil(max(1, min_repeats) / concurrency))
    server0 = tree_stats(server_pid)["cpu_s"] if server_pid else None
    load0, cpu0 = loadavg(), time.process_time()
    records = _in_flight(workers, per_worker, min_per_worker, budget_s, outputs)
    start = min(r[0] for r in records)
    wall = max(r[1] for r in records) - start
    cpu = time.process_time() - cpu0
    server_cpu = tree_stats(server_pid)["cpu_s"] - server0 if server_pid else None
    return {"latencies_s": [round(e - s, 6) for s, e in records], "n": len(records), "warmup": warmup,
            "warmup_s": round(warm_s, 3), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "server_cpu_s": round(server_cpu, 3) if server_cpu is not None else None,
            "cores_busy": round(((server_cpu or 0) + cpu) / wall, 2) if wall > 0 else None,
            "loadavg_before": load0, "loadavg_after": loadavg(), "output": outputs[0]}


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
                peak: float | None, gemm: float | None = None) -> dict:
    """The recorded cell: throughput, latency summary, GFLOP/s and its fractions of the peak
    (`peak`: the peak of the path's precision) and of the measured GEMM rate."""
    lat = summarize(cell["latencies_s"])
    if concurrency > 1:
        videos_per_s = batch * cell["n"] / cell["wall_s"] if cell["wall_s"] > 0 else None
    else:
        videos_per_s = batch / lat["p50"]
    flops = flops_per_video * videos_per_s if flops_per_video and videos_per_s else None
    cpu = (cell.get("server_cpu_s") or 0) + cell["cpu_s"]
    return {"path": path, "kind": kind, "batch": batch, "concurrency": concurrency, "n": cell["n"],
            "warmup": cell["warmup"], "latency_s": {k: round(v, 6) for k, v in lat.items()},
            "videos_per_s": round(videos_per_s, 4) if videos_per_s else None,
            "gflops_per_s": round(flops / 1e9, 2) if flops else None,
            "peak_fraction": round(flops / peak, 4) if flops and peak else None,
            "gemm_fraction": round(flops / gemm, 4) if flops and gemm else None,
            "videos_per_cpu_s": round(batch * cell["n"] / cpu, 4) if cpu > 0 else None,
            **{k: cell[k] for k in ("latencies_s", "wall_s", "warmup_s", "cpu_s", "cores_busy", "loadavg_before",
                                    "loadavg_after", "passes") if k in cell},
            **({"server_cpu_s": cell["server_cpu_s"]} if "server_cpu_s" in cell else {}),
            "rss_mib_after": self_rss_mib()}


def baselines(path: str) -> tuple[str, ...]:
    """What a path's throughput is divided by in `ratios`: eager FP32 always, and for a Triton path
    the same runtime in-process ('triton-ov-bf16' / 'ov-bf16')."""
    return ("eager",) + ((path[len("triton-"):],) if path.startswith("triton-") else ())


def ratios(cells: list[dict]) -> dict:
    """Throughput ratios between paths of the same run, per kind and batch (best concurrency for
    Triton), over all passes and, under "by_pass", within each pass (paths measured back to back)."""
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
        for base in baselines(path):
            ref = best.get((base, kind, batch))
            if not ref:
                continue
            entry[f"{path}/{base}"] = round(value / ref, 3)
            mine, theirs = per_pass.get((path, kind, batch), []), per_pass.get((base, kind, batch), [])
            if len(mine) > 1 and len(mine) == len(theirs):
                entry.setdefault("by_pass", {})[f"{path}/{base}"] = [round(a / b, 3) for a, b in zip(mine, theirs)]
    return out
