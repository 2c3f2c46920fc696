"""How a training process uses the machine: the memory allocator, and the precision (FP32, or bf16
autocast where the hardware computes bf16 natively).

Allocator: glibc serves every allocation above 32 MB (and, by its dynamic threshold, many
smaller ones) with a fresh mmap and returns it to the kernel on free, so each step of a video
GAN (activations of [16, 16, 16, 64, 64] floats are 67 MB) page-faults all its big tensors in
again: measured on a tiny G3AN step (batch 16, 1 thread, AMD EPYC AVX2), 1.11 s of kernel time
and 310k page faults per step beside 2.08 s of arithmetic. `keep_freed_memory()` turns glibc's
mmap path off and its trimming down, so freed blocks are reused: 0.07 s kernel time, 25k
faults, the step 1.46× faster. It changes no result, only where memory comes from.

Precision:

On a CPU, bf16 autocast pays off only with AVX512-BF16 or AMX (the matrix units do the bf16
products); without them PyTorch emulates bf16 and a step gets slower, so `--precision bf16` is
refused there with the reason instead of silently running slower. On CUDA, bf16 autocast is the
usual mixed precision of Ampere and later (no loss scaling needed). Weights, optimizer states
and losses stay FP32: only the forward passes of the networks run under autocast.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters


def keep_freed_memory() -> bool:
    """Keeps freed heap memory in the process for reuse (glibc only; elsewhere a no-op).
    Returns whether the allocator was changed."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The feature flags of this machine's CPU (/proc/cpuinfo; empty where it does not exist)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_isa(flags: frozenset[str] | None = None) -> str:
    """The widest vector/matrix ISA the CPU offers: 'AMX', 'AVX-512', 'AVX2' or 'baseline'."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return "baseline"


def bf16_native(device: torch.device, flags: frozenset[str] | None = None) -> tuple[bool, str]:
    """(whether bf16 runs natively on `device`, a sentence saying why or why not)."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"{torch.cuda.get_device_name(device)} {'supports' if ok else 'does not support'} bf16"
    flags = cpu_flags() if flags is None else flags
    have = [f for f in BF16_CPU_FLAGS if f in flags]
    if have:
        return True, f"the CPU has {', '.join(have)}"
    return False, (f"this CPU has neither {' nor '.join(BF16_CPU_FLAGS)} (widest ISA: {cpu_isa(flags)}); "
                   "bf16 would be emulated and slower than fp32")


def check_precision(precision: str, device: torch.device, flags: frozenset[str] | None = None) -> None:
    """Raises ValueError with the reason when `precision` cannot run natively on `device`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16":
        ok, why = bf16_native(device, flags)
        if not ok:
            raise ValueError(f"--precision bf16 refused: {why}. Use --precision fp32.")


def autocast(precision: str, device: torch.device):
    """The context a forward pass runs in for this precision."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Autocast(nn.Module):
    """Runs the wrapped network's forward under bf16 autocast and hands back FP32 tensors, so
    losses and everything after them stay in FP32."""

    def __init__(self, module: nn.Module, device: torch.device):
        super().__init__()
        self.module, self.device_type = module, device.type

    def forward(self, *args, **kwargs):
        with torch.autocast(device_type=self.device_type, dtype=torch.bfloat16):
            out = self.module(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            return out.float()
        return type(out)(o.float() if isinstance(o, torch.Tensor) else o for o in out)


def wrap_networks(nets: dict[str, nn.Module], precision: str, device: torch.device) -> dict[str, nn.Module]:
    if precision == "fp32":
        return nets
    return {name: Autocast(m, device) for name, m in nets.items()}
