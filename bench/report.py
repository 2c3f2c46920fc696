"""The report of benchmark runs: JSON files, and the markdown section of BENCHMARKS.md rendered from them.

`render_markdown(results)` turns result dicts (the JSON `python -m bench --out` writes) into one
section between BEGIN_MARK and END_MARK; `write_markdown` replaces that section of a file and
keeps everything around it (hand-written notes); `console_table` is the short summary printed
at the end of a run.
"""
from __future__ import annotations

import json
from pathlib import Path

from common.atomic import atomic_path
from train.jsonio import json_default

BEGIN_MARK = "<!-- bench: generated section begin (python -m bench --render ...) -->"
END_MARK = "<!-- bench: generated section end -->"
OLD_MARKS = ("<!-- serving.bench: generated section begin (python -m serving.bench --render ...) -->",
             "<!-- serving.bench: generated section end -->")
HOW_TO_READ = (
    "How to read: videos/s = batch / median latency (serial) or videos / wall time (Triton, requests in "
    "flight); p99 is interpolated from n latencies (≈ max for small n); % FP32 peak divides the achieved "
    "GFLOP/s (FLOPs per video x videos/s) by the FP32 peak of the machine, % BF16 peak by its BF16 peak (AMX "
    "or AVX512-BF16 only); cores busy = CPU seconds of the measured process(es) / wall seconds (for Triton: "
    "server + python stubs + front + client); videos/CPU-s = videos per CPU-second those processes used (less "
    "sensitive to other work on the machine, but spinning threads count as used); load = 1-minute load "
    "average before → after the cell; '= eager' compares the outputs with eager FP32 on the same inputs "
    "(FP32 paths: uint8 ≤ 1 level, floats ≤ 1e-3 + 1e-5·max; BF16 paths: the export's BF16 gate).")


def _fmt(value, digits=3):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value):
    return _fmt(100 * value if value else None, 1)


def write_json(path: Path | None, result: dict) -> None:
    if path is None:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=json_default) + "\n")


# --------------------------------------------------------------------------------- sections

def machine_lines(machine: dict) -> list[str]:
    cpu, peak = machine["cpu"], machine["peak_fp32"]
    bf16 = machine.get("peak_bf16") or {}
    lines = ["### Machine", "",
             f"- CPU: {cpu.get('model')} ({cpu.get('vendor')}, family {cpu.get('family')} model "
             f"{cpu.get('model_number')}), {cpu.get('physical_cores')} physical cores / {cpu.get('logical_cpus')} "
             f"logical CPUs{' under a hypervisor' if cpu.get('hypervisor') else ''}, {cpu.get('mhz')} MHz; "
             f"widest ISA **{cpu.get('isa', '?')}**; SIMD/AMX flags {', '.join(cpu.get('simd_flags', []))}",
             f"- FP32 peak: {peak['derivation']}",
             f"- BF16 peak: {bf16.get('derivation', 'not recorded (older result file)')}"]
    for key in ("gemm_probe", "gemm_probe_bf16"):
        g = machine.get(key)
        ref = peak if key == "gemm_probe" else bf16
        if g and ref.get("flops_per_s"):
            lines.append(f"- measured: {g['what']} = {g['gflops_per_s']} GFLOP/s "
                         f"({100 * g['flops_per_s'] / ref['flops_per_s']:.0f}% of the nominal peak; implied clock "
                         f"{g['implied_clock_mhz']} MHz: above 100% means the cores run faster than /proc/cpuinfo "
                         "says, so '% peak' overstates the true fraction; '% GEMM' uses the FP32 rate instead)")
    lines += [f"- memory: {machine['memory_gib'].get('MemTotal')} GiB; {machine['os']}",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()), ""]
    return lines


def flops_lines(fl: dict) -> list[str]:
    parts = [f"{k} {v['gflop_per_video']} GFLOP/video" for k, v in fl.items() if isinstance(v, dict)]
    if "gflop_per_video_without_fsa" in fl.get("sample", {}):
        parts.append(f"sample without F-SA {fl['sample']['gflop_per_video_without_fsa']} GFLOP/video")
    lines = ["FLOPs: " + "; ".join(parts) + f". {fl['counting']}."]
    for kind in ("sample", "encode"):
        by = (fl.get(kind) or {}).get("by_module") or {}
        if by:
            lines.append(f"{kind} GFLOP/video by module: " + ", ".join(
                f"{k} {v / 1e9:.2f}" for k, v in list(by.items())[:10]) + ".")
    return lines + [""]


def _match(c: dict) -> str:
    if "matches_eager" not in c:
        return ""
    return "yes" if c["matches_eager"] else "**NO** " + json.dumps(c["vs_eager"], default=json_default)


def inference_lines(cells: list[dict], refused: list[dict]) -> list[str]:
    lines = ["| kind | path | batch | in flight | n | videos/s | p50 s | p99 s | GFLOP/s | % FP32 peak | % BF16 peak "
             "| % GEMM | cores busy | videos/CPU-s | load before→after | = eager |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for c in cells:
        lines.append(f"| {c['kind']} | {c['path']} | {c['batch']} | {c['concurrency']} | {c['n']}"
                     f"{'' if c['warmup'] else ' (no warm-up)'} | {_fmt(c['videos_per_s'])} "
                     f"| {_fmt(c['latency_s']['p50'])} | {_fmt(c['latency_s']['p99'])} | {_fmt(c['gflops_per_s'], 1)} "
                     f"| {_pct(c['peak_fraction'])} | {_pct(c.get('bf16_peak_fraction'))} "
                     f"| {_pct(c.get('gemm_fraction'))} | {_fmt(c['cores_busy'], 2)} "
                     f"| {_fmt(c.get('videos_per_cpu_s'))} | {c['loadavg_before'][0]}→{c['loadavg_after'][0]} "
                     f"| {_match(c)} |")
    lines.append("")
    for r in refused:
        lines.append(f"- `{r['path']}` not measured: {r['refused']}")
    return lines + ([""] if refused else [])


def ratio_lines(ratios: dict) -> list[str]:
    if not ratios:
        return []
    keys = sorted({k for v in ratios.values() for k in v if k != "by_pass"})
    lines = ["Ratios of videos/s between paths of this run (Triton at its best concurrency; a Triton path is "
             "divided by eager FP32 and by the same runtime in-process); in brackets the same ratio within each "
             "pass (paths measured back to back):", "",
             "| kind/batch | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for kb, v in ratios.items():
        cells = []
        for k in keys:
            by = v.get("by_pass", {}).get(k)
            cells.append(_fmt(v.get(k)) + (f" ({', '.join(_fmt(x, 2) for x in by)})" if by else ""))
        lines.append(f"| {kb} | " + " | ".join(cells) + " |")
    return lines + [""]


def triton_lines(t: dict) -> list[str]:
    if not t:
        return []
    mem0, mem1 = t.get("memory_after_load", {}), t.get("memory_after_bench", {})
    procs = ", ".join(f"{p['name']} {p['rss_mib']} MiB (peak {p['peak_rss_mib']})" for p in mem1.get("processes", []))
    lines = [f"Triton {t.get('server_version', '?')} (embedded, CPU, python backend; started by `python -m serving "
             f"up`, its own process group, clients through its gRPC front): max_batch_size {t.get('max_batch_size')}, "
             f"dynamic batching preferred sizes {t.get('preferred_batch_sizes', '?')}, delay "
             f"{t.get('queue_delay_us')} µs, {t.get('instances')} instance(s). Server RSS (launcher + tritonserver + "
             f"python stubs, /proc VmRSS): {mem0.get('rss_mib')} MiB after load, {mem1.get('rss_mib')} MiB after "
             f"the benchmark ({procs}).", ""]
    startup = t.get("startup") or []
    if startup:
        lines += ["Server start-up (from `python -m serving up` to every model ready; one variant's models per "
                  "start; OpenVINO's compile cache empty, then filled by the first start):", "",
                  "| models | compile cache | start-up s |", "|---|---|---:|"]
        lines += [f"| {s['variant']} | {s['cache']} | {_fmt(s['seconds'], 1)} |" for s in startup]
        lines.append("")
    stats = [c for c in t.get("statistics", []) if c.get("models")]
    if stats:
        lines += ["Where a Triton request's time goes (Triton's own statistics over each cell, warm-ups included, "
                  "ms per request; compute_infer = model.py's execute(): the python stub and the runtime; "
                  "'outside' = the client's p50 latency minus Triton's phases: gRPC, the launcher's front, the "
                  "client; 'in-process' = the same runtime's p50 at the same batch):", "",
                  "| kind | path | batch | model | videos/execution | queue | compute_input | compute_infer "
                  "| compute_output | client p50 | outside | in-process |",
                  "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in stats:
            for model, m in sorted(c["models"].items()):
                lines.append(f"| {c['kind']} | {c['path']} | {c['batch']} | {model} "
                             f"| {_fmt(m.get('videos_per_execution'), 2)} | {_fmt(m['queue_ms_per_request'], 1)} "
                             f"| {_fmt(m['compute_input_ms_per_request'], 1)} "
                             f"| {_fmt(m['compute_infer_ms_per_request'], 1)} "
                             f"| {_fmt(m['compute_output_ms_per_request'], 1)} | {_fmt(c.get('client_p50_ms'), 1)} "
                             f"| {_fmt(c.get('outside_ms'), 1)} | {_fmt(c.get('in_process_ms'), 1)} |")
        lines += ["", "CPU milliseconds per request of each process over the same cells (/proc), against the "
                  "in-process path's CPU per call at the same batch:", "",
                  "| kind | path | batch | client | launcher and front | tritonserver | python stubs | total "
                  "| in-process |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for c in stats:
            cpu = c.get("cpu_ms_per_request") or {}
            roles = ("client", "launcher and front", "tritonserver", "python stubs")
            lines.append(f"| {c['kind']} | {c['path']} | {c['batch']} | "
                         + " | ".join(_fmt(cpu.get(r), 1) for r in roles)
                         + f" | {_fmt(sum(cpu.get(r, 0) for r in roles) if cpu else None, 1)} "
                           f"| {_fmt(c.get('in_process_cpu_ms'), 1)} |")
        lines.append("")
    return lines


def tensorrt_lines(trt: dict | None) -> list[str]:
    if not trt:
        return []
    if "skipped" in trt:
        return [f"TensorRT: skipped ({trt['skipped']}).", ""]
    lines = ["TensorRT (host↔device copies included):", "", "| kind | path | batch | n | videos/s | p50 s | build s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for c in trt["cells"]:
        if "error" in c:
            lines.append(f"| {c['kind']} | {c['path']} | – | – | error: {c['error']} | | |")
        else:
            lines.append(f"| {c['kind']} | {c['path']} | {c['batch']} | {c['n']} | {_fmt(c['videos_per_s'])} "
                         f"| {_fmt(c['latency_s']['p50'])} | {c.get('build_s')} |")
    return lines + [""]


def sweep_lines(sweeps: list[dict] | None) -> list[str]:
    lines = []
    for sweep in sweeps or []:
        lines += [f"ONNX Runtime session options, sample, batch {sweep['batch']} (in-process):", "",
                  "| variant | n | videos/s | p50 s | × first (per pass) | cores busy | load before→after | same output | what |",
                  "|---|---:|---:|---:|---:|---:|---|---|---|"]
        for row in sweep["rows"]:
            per_pass = row.get("speedup_vs_first_by_pass", [])
            lines.append(f"| {row['variant']} | {row['n']} | {_fmt(row['videos_per_s'])} | {_fmt(row['latency_s']['p50'])} "
                         f"| {_fmt(row['speedup_vs_first'])}"
                         + (f" ({', '.join(_fmt(x, 2) for x in per_pass)})" if len(per_pass) > 1 else "")
                         + f" | {_fmt(row['cores_busy'], 2)} | {row['loadavg_before'][0]}→{row['loadavg_after'][0]} | "
                         f"{'yes' if row['matches_first'] else '**NO** ' + json.dumps(row['vs_first'])} "
                         f"| {row['description']} |")
        lines.append("")
    return lines


def profile_lines(title: str, p: dict) -> list[str]:
    if "error" in p:
        return [f"{title}: {p['error']}", ""]
    lines = [f"{title} (one run after a warm-up, {p['run_s']} s"
             + (f", compiled precision {p['compiled_precision']}" if p.get("compiled_precision") else "")
             + (f"; load {p['loadavg_before'][0]}→{p['loadavg_after'][0]}" if p.get("loadavg_before") else "") + "):",
             "", "| operator | s | share | GFLOP | GFLOP/s |", "|---|---:|---:|---:|---:|"]
    for row in p["by_op_type"][:10]:
        lines.append(f"| {row['name']} | {row['s']:.3f} | {100 * row['share']:.1f}% | {_fmt(row['gflop'], 1)} "
                     f"| {_fmt(row['gflops_per_s'], 1)} |")
    if p.get("by_kernel"):
        lines += ["", "| operator and kernel | precision | s | share | GFLOP/s |", "|---|---|---:|---:|---:|"]
        for row in p["by_kernel"][:10]:
            lines.append(f"| {row['name']} | {row.get('precision', '')} | {row['s']:.3f} | {100 * row['share']:.1f}% "
                         f"| {_fmt(row['gflops_per_s'], 1)} |")
    lines += ["", "| node | op | input shapes | s | share | GFLOP/s |", "|---|---|---|---:|---:|---:|"]
    for row in p["top_nodes"][:12]:
        shapes = " ".join("×".join(str(d) for d in s) for s in row.get("input_shapes", []) if s)
        lines.append(f"| `{row['name']}` | {row['op']} | {shapes} | {row['s']:.3f} | {100 * row['share']:.1f}% "
                     f"| {_fmt(row['gflops_per_s'], 1)} |")
    return lines + [""]


def training_lines(training: list[dict] | None) -> list[str]:
    if not training:
        return []
    lines = ["Training throughput (train.recipes, random in-memory clips; a preset's `+ KEY=VALUE` are the "
             "--train-set model options):", "",
             "| family | preset | precision | batch | n | steps/s | s/step p50 | clips/s | cores busy | load before→after |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for t in training:
        prec = t.get("precision", "fp32")
        preset = " ".join([t["preset"]] + [f"+ {k}={json.dumps(v)}" for k, v in (t.get("overrides") or {}).items()])
        if "error" in t or "refused" in t:
            why = f"error: {t['error']}" if "error" in t else t["refused"]
            lines.append(f"| {t['family']} | {preset} | {prec} | | | {why} | | | | |")
            continue
        lines.append(f"| {t['family']} | {preset} | {prec} | {t['batch']} | {t['n']} | {_fmt(t['steps_per_s'])} "
                     f"| {_fmt(t['s_per_step']['p50'])} | {_fmt(t['clips_per_s'])} | {_fmt(t['cores_busy'], 2)} "
                     f"| {t['loadavg_before'][0]}→{t['loadavg_after'][0]} |")
    return lines + [""]


def result_lines(r: dict) -> list[str]:
    m, cpu = r["model"], r["machine"]["cpu"]
    lines = [f"### {m['family']} / {m['preset']}", "",
             f"`{r['command']}` — {r['started_at']}, {r['wall_s']} s wall; weights: {m['weights']}; "
             f"1-min load average {r['loadavg_start'][0]} at the start, {r['loadavg_end'][0]} at the end, on "
             f"{cpu.get('physical_cores')} cores, ISA {cpu.get('isa', '?')} (every cell's load and the cores it "
             "kept busy are in the table).", ""]
    lines += flops_lines(r["flops"])
    lines += inference_lines(r["inference"], r.get("refused", []))
    lines += ratio_lines(r.get("ratios"))
    lines += triton_lines(r.get("triton"))
    lines += tensorrt_lines(r.get("tensorrt"))
    lines += sweep_lines(r.get("ort_sweep"))
    for key, title in (("ort_profile", "ONNX Runtime profile"), ("ov_profile", "OpenVINO profile")):
        for kind, p in (r.get(key) or {}).items():
            lines += profile_lines(f"{title}, {kind}, batch {p.get('batch')}", p)
    lines += training_lines(r.get("training"))
    return lines


def cpu_identity(machine: dict) -> tuple:
    cpu = machine["cpu"]
    return tuple(cpu.get(k) for k in ("vendor", "family", "model_number", "isa", "physical_cores"))


def render_markdown(results: list[dict]) -> str:
    """The generated section: each result file after the description of its machine (given again
    whenever the CPU changes from the previous file's)."""
    lines, previous = [BEGIN_MARK, ""], None
    for r in results:
        if cpu_identity(r["machine"]) != previous:
            lines += machine_lines(r["machine"])
            previous = cpu_identity(r["machine"])
        lines += result_lines(r)
    lines += [HOW_TO_READ, "", END_MARK]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, section: str, title: str = "# Benchmarks\n\n") -> None:
    """Replace the generated section of `path` (between the markers, or the older serving.bench
    markers), keeping everything else."""
    text = path.read_text() if path.exists() else title
    for begin, end in ((BEGIN_MARK, END_MARK), OLD_MARKS):
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            text = head + section.rstrip("\n") + tail
            break
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def console_table(result: dict) -> str:
    rows = [f"{'kind':<11} {'path':<16} {'batch':>5} {'inflt':>5} {'n':>3} {'videos/s':>9} {'p50 s':>8} {'p99 s':>8} "
            f"{'GFLOP/s':>8} {'%peak':>6} {'busy':>5}"]
    for c in result["inference"]:
        rows.append(f"{c['kind']:<11} {c['path']:<16} {c['batch']:>5} {c['concurrency']:>5} {c['n']:>3} "
                    f"{_fmt(c['videos_per_s']):>9} {_fmt(c['latency_s']['p50']):>8} {_fmt(c['latency_s']['p99']):>8} "
                    f"{_fmt(c['gflops_per_s'], 1):>8} {_pct(c['peak_fraction']):>6} {_fmt(c['cores_busy'], 2):>5}")
    rows.append("ratios: " + json.dumps(result.get("ratios", {})))
    return "\n".join(rows)
