"""The parity gate: every exported graph is run with ONNX Runtime against PyTorch before it is written.

For each batch size (1, 3, 8 by default, never above max_batch_size) the gate draws inputs
with a seeded numpy generator (latents ~ N(0, 1), one-hot labels, uniform uint8 videos;
AVLAE's decode graph gets w = F(z)), runs the graph with ONNX Runtime (CPU provider, graph
optimisation ORT_ENABLE_ALL, as served) and the eager PyTorch model, and compares:

- float tensors (latents, and the float video before quantisation, which the gate exposes as
  an extra graph output): max |onnx - torch| <= atol + rtol * max|torch|, atol 1e-4, rtol 1e-5.
  The rtol term only matters for tensors far from unit scale (latents of an untrained
  encoder can reach 1e9, where float32 itself has a resolution of ~100); for the video in
  [-1, 1] the bound is at most 1.1e-4.
- uint8 tensors (the video): at most 1 level on any pixel (a float difference of 1e-6 can
  flip round() at a .5 boundary; anything more is a real mismatch).
- shapes and dtypes must be identical, and neither side may hold NaN or Inf.

Any failure raises `ParityError` with every figure; nothing is written. The figures go into the
manifest of each model (`export.repository`).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import onnx

from .onnx_export import GraphSpec, add_outputs

DEFAULT_BATCHES = (1, 3, 8)


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree beyond the tolerance; `report` holds the figures."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-4
    rtol: float = 1e-5
    max_uint8_levels: int = 1

    def to_json(self) -> dict:
        return {"float": f"max|onnx - torch| <= {self.atol:g} + {self.rtol:g} * max|torch|",
                "atol": self.atol, "rtol": self.rtol, "uint8_max_levels": self.max_uint8_levels}


def ort_session(model: onnx.ModelProto | bytes, threads: int = 1):
    import onnxruntime as ort

    data = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(bytes(data), sess_options=options, providers=["CPUExecutionProvider"])


def compare_tensor(name: str, got: np.ndarray, ref: np.ndarray, tol: Tolerance) -> tuple[dict, str | None]:
    """Figures for one tensor and a problem string (None when within tolerance)."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return {"shape": list(got.shape), "reference_shape": list(ref.shape)}, \
            f"'{name}': shape {list(got.shape)} from ONNX Runtime, {list(ref.shape)} from PyTorch"
    if got.dtype != ref.dtype:
        return {"dtype": str(got.dtype), "reference_dtype": str(ref.dtype)}, \
            f"'{name}': dtype {got.dtype} from ONNX Runtime, {ref.dtype} from PyTorch"
    if got.dtype == np.uint8:
        diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
        worst = int(diff.max()) if diff.size else 0
        figures = {"max_levels": worst, "values_off": int(np.count_nonzero(diff)), "values": int(diff.size)}
        if worst > tol.max_uint8_levels:
            return figures, (f"'{name}': {int(np.count_nonzero(diff > tol.max_uint8_levels))} of {diff.size} "
                             f"uint8 values differ by more than {tol.max_uint8_levels} level(s) "
                             f"(worst {worst} levels)")
        return figures, None
    for side, array in (("ONNX Runtime", got), ("PyTorch", ref)):
        if not np.isfinite(array).all():
            return {"non_finite": int(array.size - np.isfinite(array).sum())}, \
                f"'{name}': {side} produced {int(array.size - np.isfinite(array).sum())} NaN/Inf value(s)"
    g64, r64 = got.astype(np.float64), ref.astype(np.float64)
    max_abs = float(np.abs(g64 - r64).max()) if got.size else 0.0
    max_ref = float(np.abs(r64).max()) if got.size else 0.0
    limit = tol.atol + tol.rtol * max_ref
    figures = {"max_abs": max_abs, "mean_abs": float(np.abs(g64 - r64).mean()) if got.size else 0.0,
               "max_ref": max_ref, "limit": limit}
    if max_abs > limit:
        return figures, f"'{name}': max abs difference {max_abs:.3g} > tolerance {limit:.3g} (max |torch| {max_ref:.3g})"
    return figures, None


class _Collector:
    def __init__(self, tol: Tolerance, batches):
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

    def report(self, what: str) -> dict:
        for entry in self.tensors.values():
            per = [f for f in entry["per_batch"].values()]
            if entry["dtype"] == "UINT8":
                entry["max_levels"] = max((f.get("max_levels", 999) for f in per), default=0)
                entry["values_off"] = sum(f.get("values_off", 0) for f in per)
                entry["values"] = sum(f.get("values", 0) for f in per)
            else:
                entry["max_abs"] = max((f.get("max_abs", float("inf")) for f in per), default=0.0)
                entry["max_ref"] = max((f.get("max_ref", 0.0) for f in per), default=0.0)
        import onnxruntime
        import torch

        return {
            "passed": not self.problems,
            "what": what,
            "runtime": f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider, ORT_ENABLE_ALL",
            "reference": f"torch {torch.__version__} eager, CPU, eval mode, float32",
            "batches": self.batches,
            "tolerance": self.tol.to_json(),
            "tensors": self.tensors,
            **({"problems": self.problems} if self.problems else {}),
        }


def _refuse(name: str, collector: _Collector, what: str, runtime: str = "ONNX Runtime") -> dict:
    report = collector.report(what)
    if collector.problems:
        raise ParityError(
            f"parity gate: {name} refused — {runtime} and PyTorch disagree: " + "; ".join(collector.problems[:8])
            + (f" (and {len(collector.problems) - 8} more)" if len(collector.problems) > 8 else "")
            + ". Nothing was written.", report)
    return report


def check_parity(model: onnx.ModelProto | bytes, spec: GraphSpec, *, name: str | None = None,
                 batches=DEFAULT_BATCHES, tolerance: Tolerance = Tolerance(), seed: int = 0,
                 threads: int = 1) -> dict:
    """Run the graph with ONNX Runtime and PyTorch on every batch size; the report, or ParityError.

    `model` is the graph as it will be written (probe outputs removed); the gate adds the
    probes (the float video before quantisation) back as outputs to compare them too.
    """
    name = name or spec.kind
    if isinstance(model, (bytes, bytearray)):
        try:
            model = onnx.load_from_string(bytes(model))
        except Exception as error:
            raise ParityError(f"parity gate: {name} refused — the ONNX bytes do not parse: {error}",
                              {"passed": False}) from error
    collector = _Collector(tolerance, batches)
    try:
        probed = add_outputs(model, spec.probes)
        session = ort_session(probed, threads)
    except Exception as error:
        raise ParityError(f"parity gate: {name} refused — ONNX Runtime cannot load the graph: {error}",
                          {"passed": False}) from error
    wanted = spec.output_names + [p.name for p in spec.probes]
    for batch in batches:
        rng = np.random.default_rng([seed, batch])
        feeds = spec.make_inputs(batch, rng)
        reference = spec.reference(feeds)
        try:
            results = session.run(wanted, feeds)
        except Exception as error:
            collector.problems.append(f"batch {batch}: ONNX Runtime failed: {error}")
            continue
        for out_name, got in zip(wanted, results):
            collector.add(batch, out_name, got, reference[out_name])
    return _refuse(name, collector, f"{spec.kind} graph, ONNX Runtime vs PyTorch")


def check_reconstruct_parity(encode_model, decode_model, encode_spec: GraphSpec, decode_spec: GraphSpec,
                             mapping: dict[str, str], *, name: str = "reconstruct", batches=DEFAULT_BATCHES,
                             tolerance: Tolerance = Tolerance(), seed: int = 0, threads: int = 1) -> dict:
    """The ensemble's path: ONNX encode -> (mapped latents) -> ONNX decode vs the same in PyTorch."""
    import torch

    collector = _Collector(tolerance, batches)
    encode, decode = ort_session(encode_model, threads), ort_session(decode_model, threads)
    extra = [t.name for t in decode_spec.inputs if t.name not in mapping.values()]  # e.g. label
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
    return _refuse(name, collector, "ensemble encode -> decode, ONNX Runtime vs PyTorch")


def default_threads() -> int:
    try:
        return max(1, min(2, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover
        return 1
