"""The graphs of the wire contract, traced from a `VideoGAN` to ONNX.

One `GraphSpec` per Triton model (DESIGN.md, "The wire contract"):

| graph     | inputs                                               | outputs                               |
|-----------|------------------------------------------------------|---------------------------------------|
| sample    | z_a FP32 [-1,Da], z_m FP32 [-1,Dm] (+ label [-1,K])  | video UINT8 [-1,T,H,W,3]              |
| encode    | video UINT8 [-1,T,H,W,3]                             | encgan3: z_a_mean, z_a_logvar, z_m_mean, z_m_logvar; avlae: w_a, w_m (FP32) |
| decode    | encgan3: z_a, z_m (+ label); avlae: w_a, w_m         | video UINT8 [-1,T,H,W,3]              |

plus the `reconstruct` ensemble (encode -> decode, output `reconstruction`, see
RECONSTRUCT_OUTPUT), which has no graph of its own.

Pre- and post-processing live inside the graphs: `video` in is converted to float
NCTHW in [-1, 1] (x / 127.5 - 1), `video` out is round((x + 1) * 127.5) clamped to 0..255,
cast to uint8 and moved to frames-last. AVLAE's sample graph includes the mapping networks
F_A / F_M (z -> w); its decode graph starts at w.

Each wrapper also returns *probe* outputs: the float video before quantisation
(`video_float`, NCTHW). They are exported as graph outputs, so the tracer gives that tensor
a stable name, and then removed from the graph's output list before anything is written
(the nodes stay: they feed the quantisation). The parity gate (`export.parity`) exposes them
again to compare the float output with PyTorch at 1e-4.

Exports use the TorchScript-based exporter (`dynamo=False`; the dynamo exporter needs
onnxscript), opset 17 by default, batch axis dynamic, traced at batch 2 from a model in eval
mode with spectral norm baked in (`VideoGAN.for_inference()`).
"""
from __future__ import annotations

import dataclasses
import io
import warnings
from typing import Callable

import numpy as np
import onnx
import torch
from torch import nn

from .contract import RECONSTRUCT_OUTPUT  # noqa: F401 (the wire contract, re-exported)

MIN_OPSET = 17
DEFAULT_OPSET = 17
FLOAT_PROBE = "video_float"
# ONNX operators that draw random numbers: none may appear in an exported graph.
RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
              "Multinomial", "Bernoulli"}
_ONNX_DTYPES = {"FP32": onnx.TensorProto.FLOAT, "UINT8": onnx.TensorProto.UINT8}
_NUMPY_DTYPES = {"FP32": np.float32, "UINT8": np.uint8}


class ExportError(RuntimeError):
    """The model cannot be exported as the wire contract requires."""


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One tensor of the contract: Triton data type name and dims without the batch axis."""

    name: str
    dtype: str          # "FP32" or "UINT8"
    dims: tuple[int, ...]

    @property
    def numpy_dtype(self):
        return _NUMPY_DTYPES[self.dtype]

    @property
    def onnx_dtype(self) -> int:
        return _ONNX_DTYPES[self.dtype]

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "dims": [-1, *self.dims]}


@dataclasses.dataclass
class GraphSpec:
    """What one Triton model's graph takes and returns, and the PyTorch module that computes it.

    `module(*inputs)` returns the contract outputs in order, then the probe outputs in order.
    `make_inputs(batch, rng)` draws valid example inputs for the parity gate.
    """

    kind: str                              # sample / encode / decode
    inputs: list[Tensor]
    outputs: list[Tensor]
    module: nn.Module
    make_inputs: Callable[[int, np.random.Generator], dict[str, np.ndarray]]
    probes: list[Tensor] = dataclasses.field(default_factory=list)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @torch.no_grad()
    def reference(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """PyTorch's answer for `feeds`: every contract output and probe, as numpy."""
        if self.module.training or any(m.training for m in self.module.modules()):
            raise ExportError(f"{self.kind}: the PyTorch reference is not in eval mode")
        args = [torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in self.inputs]
        results = self.module(*args)
        names = self.output_names + [p.name for p in self.probes]
        return {name: value.detach().cpu().numpy() for name, value in zip(names, results)}


# --- pre/post-processing inside the graph ---------------------------------------------------

def float_to_uint8_video(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, T, H, W] float in [-1, 1] -> [B, T, H, W, 3] uint8: round((x+1)*127.5) clamped to 0..255."""
    q = torch.clamp(torch.round((x + 1.0) * 127.5), 0.0, 255.0).to(torch.uint8)
    return q.permute(0, 2, 3, 4, 1)


def uint8_to_float_video(video: torch.Tensor) -> torch.Tensor:
    """[B, T, H, W, 3] uint8 -> [B, 3, T, H, W] float32 in [-1, 1] (x / 127.5 - 1)."""
    return video.permute(0, 4, 1, 2, 3).to(torch.float32) / 127.5 - 1.0


class _SampleGraph(nn.Module):
    def __init__(self, model, conditional: bool):
        super().__init__()
        self.model, self.conditional = model, conditional

    def forward(self, z_a, z_m, label=None):
        x = self.model.sample(z_a, z_m, label if self.conditional else None)
        return float_to_uint8_video(x), x


class _EncodeGraph(nn.Module):
    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, tuple(names)

    def forward(self, video):
        latents = self.model.encode(uint8_to_float_video(video))
        return tuple(latents[name] for name in self.names)


class _DecodeGraph(nn.Module):
    def __init__(self, model, names, conditional: bool):
        super().__init__()
        self.model, self.names, self.conditional = model, tuple(names), conditional

    def forward(self, *args):
        latents = dict(zip(self.names, args))
        if self.conditional:
            latents["label"] = args[len(self.names)]
        x = self.model.decode(**latents)
        return float_to_uint8_video(x), x


# --- the specs of a model ---------------------------------------------------------------------

def _one_hot(rng: np.random.Generator, batch: int, k: int) -> np.ndarray:
    out = np.zeros((batch, k), np.float32)
    out[np.arange(batch), rng.integers(0, k, size=batch)] = 1.0
    return out


def _normal(rng: np.random.Generator, batch: int, dim: int) -> np.ndarray:
    return rng.standard_normal((batch, dim), dtype=np.float32)


def has_encoder(model) -> bool:
    return model.spec.has_encoder(model.config)


def reconstruct_map(family: str) -> dict[str, str]:
    """Which encode output feeds which decode input in the family's reconstruct ensemble."""
    from train.families import get_family
    return dict(get_family(family).reconstruct_map)


def graph_specs(model) -> list[GraphSpec]:
    """The graphs to export for `model` (sample; plus encode and decode for encoder families)."""
    if model.training:
        raise ExportError("the model must be in eval mode (VideoGAN.for_inference()) before export")
    c, t, h, w = model.video_shape
    video = Tensor("video", "UINT8", (t, h, w, c))
    float_probe = Tensor(FLOAT_PROBE, "FP32", (c, t, h, w))
    k = int(model.num_classes or 0)
    conditional = k > 0
    label = [Tensor("label", "FP32", (k,))] if conditional else []
    da, dm = int(model.z_a_dim), int(model.z_m_dim)

    def sample_inputs(batch, rng):
        feeds = {"z_a": _normal(rng, batch, da), "z_m": _normal(rng, batch, dm)}
        if conditional:
            feeds["label"] = _one_hot(rng, batch, k)
        return feeds

    specs = [GraphSpec(
        kind="sample",
        inputs=[Tensor("z_a", "FP32", (da,)), Tensor("z_m", "FP32", (dm,))] + label,
        outputs=[video], probes=[float_probe],
        module=_SampleGraph(model, conditional).eval(), make_inputs=sample_inputs)]
    if not has_encoder(model):
        return specs

    family = model.spec
    with torch.no_grad():
        probe = model.encode(torch.zeros(1, c, t, h, w))
    enc_names = family.encode_names
    if tuple(probe) != enc_names:
        raise ExportError(f"{family.name}.encode returned {list(probe)}, expected {list(enc_names)}")
    enc_out = [Tensor(n, "FP32", tuple(int(d) for d in probe[n].shape[1:])) for n in enc_names]

    def encode_inputs(batch, rng):
        return {"video": rng.integers(0, 256, size=(batch, t, h, w, c), dtype=np.uint8)}

    # decode takes the family's latents of prior noise (+ label): what `sample` decodes
    dec_names = family.decode_names

    @torch.no_grad()
    def decode_inputs(batch, rng):
        z_a, z_m = torch.from_numpy(_normal(rng, batch, da)), torch.from_numpy(_normal(rng, batch, dm))
        latents = family.prior_latents(model, z_a, z_m)
        feeds = {n: latents[n].numpy() for n in dec_names}
        if conditional:
            feeds["label"] = _one_hot(rng, batch, k)
        return feeds

    dec_dims = {n: tuple(int(d) for d in v.shape[1:])
                for n, v in decode_inputs(1, np.random.default_rng(0)).items() if n != "label"}
    dec_in = [Tensor(n, "FP32", dec_dims[n]) for n in dec_names] + label

    specs.append(GraphSpec(kind="encode", inputs=[video], outputs=enc_out,
                           module=_EncodeGraph(model, enc_names).eval(), make_inputs=encode_inputs))
    specs.append(GraphSpec(kind="decode", inputs=dec_in, outputs=[video], probes=[float_probe],
                           module=_DecodeGraph(model, dec_names, conditional).eval(),
                           make_inputs=decode_inputs))
    return specs


# --- export and graph hygiene -----------------------------------------------------------------

def export_onnx(spec: GraphSpec, opset: int = DEFAULT_OPSET, metadata: dict | None = None) -> onnx.ModelProto:
    """Trace `spec.module` to ONNX; returns the checked graph with the probe outputs removed."""
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is below the minimum {MIN_OPSET}")
    rng = np.random.default_rng(1234)
    example = spec.make_inputs(2, rng)
    args = tuple(torch.from_numpy(example[t.name]) for t in spec.inputs)
    names_out = spec.output_names + [p.name for p in spec.probes]
    all_names = spec.input_names + names_out
    buffer = io.BytesIO()
    spec.module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            spec.module, args, buffer,
            input_names=spec.input_names, output_names=names_out,
            dynamic_axes={n: {0: "batch"} for n in all_names},
            opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    # torch.onnx.export restores the wrapper's previous mode recursively: make sure it is eval
    spec.module.eval()
    model = onnx.load_from_string(buffer.getvalue())
    model = strip_outputs(model, [p.name for p in spec.probes])
    _set_contract_shapes(model, spec)
    model.producer_name = "videogan-export"
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    validate_graph(model, spec)
    return model


def strip_outputs(model: onnx.ModelProto, names) -> onnx.ModelProto:
    """A copy of `model` without the graph outputs `names`, dead nodes pruned."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [o for o in out.graph.output if o.name not in set(names)]
    del out.graph.output[:]
    out.graph.output.extend(keep)
    _prune_dead_nodes(out.graph)
    return out


def _prune_dead_nodes(graph: onnx.GraphProto) -> None:
    needed = {o.name for o in graph.output}
    alive = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            alive.append(node)
            needed.update(i for i in node.input if i)
            for attr in node.attribute:  # subgraphs (If/Loop) read outer names
                for sub in [attr.g, *attr.graphs]:
                    for n in sub.node:
                        needed.update(i for i in n.input if i)
    alive.reverse()
    if len(alive) != len(graph.node):
        del graph.node[:]
        graph.node.extend(alive)
        inits = [i for i in graph.initializer if i.name in needed]
        del graph.initializer[:]
        graph.initializer.extend(inits)


def _set_contract_shapes(model: onnx.ModelProto, spec: GraphSpec) -> None:
    """Declare [batch, *dims] on the graph inputs/outputs where tracing left symbolic dims
    (e.g. latents cut with chunk() come out as 'Slice..._dim_1'). The parity gate then checks
    the actual shapes at every batch size."""
    tensors = {t.name: t for t in spec.inputs + spec.outputs}
    for value in list(model.graph.input) + list(model.graph.output):
        t = tensors.get(value.name)
        if t is None:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(t.dims) + 1:
            continue  # reported by validate_graph
        dims[0].Clear()
        dims[0].dim_param = "batch"
        for d, size in zip(list(dims)[1:], t.dims):
            if d.HasField("dim_param"):
                d.Clear()
                d.dim_value = int(size)


def add_outputs(model: onnx.ModelProto, tensors: list[Tensor]) -> onnx.ModelProto:
    """A copy of `model` that also outputs the intermediate values `tensors` (for the parity gate)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    produced = {o for node in out.graph.node for o in node.output}
    present = {o.name for o in out.graph.output}
    for t in tensors:
        if t.name in present:
            continue
        if t.name not in produced:
            raise ExportError(f"the graph has no intermediate tensor '{t.name}' to probe")
        out.graph.output.append(onnx.helper.make_tensor_value_info(t.name, t.onnx_dtype, None))
    return out


def _dims(value_info) -> list:
    shape = value_info.type.tensor_type.shape
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "?")
            for d in shape.dim]


def graph_io(model: onnx.ModelProto) -> tuple[dict, dict]:
    """({name: (onnx elem type, dims)} of the inputs, same of the outputs); dims keep dim_params."""
    inits = {i.name for i in model.graph.initializer}
    ins = {v.name: (v.type.tensor_type.elem_type, _dims(v)) for v in model.graph.input if v.name not in inits}
    outs = {v.name: (v.type.tensor_type.elem_type, _dims(v)) for v in model.graph.output}
    return ins, outs


def compare_io(model: onnx.ModelProto, inputs: list[Tensor], outputs: list[Tensor]) -> list[str]:
    """Problems between the graph's inputs/outputs and the contract tensors (empty: they match)."""
    problems = []
    ins, outs = graph_io(model)
    for kind, have, want in (("input", ins, inputs), ("output", outs, outputs)):
        names = [t.name for t in want]
        if sorted(have) != sorted(names):
            problems.append(f"graph {kind}s are {sorted(have)}, expected {sorted(names)}")
            continue
        for t in want:
            elem, dims = have[t.name]
            if elem != t.onnx_dtype:
                problems.append(f"{kind} '{t.name}' has ONNX type "
                                f"{onnx.TensorProto.DataType.Name(elem)}, expected "
                                f"{onnx.TensorProto.DataType.Name(t.onnx_dtype)}")
            if len(dims) != len(t.dims) + 1:
                problems.append(f"{kind} '{t.name}' has shape {dims}, expected [batch, {', '.join(map(str, t.dims))}]")
                continue
            if isinstance(dims[0], int):
                problems.append(f"{kind} '{t.name}' has a fixed batch axis ({dims[0]}); it must be dynamic")
            if [int(d) if isinstance(d, int) else d for d in dims[1:]] != list(t.dims):
                problems.append(f"{kind} '{t.name}' has dims {dims[1:]} after the batch axis, expected {list(t.dims)}")
    return problems


def validate_graph(model: onnx.ModelProto, spec: GraphSpec) -> None:
    """onnx.checker, opset >= 17, no random operators, contract tensors with a dynamic batch axis."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as error:  # onnx raises ValidationError / InferenceError
        raise ExportError(f"{spec.kind}: onnx.checker rejects the graph: {error}") from error
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if opsets.get("ai.onnx", 0) < MIN_OPSET:
        raise ExportError(f"{spec.kind}: graph opset {opsets.get('ai.onnx')} < {MIN_OPSET}")
    random = sorted({n.op_type for n in model.graph.node if n.op_type in RANDOM_OPS})
    if random:
        raise ExportError(f"{spec.kind}: the graph draws random numbers ({', '.join(random)}); "
                          "latents and noise must be inputs")
    training = [n.name or n.op_type for n in model.graph.node
                if n.op_type == "Dropout" and len(n.input) > 2 and n.input[2]]
    if training:
        raise ExportError(f"{spec.kind}: the graph has Dropout in training mode ({training})")
    problems = compare_io(model, spec.inputs, spec.outputs)
    if problems:
        raise ExportError(f"{spec.kind}: the graph does not match the wire contract: " + "; ".join(problems))


def export_all(model, opset: int = DEFAULT_OPSET, metadata: dict | None = None):
    """[(spec, onnx.ModelProto)] for every graph of `model`."""
    out = []
    for spec in graph_specs(model):
        out.append((spec, export_onnx(spec, opset, {**(metadata or {}), "videogan.graph": spec.kind})))
    return out
