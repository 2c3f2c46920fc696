"""This host and its processes, read from /proc: what measurements of a server record beside their figures.

- `parse_cpuinfo` / `machine_info`: CPU model, clock, flags, physical cores, memory, OS and
  library versions (no peak arithmetic: `bench.machine` derives the peaks from this);
- `process_tree`, `proc_stats`, `tree_stats`: RSS, peak RSS and CPU seconds of a process and of
  a whole tree (tritonserver and its python-backend stubs);
- `summarize`: latency percentiles; `loadavg`: the load averages, rounded.

Used by the `bench` stage: the benchmark and the reliability run (`bench.reliability`). Linux
only where /proc is read; elsewhere the functions return empty figures instead of failing.
"""
from __future__ import annotations

import contextlib
import glob
import importlib.metadata
import os
import platform
from pathlib import Path

import numpy as np

LIBRARIES = ("torch", "onnx", "onnxruntime", "openvino", "numpy", "tritonclient", "nvidia-pytriton", "grpcio",
             "protobuf", "tensorrt")
_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_cpuinfo(text: str) -> dict:
    """Model, MHz, flags, logical CPUs and physical cores from /proc/cpuinfo text."""
    procs = []
    for block in (b for b in text.strip().split("\n\n") if b.strip()):
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


def usable_cpus() -> int:
    """The CPUs this process may run on (the served model.py's count)."""
    from export.templates.model import usable_cores
    return usable_cores()


def memory_gib() -> dict:
    mem = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                mem[key] = round(int(rest.split()[0]) / 1024 / 1024, 2)
    return mem


def library_versions(libraries=LIBRARIES) -> dict:
    versions = {"python": platform.python_version()}
    for lib in libraries:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[lib] = importlib.metadata.version(lib)
    return versions


def machine_info() -> dict:
    """The CPU (model, MHz, SIMD/AMX flags, cores this process may use), memory, OS, versions."""
    try:
        cpu = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu = {}
    flags = cpu.pop("flags", set())
    max_mhz = None
    with contextlib.suppress(OSError, ValueError):
        max_mhz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000.0
    return {
        "cpu": {**cpu, "simd_flags": sorted(f for f in flags if f.startswith(("avx", "fma", "sse4", "amx"))),
                "hypervisor": "hypervisor" in flags, "usable_cpus": usable_cpus(), "cpufreq_max_mhz": max_mhz},
        "memory_gib": memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": library_versions(),
    }


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

    def mib(key):
        return round(int(fields.get(key, "0 kB").split()[0]) / 1024, 1)
    return {"pid": pid, "name": fields.get("Name", "?"), "rss_mib": mib("VmRSS"),
            "peak_rss_mib": mib("VmHWM"), "cpu_s": cpu}


def tree_stats(pid: int) -> dict:
    """proc_stats of a process and all its descendants, with their sums."""
    procs = [s for s in (proc_stats(p) for p in process_tree(pid)) if s]
    return {"processes": [{k: v for k, v in s.items() if k != "cpu_s"} for s in procs],
            "rss_mib": round(sum(s["rss_mib"] for s in procs), 1),
            "peak_rss_mib_sum": round(sum(s["peak_rss_mib"] for s in procs), 1),
            "cpu_s": sum(s["cpu_s"] for s in procs)}


def self_rss_mib() -> float | None:
    stats = proc_stats(os.getpid())
    return stats["rss_mib"] if stats else None


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def summarize(latencies: list[float]) -> dict:
    """p50, p99 (numpy's linear interpolation: ~ the maximum for few values), mean, min, max."""
    a = np.asarray(latencies, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max())}
