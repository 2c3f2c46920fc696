"""The machine a benchmark ran on, and its peaks: what every '% of peak' figure is divided by.

The CPU's widest ISA comes from `train.runtime.cpu_isa` ('AMX', 'AVX-512', 'AVX2', 'baseline')
on the flags of /proc/cpuinfo (`train.runtime.cpu_flags`); the description of the host
(model, clock, cores, memory, versions) from `bench.host.machine_info`. Peaks, per physical
core this process may use, at the /proc/cpuinfo clock:

- FP32: SIMD lanes x 2 (FMA) x FMA units: AVX-512 (AMX CPUs too: their FP32 path is AVX-512)
  16 x 2 x 2 = 64 FLOP/cycle (parts with one 512-bit FMA unit: 32); AVX2 + FMA 8 x 2 x 2 = 32;
  AVX without FMA (one add and one mul port) 16; SSE 8.
- BF16, only where the CPU has native BF16 (`train.runtime.bf16_native`): AMX, one TMUL per
  core, TDPBF16PS multiplies a 16x32 by a 32x16 BF16 tile (16 x 16 x 32 = 8192 multiply-adds,
  16384 FLOP) every 16 cycles = 1024 FLOP/cycle; AVX512-BF16 without AMX, VDPBF16PS: 16 lanes x
  2 pairs x 2 (multiply-add) x 2 units = 128 FLOP/cycle. Elsewhere there is no BF16 peak: bf16
  would be emulated.
- AMD Zen 4 (AuthenticAMD family 25 with AVX-512: Zen 3, the same family, has none) executes
  512-bit instructions as two 256-bit halves on its two 256-bit FMA pipes, so both its AVX-512
  figures are halved: FP32 32, AVX512-BF16 64 FLOP/cycle (`HALF_WIDTH_AVX512`).

`gemm_probe` measures what a large matrix product reaches (torch.mm, FP32 and, where native,
BF16): a second, attainable denominator beside the nominal peak.
"""
from __future__ import annotations

import math
import time

from bench.host import loadavg
from bench.host import machine_info as host_info
from train.runtime import bf16_native, cpu_flags, cpu_isa

FP32_PER_CYCLE = {
    "AMX": (64, "AMX CPU, FP32 on AVX-512F: 16 FP32 lanes x 2 (FMA) x 2 FMA units = 64 (1-FMA-unit parts: 32)"),
    "AVX-512": (64, "AVX-512F: 16 FP32 lanes x 2 (FMA) x 2 FMA units = 64 (1-FMA-unit parts: 32)"),
}
BF16_AMX = (1024, "AMX-BF16: one TMUL per core, a 16x32 by 32x16 BF16 tile product (8192 multiply-adds) "
                  "every 16 cycles = 1024")
BF16_AVX512 = (128, "AVX512-BF16: VDPBF16PS, 16 lanes x 2 BF16 pairs x 2 (multiply-add) x 2 units = 128")


HALF_WIDTH_AVX512 = {("AuthenticAMD", "25"): "Zen 4 runs 512-bit instructions as two 256-bit halves"}


def _half_width(cpu: dict | None, flags) -> str | None:
    """Why this CPU's AVX-512 runs at half width, or None (cpu: bench.host's vendor and family)."""
    if not cpu or "avx512f" not in flags or "amx_tile" in flags or "amx_bf16" in flags:  # AMX: Intel parts
        return None
    return HALF_WIDTH_AVX512.get((cpu.get("vendor"), str(cpu.get("family"))))


def fp32_flops_per_cycle(flags, cpu: dict | None = None) -> tuple[int, str]:
    """FP32 FLOP per cycle per core from the CPU flags (and, for AVX-512, its vendor and family),
    and how it was derived."""
    isa = cpu_isa(frozenset(flags))
    half = _half_width(cpu, flags)
    if isa in FP32_PER_CYCLE and half:
        return FP32_PER_CYCLE[isa][0] // 2, f"AVX-512F, {half}: 16 FP32 lanes x 2 (FMA) x 2 units / 2 = 32"
    if isa in FP32_PER_CYCLE:
        return FP32_PER_CYCLE[isa]
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2 + FMA: 8 FP32 lanes x 2 (FMA) x 2 FMA units = 32"
    if "avx" in flags:
        return 16, "AVX, no FMA: 8 FP32 lanes x (1 add + 1 mul port) = 16"
    return 8, "SSE: 4 FP32 lanes x (1 add + 1 mul port) = 8"


def bf16_flops_per_cycle(flags, cpu: dict | None = None) -> tuple[int | None, str]:
    """BF16 FLOP per cycle per core where the CPU computes bf16 natively; (None, why not) elsewhere."""
    import torch

    native, why = bf16_native(torch.device("cpu"), frozenset(flags))
    if not native:
        return None, why
    if "amx_bf16" in flags:
        return BF16_AMX
    half = _half_width(cpu, flags)
    return (BF16_AVX512[0] // 2, f"{BF16_AVX512[1]}, / 2: {half}") if half else BF16_AVX512


def peak(cores: int, mhz: float | None, per_cycle: int | None, how: str, what: str) -> dict:
    if per_cycle is None or not mhz:
        return {"flops_per_s": None, "gflops_per_s": None, "derivation": f"no {what} peak: {how}"}
    flops = cores * mhz * 1e6 * per_cycle
    return {"flops_per_s": flops, "gflops_per_s": round(flops / 1e9, 2), "flop_per_cycle_per_core": per_cycle,
            "derivation": f"{cores} physical cores x {mhz} MHz (/proc/cpuinfo 'cpu MHz') x {per_cycle} "
                          f"{what} FLOP/cycle/core ({how}) = {flops / 1e9:.1f} GFLOP/s"}


def machine_info(flags=None) -> dict:
    """bench.host.machine_info plus the ISA and the FP32 / BF16 peaks (flags: the real ones by default)."""
    info = host_info()
    flags = cpu_flags() if flags is None else frozenset(flags)
    cpu = info["cpu"]
    cores = min(cpu.get("physical_cores") or cpu["usable_cpus"], cpu["usable_cpus"])
    cpu["cores_used_for_peak"] = cores
    cpu["isa"] = cpu_isa(flags)
    info["peak_fp32"] = peak(cores, cpu.get("mhz"), *fp32_flops_per_cycle(flags, cpu), "FP32")
    info["peak_bf16"] = peak(cores, cpu.get("mhz"), *bf16_flops_per_cycle(flags, cpu), "BF16")
    return info


def gemm_probe(threads: int, per_cycle: int, cores: int, dtype: str = "fp32", n: int = 2048,
               repeats: int = 7) -> dict:
    """Measured matrix-multiply rate (torch.mm n x n, best of `repeats`). It exceeds the nominal
    peak when the cores run above the /proc/cpuinfo clock (turbo); the implied clock is
    rate / (cores x FLOP/cycle/core)."""
    import torch

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n, dtype=torch_dtype), torch.randn(n, n, dtype=torch_dtype)
    torch.mm(a, b)
    best, load0 = math.inf, loadavg()
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    rate = 2.0 * n ** 3 / best
    return {"what": f"torch.mm {n}x{n} {dtype.upper()}, {threads} threads, best of {repeats}", "flops_per_s": rate,
            "gflops_per_s": round(rate / 1e9, 1), "implied_clock_mhz": round(rate / (cores * per_cycle) / 1e6),
            "loadavg_before": load0, "loadavg_after": loadavg()}
