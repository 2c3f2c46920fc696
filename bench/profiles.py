"""FLOP counting, ONNX Runtime session variants, and per-operator profiles of ONNX Runtime and OpenVINO.

- `count_flops`: FLOPs of a PyTorch module call with torch.utils.flop_counter.FlopCounterMode (2
  per multiply-add; only convolutions, transposed convolutions and matrix products count) and a
  per-submodule breakdown.
- `ORT_VARIANTS` / `ort_session`: the ONNX Runtime session-option sweep ("served" is the served
  model.py's ShardedSession; every other variant one plain session with an option changed).
- `parse_ort_profile`: per operator type, module and node, the seconds of the LAST run in an
  ONNX Runtime profiling trace, with FLOPs from the node shapes and the achieved GFLOP/s.
- `openvino_profile`: the same from OpenVINO's runtime model after a run with PERF_COUNT: per
  operator type, per kernel (the primitive OpenVINO picked, e.g. brgconv_avx512_amx_bf16: it
  shows whether AMX ran) and per node, with each node's runtime precision. FLOPs come from
  each node's shapes; OpenVINO fuses attention (MatMul, Softmax, MatMul, ...) into `Subgraph`
  nodes whose layouts do not say which axis holds the keys, so the Subgraph row gets the FLOPs
  of the whole graph (FlopCounterMode) that the other nodes do not account for.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from export.templates.model import ShardedSession, ort_session_options, usable_cores

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


def node_flops(op: str, inputs: list, outputs: list, kernel=None) -> float | None:
    """FLOPs of one operator from its input/output shapes (lists of dims): matrix products
    (MatMul, FusedMatMul, Gemm, OpenVINO's FullyConnected: 2 x output x K), convolutions (2 x
    output x weights per output channel), transposed convolutions (weights [Cin, Cout/g, k...]:
    2 x input x prod(weights[1:]); `kernel` = the weight shape where it is not an input)."""
    try:
        if op in ("MatMul", "FusedMatMul", "Gemm", "FullyConnected"):
            return 2.0 * float(np.prod(outputs[0])) * inputs[0][-1]
        if op in ("Conv", "FusedConv", "Convolution"):
            return 2.0 * float(np.prod(outputs[0])) * float(np.prod(inputs[1][1:]))
        if op in ("ConvTranspose", "Deconvolution"):
            weights = kernel or inputs[1]
            return 2.0 * float(np.prod(inputs[0])) * float(np.prod(weights[1:]))
    except (TypeError, IndexError, ValueError):
        return None
    return None


def rows(table: dict, total_us: float, n: int | None = None) -> list[dict]:
    """Profile table rows, slowest first: seconds, share, GFLOP and GFLOP/s (plus any extra keys)."""
    out = []
    for key, v in sorted(table.items(), key=lambda kv: -kv[1]["us"])[:n]:
        s = v["us"] / 1e6
        row = {"name": key, "op": v["op"], "s": round(s, 4), "share": round(v["us"] / (total_us or 1), 4),
               "gflop": round(v["flops"] / 1e9, 3) if v["flops"] else None,
               "gflops_per_s": round(v["flops"] / 1e9 / s, 2) if v["flops"] and s > 0 else None}
        row.update({k: v[k] for k in ("input_shapes", "kernel", "precision") if k in v})
        out.append(row)
    return out


def _add(table: dict, key: str, op: str, us: float, flops: float | None, **extra) -> None:
    entry = table.setdefault(key, {"us": 0, "flops": 0.0, "calls": 0, "op": op})
    entry["us"] += us
    entry["calls"] += 1
    entry["flops"] += flops or 0.0
    entry.update(extra)


# --------------------------------------------------------------------------------- ONNX Runtime

def ort_session(path: str, variant: str = "served", profile_prefix: str | None = None):
    """An ONNX Runtime session for `variant`: "served" is model.py's ShardedSession (the default
    config: one shard per core, at most 4); every other variant is one plain session
    ("one_session") with the named options changed. Profiling uses a plain session. Both have
    run(output_names, feed) and output_names."""
    import onnxruntime as ort

    names = [v for v in variant.split("+") if v]
    unknown = [v for v in names if v not in ORT_VARIANTS]
    if unknown:
        raise ValueError(f"unknown ONNX Runtime variant(s) {unknown}; known: {sorted(ORT_VARIANTS)}")
    auto = max(1, min(4, usable_cores()))                     # model.py's "auto"
    if names == ["served"] and not profile_prefix:
        return ShardedSession(path, shards=auto, intra=auto, inter=1)
    options = ort_session_options(auto, 1)                    # as served
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
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    session.output_names = [o.name for o in session.get_outputs()]
    return session


def parse_ort_profile(trace_path: str, onnx_path: str, top: int = 15) -> dict:
    """Per operator type, module and node: seconds of the LAST model_run in the trace, share,
    FLOPs (from the node shapes: MatMul/Conv/ConvTranspose) and achieved GFLOP/s."""
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

    def shapes(entries):
        return [list(x.values())[0] if x else None for x in entries]
    for e in nodes:
        name = e["name"][: -len("_kernel_time")]
        op = e["args"].get("op_name", "?")
        ins, outs = shapes(e["args"].get("input_type_shape", [])), shapes(e["args"].get("output_type_shape", []))
        flops = node_flops(op, ins, outs, kernels.get(name))
        _add(by_op, op, op, e["dur"], flops)
        _add(by_module, _module_of(name), op, e["dur"], flops)
        _add(by_node, name, op, e["dur"], flops, input_shapes=ins[:2])
    return {"runtime": "onnxruntime", "run_s": round(last["dur"] / 1e6, 4), "node_s": round(total / 1e6, 4),
            "runs_in_trace": len(runs), "by_op_type": rows(by_op, total), "by_module": rows(by_module, total, top),
            "top_nodes": rows(by_node, total, top)}


def _module_of(node_name: str) -> str:
    """'/generator/fsa/spatial/MatMul_1' -> '/generator/fsa/spatial' (node's module path)."""
    parts = node_name.strip("/").split("/")
    parts = [p for p in parts if not re.fullmatch(r"[A-Z][A-Za-z]*(_\d+)?|MatmulTransposeFusion|", p)]
    return "/" + "/".join(parts[:4]) if parts else node_name


# --------------------------------------------------------------------------------- OpenVINO

def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):       # "not_executed", missing
        return 0.0


def openvino_profile(onnx_path: str, feeds: dict, precision: str = "fp32", threads: int = 1,
                     total_flops: float | None = None, top: int = 15) -> dict:
    """One run after a warm-up of the graph compiled with PERF_COUNT (one stream on `threads`
    threads, the given precision), read from the runtime model: per node its layer type,
    kernel, runtime precision, time and, from its shapes, FLOPs; `total_flops` (of this run)
    gives the fused Subgraph nodes the remainder."""
    import time

    from export.templates.model import OV_PRECISION_HINT, openvino_core

    compiled = openvino_core().compile_model(onnx_path, "CPU", {"PERF_COUNT": True, "NUM_STREAMS": 1,
                                                     "INFERENCE_NUM_THREADS": threads,
                                                     "INFERENCE_PRECISION_HINT": OV_PRECISION_HINT[precision]})
    request = compiled.create_infer_request()
    request.infer(feeds)                      # warm-up: the counters below are of the last run
    t0 = time.perf_counter()
    request.infer(feeds)
    run_s = time.perf_counter() - t0
    by_op: dict[str, dict] = {}
    by_kernel: dict[str, dict] = {}
    by_node: dict[str, dict] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = {key: op.get_rt_info()[key].astype(str) for key in op.get_rt_info().keys()}
        us = _number(info.get("execTimeMcs"))
        if us <= 0:
            continue
        layer = info.get("layerType", "?")
        ins = [list(op.get_input_partial_shape(i).to_shape()) for i in range(op.get_input_size())
               if op.get_input_partial_shape(i).is_static]
        outs = [list(op.get_output_partial_shape(i).to_shape()) for i in range(op.get_output_size())
                if op.get_output_partial_shape(i).is_static]
        flops = node_flops(layer, ins, outs)
        kernel, runtime_precision = info.get("primitiveType", "?"), info.get("runtimePrecision", "?")
        _add(by_op, layer, layer, us, flops)
        _add(by_kernel, f"{layer} {kernel}", layer, us, flops, kernel=kernel, precision=runtime_precision)
        _add(by_node, op.get_friendly_name(), layer, us, flops, input_shapes=ins[:2], kernel=kernel,
             precision=runtime_precision)
    if total_flops and "Subgraph" in by_op:
        by_op["Subgraph"]["flops"] = max(0.0, total_flops - sum(v["flops"] for v in by_op.values()))
    total = sum(v["us"] for v in by_op.values()) or 1
    return {"runtime": "openvino", "precision": precision, "threads": threads, "run_s": round(run_s, 4),
            "node_s": round(total / 1e6, 4),
            "compiled_precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            "by_op_type": rows(by_op, total), "by_kernel": rows(by_kernel, total, top),
            "top_nodes": rows(by_node, total, top)}
