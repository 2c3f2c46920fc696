"""The paths a benchmark times in this process, their inputs, and how their outputs are compared.

| path | what runs |
|---|---|
| eager | the exported wrapper modules in PyTorch (generator in eval mode, spectral norm baked in, torch.inference_mode, uint8 quantisation included: the same computation as the graph), FP32 |
| eager-bf16 | the same under torch.autocast(bfloat16) (only where the CPU has native bf16) |
| ort | the exported model.onnx in the served ONNX Runtime session (export/templates/model.py, ShardedSession) |
| ov, ov-bf16 | the same graph in the served OpenVINO session (OpenVINOSession), FP32 / BF16 (BF16 only where native) |
| triton-ort, triton-ov, triton-ov-bf16 | those sessions behind the embedded Triton server, over gRPC (bench.triton) |
| tensorrt | TensorRT FP16 / FP32 engines (a GPU host only) |

Kinds: sample, plus encode and reconstruct (encode -> decode; on Triton the NAME_reconstruct
ensemble) for encgan3 / avlae. Outputs of every path are compared with eager FP32 on the same
inputs by the export's own comparison (`export.parity.compare_tensor`): FP32 paths within 1
uint8 level and 1e-3 (+ 1e-5 x max) on floats, BF16 paths within the export's BF16 gate.
"""
from __future__ import annotations

import time

import numpy as np

from export.parity import BF16_TOLERANCE, Tolerance, compare_tensor
from export.templates.model import open_session, usable_cores

PATHS = ("eager", "eager-bf16", "ort", "ov", "ov-bf16", "triton-ort", "triton-ov", "triton-ov-bf16", "tensorrt")
SERVED = {"ort": ("onnxruntime", "fp32"), "ov": ("openvino", "fp32"), "ov-bf16": ("openvino", "bf16")}
FP32_MATCH = Tolerance(atol=1e-3, rtol=1e-5, max_uint8_levels=1)


def precision_of(path: str) -> str:
    return "bf16" if path.endswith("-bf16") else "fp32"


def served_variant(path: str) -> str | None:
    """'triton-ov-bf16' -> 'ov-bf16', 'ov' -> 'ov'; None for eager / tensorrt."""
    variant = path[len("triton-"):] if path.startswith("triton-") else path
    return variant if variant in SERVED else None


# --------------------------------------------------------------------------------- inputs and comparison

def make_inputs(spec, batch: int, num_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
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


def vs_eager(path: str, reference: dict, outputs: dict) -> tuple[dict, bool]:
    """Figures of every output against eager FP32, and whether all are within the path's tolerance."""
    tolerance = BF16_TOLERANCE if precision_of(path) == "bf16" else FP32_MATCH
    figures, ok = {}, True
    for name in sorted(set(reference) & set(outputs)):
        figures[name], problem = compare_tensor(name, np.asarray(outputs[name]), np.asarray(reference[name]),
                                                tolerance)
        ok = ok and problem is None
    return figures, ok


def own(outputs: dict | None) -> dict:
    """Copies of a call's outputs. An ONNX Runtime output array keeps its session's whole memory
    arena alive after the session is deleted (2 GB per session at paper64 batch 8, ~8 GB at 32):
    keeping the arrays themselves ran the machine out of memory."""
    return {k: np.array(v, copy=True) for k, v in (outputs or {}).items()}


# --------------------------------------------------------------------------------- in-process paths

class Runners:
    """Callables per (path, kind) in this process: eager modules and the served sessions."""

    def __init__(self, family: str, model, specs: dict, onnx_paths: dict):
        from export.onnx_export import RECONSTRUCT_OUTPUT, reconstruct_map

        self.family, self.model, self.specs, self.onnx_paths = family, model, specs, onnx_paths
        self.map = reconstruct_map(family) if model.spec.encode is not None else {}
        self.reconstruct_output = RECONSTRUCT_OUTPUT

    def spec_for_inputs(self, kind: str):
        return self.specs["encode" if kind == "reconstruct" else kind]

    def _chain(self, kind: str, feeds: dict, run_graph) -> dict:
        """One call of `kind` with run_graph(graph kind, feeds) -> outputs; reconstruct = encode,
        the mapped latents (+ label), decode."""
        if kind != "reconstruct":
            return run_graph(kind, feeds)
        latents = run_graph("encode", feeds)
        dec = {dst: latents[src] for src, dst in self.map.items()}
        dec.update({k: v for k, v in feeds.items() if k == "label"})
        return {self.reconstruct_output: run_graph("decode", dec)["video"]}

    def eager(self, kind: str, feeds: dict, precision: str = "fp32"):
        import torch

        def run_spec(spec, arrays):
            args = [torch.from_numpy(np.ascontiguousarray(arrays[t.name])) for t in spec.inputs]
            if precision == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    results = spec.module(*args)
            else:
                results = spec.module(*args)
            return {t.name: (r if r.dtype == torch.uint8 else r.float()).numpy() for t, r in zip(spec.outputs, results)}

        def call():
            with torch.inference_mode():
                return self._chain(kind, feeds, lambda k, f: run_spec(self.specs[k], f))
        return call

    def session(self, kind: str, runtime: str, precision: str):
        """The served session of `kind`'s graph, as model.py opens it by default (one shard per
        core, at most 4; all cores for one video)."""
        auto = max(1, min(4, usable_cores()))
        return open_session(str(self.onnx_paths[kind]), runtime=runtime, precision=precision, shards=auto,
                            threads=auto if runtime == "onnxruntime" else usable_cores())

    def served(self, kind: str, feeds: dict, variant: str):
        """A call of `kind` through the served sessions of `variant` (bench.paths.SERVED), opened now."""
        return self.sessions_call(kind, feeds, lambda k: self.session(k, *SERVED[variant]))

    def sessions_call(self, kind: str, feeds: dict, opener):
        """A call of `kind` through sessions made by opener(graph kind) -> run(names, feed), output_names."""
        graphs = ["encode", "decode"] if kind == "reconstruct" else [kind]
        sessions = {g: opener(g) for g in graphs}

        def run(graph, feed):
            session = sessions[graph]
            return dict(zip(session.output_names, session.run(session.output_names, feed)))

        def call():
            return self._chain(kind, feeds, run)
        return call


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
