"""TensorRT engines (`tensorrt_plan`) from the exported ONNX graphs, on the GPU host.

`python -m export --target gpu --tensorrt [--precision FP16|FP32]` builds one engine per graph
with the TensorRT Python API, after the ONNX graph passed the parity gate:

- one optimization profile over the batch axis: min 1, opt `--trt-opt-batch` (default
  max_batch_size), max max_batch_size; every other dim fixed as in the contract;
- FP16: BuilderFlag.FP16 (TensorRT keeps layers in FP32 where FP16 is unsupported);
  FP32: TF32 disabled, so FP32 means FP32;
- the engine is then run on the parity inputs against PyTorch (`engine_parity`): uint8
  video within `ENGINE_TOLERANCE[precision]` levels, float latents within its atol/rtol.
  FP16 changes results by design, hence the looser FP16 bound; the figures go into the
  manifest next to the ONNX Runtime ones.

An engine only runs on the GPU model and TensorRT version it was built with: build it on (a
twin of) the serving host, with the TensorRT of the Triton container that serves it
(`model_repository/README.md` gives the matching trtexec command line too).

`--trt-builder trtexec` builds the same engine with NVIDIA's trtexec binary instead (inside
NVIDIA's Triton container: /usr/src/tensorrt/bin/trtexec, the TensorRT that will run it);
the engine check then runs only where the TensorRT Python module is importable too, and the
manifest says so otherwise.

`tensorrt` is imported lazily: on a machine without it (or without a CUDA GPU) every entry
point raises `TensorRTUnavailable` with a message saying what to do. Running an engine uses
torch CUDA tensors as device buffers (TensorRT >= 8.6 named-tensor API).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np

from .onnx_export import GraphSpec, Tensor
from .parity import Tolerance, _Collector, _refuse

# Engine-vs-PyTorch bounds per precision (the ONNX graph itself passed the 1e-4 / 1-level gate).
ENGINE_TOLERANCE = {
    "FP32": Tolerance(atol=1e-3, rtol=1e-4, max_uint8_levels=2),
    "FP16": Tolerance(atol=5e-2, rtol=1e-2, max_uint8_levels=16),
}
_TRT_DTYPES = {"FLOAT": "FP32", "UINT8": "UINT8", "HALF": "FP16", "INT32": "INT32", "INT64": "INT64", "INT8": "INT8"}


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA GPU is missing on this machine."""


class TensorRTError(RuntimeError):
    """TensorRT is there but could not parse, build or run the graph."""


def require_tensorrt(need_gpu: bool = True):
    """The `tensorrt` module, or TensorRTUnavailable with instructions."""
    try:
        import tensorrt as trt  # noqa: PLC0415 - only on GPU hosts
    except ImportError as error:
        raise TensorRTUnavailable(
            "TensorRT is not installed here (import tensorrt failed: "
            f"{error}). Engines are built on the GPU host that serves them, with the TensorRT "
            "version of its Triton container: run `python -m export ... --target gpu --tensorrt` "
            "there (pip install tensorrt==<the container's version>), or build the engines with "
            "trtexec as model_repository/README.md shows, or export --target gpu without "
            "--tensorrt (onnxruntime backend with the TensorRT accelerator).") from error
    if need_gpu:
        try:
            import torch  # noqa: PLC0415

            has_gpu = torch.cuda.is_available()
        except Exception:  # pragma: no cover
            has_gpu = False
        if not has_gpu:
            raise TensorRTUnavailable("TensorRT is installed but no CUDA GPU is visible (torch.cuda.is_available() "
                                      "is False); build engines on the GPU host that serves them")
    return trt


def _version_tuple(trt) -> tuple[int, ...]:
    return tuple(int(p) for p in trt.__version__.split(".")[:2] if p.isdigit())


def build_engine(onnx_bytes: bytes, inputs: list[Tensor], *, precision: str = "FP16", max_batch: int,
                 opt_batch: int | None = None, min_batch: int = 1, workspace_mib: int = 4096) -> bytes:
    """Serialized engine for the ONNX graph, one profile min/opt/max over the batch axis."""
    trt = require_tensorrt()
    if precision not in ENGINE_TOLERANCE:
        raise ValueError(f"precision must be FP16 or FP32, got {precision!r}")
    if _version_tuple(trt) < (8, 6):
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} is too old: 8.6 or newer is needed")
    opt_batch = opt_batch or max_batch
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None and _version_tuple(trt) < (10, 0):
        flags |= 1 << int(explicit)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f"TensorRT's ONNX parser rejects the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    if precision == "FP16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for t in inputs:
        dims = tuple(int(d) for d in t.dims)
        profile.set_shape(t.name, (min_batch, *dims), (opt_batch, *dims), (max_batch, *dims))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTError("TensorRT failed to build the engine (see the TensorRT log above)")
    return bytes(serialized)


def trtexec_command(trtexec: str, onnx_path: str, plan_path: str, inputs: list[Tensor], *, precision: str,
                    max_batch: int, opt_batch: int | None = None, min_batch: int = 1,
                    workspace_mib: int = 4096) -> list[str]:
    """The trtexec command line that builds the same engine as `build_engine`."""
    opt_batch = opt_batch or max_batch

    def shapes(batch: int) -> str:
        return ",".join(f"{t.name}:{'x'.join(str(d) for d in (batch, *t.dims))}" for t in inputs)

    return [trtexec, f"--onnx={onnx_path}", f"--saveEngine={plan_path}",
            f"--minShapes={shapes(min_batch)}", f"--optShapes={shapes(opt_batch)}", f"--maxShapes={shapes(max_batch)}",
            f"--memPoolSize=workspace:{int(workspace_mib)}M",
            "--fp16" if precision == "FP16" else "--noTF32", "--skipInference"]


def find_trtexec(trtexec: str = "trtexec") -> str:
    candidates = [trtexec] + (["/usr/src/tensorrt/bin/trtexec"] if trtexec == "trtexec" else [])
    for candidate in candidates:
        found = shutil.which(candidate) or (candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None)
        if found:
            return found
    raise TensorRTUnavailable(
        f"trtexec not found ({trtexec!r}, not on PATH). NVIDIA's Triton and TensorRT containers have it at "
        "/usr/src/tensorrt/bin/trtexec; pass --trtexec PATH, or use --trt-builder python")


def build_engine_trtexec(onnx_bytes: bytes, inputs: list[Tensor], *, precision: str = "FP16", max_batch: int,
                         opt_batch: int | None = None, min_batch: int = 1, workspace_mib: int = 4096,
                         trtexec: str = "trtexec") -> bytes:
    """Same engine as `build_engine`, built by the trtexec binary (no TensorRT Python module needed)."""
    if precision not in ENGINE_TOLERANCE:
        raise ValueError(f"precision must be FP16 or FP32, got {precision!r}")
    exe = find_trtexec(trtexec)
    with tempfile.TemporaryDirectory(prefix="videogan-trtexec-") as folder:
        onnx_path, plan_path = os.path.join(folder, "model.onnx"), os.path.join(folder, "model.plan")
        with open(onnx_path, "wb") as fh:
            fh.write(onnx_bytes)
        cmd = trtexec_command(exe, onnx_path, plan_path, inputs, precision=precision, max_batch=max_batch,
                              opt_batch=opt_batch, min_batch=min_batch, workspace_mib=workspace_mib)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not os.path.isfile(plan_path):
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
            raise TensorRTError(f"trtexec failed (exit {result.returncode}): {' '.join(cmd)}\n{tail}")
        with open(plan_path, "rb") as fh:
            return fh.read()


def tensorrt_python_available() -> bool:
    try:
        require_tensorrt()
    except TensorRTUnavailable:
        return False
    return True


def _deserialize(trt, engine_bytes: bytes):
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise TensorRTError("TensorRT could not deserialize the engine (built for another GPU or TensorRT version?)")
    return engine


def engine_io(engine_bytes: bytes) -> dict[str, dict]:
    """{tensor name: {mode: INPUT/OUTPUT, dtype: FP32/UINT8/..., shape: [-1, ...]}} of an engine."""
    trt = require_tensorrt()
    engine = _deserialize(trt, engine_bytes)
    out = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "INPUT" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "OUTPUT"
        dtype = _TRT_DTYPES.get(engine.get_tensor_dtype(name).name, engine.get_tensor_dtype(name).name)
        out[name] = {"mode": mode, "dtype": dtype, "shape": [int(d) for d in engine.get_tensor_shape(name)]}
    return out


def run_engine(engine_bytes: bytes, feeds: dict[str, np.ndarray], output_names: list[str], engine=None):
    """Run an engine once on numpy `feeds` (torch CUDA tensors as device buffers)."""
    trt = require_tensorrt()
    import torch  # noqa: PLC0415

    engine = engine or _deserialize(trt, engine_bytes)
    context = engine.create_execution_context()
    keep = []
    for name, array in feeds.items():
        tensor = torch.from_numpy(np.ascontiguousarray(array)).cuda()
        keep.append(tensor)
        if not context.set_input_shape(name, tuple(array.shape)):
            raise TensorRTError(f"engine refuses shape {list(array.shape)} for input '{name}' (outside its profile?)")
        context.set_tensor_address(name, tensor.data_ptr())
    outputs = {}
    for name in output_names:
        shape = tuple(context.get_tensor_shape(name))
        dtype = torch.from_numpy(np.zeros(0, trt.nptype(engine.get_tensor_dtype(name)))).dtype
        tensor = torch.empty(shape, dtype=dtype, device="cuda")
        outputs[name] = tensor
        context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.current_stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise TensorRTError("TensorRT execution failed")
    stream.synchronize()
    return {name: tensor.cpu().numpy() for name, tensor in outputs.items()}


def engine_parity(engine_bytes: bytes, spec: GraphSpec, *, name: str, precision: str, batches,
                  seed: int = 0) -> dict:
    """The engine against PyTorch on the parity inputs; report, or ParityError."""
    trt = require_tensorrt()
    tolerance = ENGINE_TOLERANCE[precision]
    engine = _deserialize(trt, engine_bytes)
    collector = _Collector(tolerance, batches)
    for batch in batches:
        rng = np.random.default_rng([seed, batch])
        feeds = spec.make_inputs(batch, rng)
        reference = spec.reference(feeds)
        got = run_engine(engine_bytes, feeds, spec.output_names, engine=engine)
        for out_name in spec.output_names:
            collector.add(batch, out_name, got[out_name], reference[out_name])
    return _refuse(f"{name} TensorRT {precision} engine", collector, f"{spec.kind} TensorRT {precision} engine vs PyTorch",
                   f"TensorRT {precision}", f"TensorRT {trt.__version__} {precision}")


def gpu_description() -> dict:
    try:
        import torch  # noqa: PLC0415

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
                    "cuda": torch.version.cuda}
    except Exception:  # pragma: no cover
        pass
    return {}
