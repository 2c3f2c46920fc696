"""The parity gate: every exported graph is run by the runtime that will serve it, against PyTorch, before it is written.

For each batch size (1, 3, 8 by default, never above max_batch_size) the gate draws inputs
with a seeded numpy generator (latents ~ N(0, 1), one-hot labels, uniform uint8 videos;
AVLAE's decode graph gets w = F(z)), runs the graph with the served session of
`export/templates/model.py` (`open_session`: OpenVINO or ONNX Runtime, sharded as served, at
the precision it will serve) and the eager PyTorch model (FP32), and compares every output
and the probe outputs (the float video before quantisation, which the gate exposes as an
extra graph output). Shapes and dtypes must be identical, and neither side may hold NaN or Inf.

FP32 (`Tolerance`, the default: exact up to float rounding):
- float tensors: max |served - torch| <= atol + rtol * max|torch|, atol 1e-4, rtol 1e-5. The
  rtol term only matters for tensors far from unit scale (latents of an untrained encoder can
  reach 1e9, where float32 itself has a resolution of ~100); for the video in [-1, 1] the
  bound is at most 1.1e-4.
- uint8 tensors (the video): at most 1 level on any pixel (a float difference of 1e-6 can flip
  round() at a .5 boundary; anything more is a real mismatch).

BF16 (`BF16_TOLERANCE`, `--precision bf16`: a reduced precision cannot be exact, so the bound
is statistical, like TensorRT FP16's):
- the uint8 video: PSNR >= 40 dB against the FP32 reference (an RMS error of at most 2.55
  levels) AND at least 99.9 % of the values within 2 levels;
- the float video before quantisation: PSNR >= 40 dB over its range [-1, 1] (the same scale);
- float latents: SNR = 20 log10(rms(torch) / rms(served - torch)) >= 40 dB (an RMS error of at
  most 1 % of the latents' own RMS, at any scale).
Why these: bf16 keeps 8 significant bits (a relative rounding error of 2^-9 = 0.2 % per value),
so one rounding alone costs ~54 dB; OpenVINO keeps its accumulations in FP32 and measured
69 dB PSNR on G3AN paper64 on an AMX CPU (≤ 1 level everywhere), PyTorch's bf16 autocast
54 dB (issue 12). 40 dB leaves room for trained weights and deeper graphs while refusing what
is visibly wrong: 40 dB is the usual bar for "visually lossless", and a graph with a real
mismatch (a wrong weight, a wrong scale) lands far below it (tests/test_export.py: weights
rounded to bf16 pass, weights rounded to 4 significant bits are refused).

Any failure raises `ParityError` with every figure; nothing is written. The figures go into the
manifest of each model (`export.repository`), with the tolerance that was applied.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from .onnx_export import FLOAT_PROBE, GraphSpec, add_outputs
from .templates.model import RUNTIME_LABEL, open_session

DEFAULT_BATCHES = (1, 3, 8)


class ParityError(RuntimeError):
    """The served runtime and PyTorch disagree beyond the tolerance; `report` holds the figures."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def _basic_problem(name: str, got: np.ndarray, ref: np.ndarray) -> tuple[dict, str] | None:
    """Shape, dtype and NaN/Inf: what no tolerance forgives."""
    if got.shape != ref.shape:
        return {"shape": list(got.shape), "reference_shape": list(ref.shape)}, \
            f"'{name}': shape {list(got.shape)} from the served runtime, {list(ref.shape)} from PyTorch"
    if got.dtype != ref.dtype:
        return {"dtype": str(got.dtype), "reference_dtype": str(ref.dtype)}, \
            f"'{name}': dtype {got.dtype} from the served runtime, {ref.dtype} from PyTorch"
    if got.dtype != np.uint8:
        for side, array in (("the served runtime", got), ("PyTorch", ref)):
            if not np.isfinite(array).all():
                bad = int(array.size - np.isfinite(array).sum())
                return {"non_finite": bad}, f"'{name}': {side} produced {bad} NaN/Inf value(s)"
    return None


def _levels(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(got.astype(np.int16) - ref.astype(np.int16))


def _db(signal: float, error: float) -> float | None:
    """20 log10(signal / error); None for an exact match (no error: no finite figure)."""
    return None if error == 0 else float(20 * np.log10(signal / error))


def _below(db: float | None, bound: float) -> bool:
    return db is not None and db < bound


def _fmt_db(db: float | None) -> str:
    return "exact" if db is None else f"{db:.1f} dB"


def _rms(array: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(array, dtype=np.float64)))) if array.size else 0.0


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """FP32: exact up to float rounding."""

    atol: float = 1e-4
    rtol: float = 1e-5
    max_uint8_levels: int = 1

    def to_json(self) -> dict:
        return {"precision": "fp32", "float": f"max|served - torch| <= {self.atol:g} + {self.rtol:g} * max|torch|",
                "atol": self.atol, "rtol": self.rtol, "uint8_max_levels": self.max_uint8_levels}

    def compare(self, name: str, got: np.ndarray, ref: np.ndarray) -> tuple[dict, str | None]:
        if got.dtype == np.uint8:
            diff = _levels(got, ref)
            worst = int(diff.max()) if diff.size else 0
            figures = {"max_levels": worst, "values_off": int(np.count_nonzero(diff)), "values": int(diff.size)}
            if worst > self.max_uint8_levels:
                return figures, (f"'{name}': {int(np.count_nonzero(diff > self.max_uint8_levels))} of {diff.size} "
                                 f"uint8 values differ by more than {self.max_uint8_levels} level(s) "
                                 f"(worst {worst} levels)")
            return figures, None
        g64, r64 = got.astype(np.float64), ref.astype(np.float64)
        max_abs = float(np.abs(g64 - r64).max()) if got.size else 0.0
        max_ref = float(np.abs(r64).max()) if got.size else 0.0
        limit = self.atol + self.rtol * max_ref
        figures = {"max_abs": max_abs, "mean_abs": float(np.abs(g64 - r64).mean()) if got.size else 0.0,
                   "max_ref": max_ref, "limit": limit}
        if max_abs > limit:
            return figures, (f"'{name}': max abs difference {max_abs:.3g} > tolerance {limit:.3g} "
                             f"(max |torch| {max_ref:.3g})")
        return figures, None


@dataclasses.dataclass(frozen=True)
class ReducedPrecisionTolerance:
    """BF16 (and any reduced precision): PSNR / SNR bounds against the FP32 reference."""

    precision: str = "bf16"
    min_psnr_db: float = 40.0            # uint8 video (peak 255) and float video (range [-1, 1])
    within_levels: int = 2
    min_within_fraction: float = 0.999   # of the uint8 values within `within_levels`
    min_snr_db: float = 40.0             # float latents: rms(torch) / rms(served - torch)

    def to_json(self) -> dict:
        return {"precision": self.precision,
                "uint8": f"PSNR >= {self.min_psnr_db:g} dB vs the FP32 reference and >= "
                         f"{100 * self.min_within_fraction:g} % of values within {self.within_levels} levels",
                "float_video": f"PSNR >= {self.min_psnr_db:g} dB over the range [-1, 1]",
                "float": f"SNR = 20 log10(rms(torch) / rms(served - torch)) >= {self.min_snr_db:g} dB",
                "min_psnr_db": self.min_psnr_db, "within_levels": self.within_levels,
                "min_within_fraction": self.min_within_fraction, "min_snr_db": self.min_snr_db}

    def compare(self, name: str, got: np.ndarray, ref: np.ndarray) -> tuple[dict, str | None]:
        if got.dtype == np.uint8:
            diff = _levels(got, ref)
            within = float(np.mean(diff <= self.within_levels)) if diff.size else 1.0
            psnr = _db(255.0, _rms(diff))
            figures = {"psnr_db": psnr, "within_fraction": within, "max_levels": int(diff.max()) if diff.size else 0,
                       "values_off": int(np.count_nonzero(diff)), "values": int(diff.size)}
            if _below(psnr, self.min_psnr_db) or within < self.min_within_fraction:
                return figures, (f"'{name}': PSNR {_fmt_db(psnr)} (needs >= {self.min_psnr_db:g}), "
                                 f"{100 * within:.3f} % of values within {self.within_levels} levels "
                                 f"(needs >= {100 * self.min_within_fraction:g} %)")
            return figures, None
        error = _rms(got.astype(np.float64) - ref.astype(np.float64))
        if name == FLOAT_PROBE:
            psnr = _db(2.0, error)
            figures = {"psnr_db": psnr, "rms_error": error}
            if _below(psnr, self.min_psnr_db):
                return figures, f"'{name}': PSNR {_fmt_db(psnr)} over [-1, 1] (needs >= {self.min_psnr_db:g})"
            return figures, None
        snr = _db(_rms(ref), error)
        figures = {"snr_db": snr, "rms_error": error, "rms_ref": _rms(ref)}
        if _below(snr, self.min_snr_db):
            return figures, f"'{name}': SNR {_fmt_db(snr)} (needs >= {self.min_snr_db:g})"
        return figures, None


BF16_TOLERANCE = ReducedPrecisionTolerance()


def tolerance_for(precision: str, fp32: Tolerance = Tolerance()) -> Tolerance | ReducedPrecisionTolerance:
    """The gate of a precision: `fp32` (exact, possibly loosened by the caller) or the bf16 bounds."""
    if precision == "fp32":
        return fp32
    if precision == "bf16":
        return BF16_TOLERANCE
    raise ValueError(f"no parity tolerance for precision {precision!r}")


def compare_tensor(name: str, got: np.ndarray, ref: np.ndarray, tol) -> tuple[dict, str | None]:
    """Figures for one tensor and a problem string (None when within tolerance)."""
    got, ref = np.asarray(got), np.asarray(ref)
    return _basic_problem(name, got, ref) or tol.compare(name, got, ref)


@dataclasses.dataclass(frozen=True)
class Runtime:
    """What serves the graph: `open_session`'s runtime and precision, and the shards / threads
    it runs with here (the served default is one shard per core)."""

    name: str = "onnxruntime"
    precision: str = "fp32"
    threads: int = 1

    @property
    def label(self) -> str:
        return RUNTIME_LABEL[self.name]

    @property
    def label_precision(self) -> str:
        return f"{self.label} {self.precision.upper()}"

    def session(self, model_bytes: bytes):
        return open_session(model_bytes, runtime=self.name, precision=self.precision,
                            shards=self.threads, threads=self.threads)


_SUMMARY = {"max_levels": max, "values_off": sum, "values": sum, "max_abs": max, "max_ref": max,
            "psnr_db": min, "snr_db": min, "within_fraction": min, "rms_error": max}


def summarize_figures(per_batch: list[dict]) -> dict:
    """The worst figure of each kind over the batches (None values: exact matches, skipped)."""
    out = {}
    for key, worst in _SUMMARY.items():
        values = [f[key] for f in per_batch if f.get(key) is not None]
        if any(key in f for f in per_batch):
            out[key] = worst(values) if values else None
    return out


class _Collector:
    def __init__(self, tol, batches):
        self.tol, self.batches = tol, list(batches)
        self.tensors: dict[str, dict] = {}
        self.problems: list[str] = []

    def add(self, batch: int, name: str, got, ref) -> None:
        figures, problem = compare_tensor(name, got, ref, self.tol)
        entry = self.tensors.setdefault(name, {"dtype": "UINT8" if np.asarray(ref).dtype == np.uint8 else "FP32",
                                               "per_batch": {}})
        entry["per_batch"][str(batch)] = figures
        if problem:
            self.problems.append(f"batch {batch}: {problem}")

    def report(self, what: str, runtime: str) -> dict:
        import torch

        for entry in self.tensors.values():
            entry.update(summarize_figures(list(entry["per_batch"].values())))
        return {
            "passed": not self.problems,
            "what": what,
            "runtime": runtime,
            "reference": f"torch {torch.__version__} eager, CPU, eval mode, float32",
            "batches": self.batches,
            "tolerance": self.tol.to_json(),
            "tensors": self.tensors,
            **({"problems": self.problems} if self.problems else {}),
        }


def _refuse(name: str, collector: _Collector, what: str, label: str, description: str) -> dict:
    """The report, or ParityError naming what disagrees (`label`, e.g. "OpenVINO FP32")."""
    report = collector.report(what, description)
    if collector.problems:
        raise ParityError(
            f"parity gate: {name} refused — {label} and PyTorch disagree: "
            + "; ".join(collector.problems[:8])
            + (f" (and {len(collector.problems) - 8} more)" if len(collector.problems) > 8 else "")
            + ". Nothing was written.", report)
    return report


def _parse(model, name: str) -> onnx.ModelProto:
    if not isinstance(model, (bytes, bytearray)):
        return model
    try:
        return onnx.load_from_string(bytes(model))
    except Exception as error:
        raise ParityError(f"parity gate: {name} refused — the ONNX bytes do not parse: {error}",
                          {"passed": False}) from error


def _open(model, name: str, runtime: Runtime):
    try:
        return runtime.session(_parse(model, name).SerializeToString())
    except ParityError:
        raise
    except Exception as error:
        raise ParityError(f"parity gate: {name} refused — {runtime.label} cannot load the graph: {error}",
                          {"passed": False}) from error


def check_parity(model: onnx.ModelProto | bytes, spec: GraphSpec, *, name: str | None = None,
                 batches=DEFAULT_BATCHES, tolerance=Tolerance(), seed: int = 0,
                 runtime: Runtime = Runtime()) -> dict:
    """Run the graph with the served runtime and PyTorch on every batch size; the report, or ParityError.

    `model` is the graph as it will be written (probe outputs removed); the gate adds the
    probes (the float video before quantisation) back as outputs to compare them too.
    """
    name = name or spec.kind
    collector = _Collector(tolerance, batches)
    session = _open(add_outputs(_parse(model, name), spec.probes), name, runtime)
    wanted = spec.output_names + [p.name for p in spec.probes]
    try:
        for batch in batches:
            rng = np.random.default_rng([seed, batch])
            feeds = spec.make_inputs(batch, rng)
            reference = spec.reference(feeds)
            try:
                results = session.run(wanted, feeds)
            except Exception as error:
                collector.problems.append(f"batch {batch}: {runtime.label} failed: {error}")
                continue
            for out_name, got in zip(wanted, results):
                collector.add(batch, out_name, got, reference[out_name])
    finally:
        session.close()
    return _refuse(name, collector, f"{spec.kind} graph, {runtime.label} vs PyTorch", runtime.label_precision,
                   session.description)


def check_reconstruct_parity(encode_model, decode_model, encode_spec: GraphSpec, decode_spec: GraphSpec,
                             mapping: dict[str, str], *, name: str = "reconstruct", batches=DEFAULT_BATCHES,
                             tolerance=Tolerance(), seed: int = 0, runtime: Runtime = Runtime()) -> dict:
    """The ensemble's path: encode -> (mapped latents) -> decode, served runtime vs the same in PyTorch."""
    import torch

    collector = _Collector(tolerance, batches)
    encode, decode = _open(encode_model, name, runtime), _open(decode_model, name, runtime)
    extra = [t.name for t in decode_spec.inputs if t.name not in mapping.values()]  # e.g. label
    try:
        for batch in batches:
            rng = np.random.default_rng([seed, batch, 7])
            feeds = encode_spec.make_inputs(batch, rng)
            extra_feeds = {k: v for k, v in decode_spec.make_inputs(batch, rng).items() if k in extra}
            latents = dict(zip(encode_spec.output_names, encode.run(encode_spec.output_names, feeds)))
            dec_feeds = {dst: latents[src] for src, dst in mapping.items()} | extra_feeds
            got = decode.run(["video"], dec_feeds)[0]
            with torch.no_grad():
                ref_latents = encode_spec.reference(feeds)
                ref = decode_spec.reference({dst: ref_latents[src] for src, dst in mapping.items()} | extra_feeds)
            collector.add(batch, "video", got, ref["video"])
    finally:
        encode.close()
        decode.close()
    return _refuse(name, collector, f"ensemble encode -> decode, {runtime.label} vs PyTorch",
                   runtime.label_precision, decode.description)


def default_threads() -> int:
    from .templates.model import usable_cores
    return max(1, min(2, usable_cores()))
