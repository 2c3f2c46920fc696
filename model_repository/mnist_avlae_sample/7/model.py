"""videogan: one exported graph served by Triton's python backend on the CPU, with OpenVINO or ONNX Runtime.

Written by `python -m export --target cpu` into <model>/<version>/ beside `model.onnx` (the same
graph the GPU target serves with Triton's onnxruntime backend) and `runtime.json`, which says
how THIS version passed the export's parity gate and so how it must run:
{"runtime": "openvino" | "onnxruntime", "precision": "fp32" | "bf16"} (bf16: OpenVINO only).
A version folder without runtime.json runs with ONNX Runtime in FP32. This file:

- runs the graph through a session whose run(output_names, feed) cuts a batch of at least two
  videos into one shard per core and runs the shards side by side, each on one thread (a
  one-video batch runs on all cores at once). Every video's computation is independent of the
  others, so the outputs are those of one call on the whole batch (tests check it). On 2 cores
  this was 1.08x one ONNX Runtime session with 2 threads (G3AN paper64, batch 8: the threads of
  one op wait for each other at every op, two shards do not; see BENCHMARKS.md);
- OpenVINO (`OpenVINOSession`): the graph is compiled once per model instance, twice in fact
  (one stream on OV_THREADS threads for single videos, one stream per shard for the rest), with
  INFERENCE_PRECISION_HINT f32, or bf16 when the version was gated for bf16 (OpenVINO picks
  bf16 by itself on AMX CPUs unless told f32). Compile cache: OpenVINO keys its cache blobs of
  a model read from a file by the file's path, not its contents (a changed graph at the same
  path loaded the old blob), so the cache folder is CACHE/<sha256 of model.onnx>/, CACHE being
  config parameter OV_CACHE_DIR: "auto" (default) = $VIDEOGAN_OV_CACHE_DIR, else
  $XDG_CACHE_HOME/videogan/openvino, else ~/.cache/videogan/openvino (created mode 0700: a blob
  is code the CPU runs); "off" = no cache; or a folder. Within that folder OpenVINO's own key
  covers the device, its version and the compile options. A cache that cannot be written
  is logged and skipped, never fatal. Parameters: OV_BATCH_SHARDS ("auto" = the cores this
  process may use, at most 4; "1" = no sharding), OV_THREADS (threads of the one-video model,
  which runs every batch when there is no sharding; "auto" = those cores). Start-up: the first
  start compiles (AVLAE tiny, 3 graphs: Triton ready in 9.2 s), a restart loads the blobs
  (5.1 s; ONNX Runtime 4.8 s; loaded 2-core machine, see BENCHMARKS.md);
- ONNX Runtime (`ShardedSession`): CPU provider, ORT_ENABLE_ALL, no memory pattern (batch sizes
  vary). Parameters ORT_BATCH_SHARDS (as above; "1" = one session.run on ORT_INTRA_OP_THREADS
  threads), ORT_INTRA_OP_THREADS, ORT_INTER_OP_THREADS (default 1);
- checks every request of a dynamic batch (dtype, shape, equal batch sizes, finite floats,
  one-hot labels) and answers a bad one with a pb_utils.TritonError (INVALID_ARG) while the
  other requests of the batch are served;
- runs all valid requests of the batch in ONE session.run and splits the outputs per request,
  keeping the video uint8 as the graph returns it;
- never raises out of execute(): a runtime failure becomes an error response.

Only numpy, openvino and onnxruntime are imported here (it runs inside Triton's python stub);
`bench` and the export's parity gate import this module to run a graph exactly as served.
"""
import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton: bench and the parity gate run the served sessions
    pb_utils = None

RUNTIMES = ("openvino", "onnxruntime")
PRECISIONS = {"openvino": ("fp32", "bf16"), "onnxruntime": ("fp32",)}
RUNTIME_FILE = "runtime.json"
OV_PRECISION_HINT = {"fp32": "f32", "bf16": "bf16"}
RUNTIME_LABEL = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}


class RequestInvalid(ValueError):
    pass


def _log(message):
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        logger.log_info(message)
    else:
        print(message, flush=True)


def _param(config, key, default):
    entry = (config.get("parameters") or {}).get(key)
    if isinstance(entry, dict):
        value = entry.get("string_value", "")
        return value if value != "" else default
    return default


def _threads(value, default):
    text = str(value).strip().lower()
    if text in ("", "auto", "0"):
        return default
    number = int(text)
    if number < 0:
        raise ValueError(f"thread count must be >= 0, got {value!r}")
    return number


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def shard_slices(batch, shards):
    """(start, end) of min(shards, batch) nearly equal shards of a batch."""
    bounds = np.linspace(0, batch, min(shards, batch) + 1).astype(int)
    return list(zip(bounds[:-1], bounds[1:]))


def read_runtime(version_dir):
    """(runtime, precision) of a version folder from its runtime.json (ONNX Runtime FP32 without one)."""
    path = os.path.join(version_dir, RUNTIME_FILE)
    if not os.path.isfile(path):
        return "onnxruntime", "fp32"
    with open(path) as fh:
        spec = json.load(fh)
    runtime, precision = spec.get("runtime"), spec.get("precision", "fp32")
    if runtime not in RUNTIMES or precision not in PRECISIONS[runtime]:
        raise ValueError(f"{path}: runtime {runtime!r} with precision {precision!r} is not one of "
                         f"{ {r: list(p) for r, p in PRECISIONS.items()} }")
    return runtime, precision


def ort_session_options(intra, inter=1):
    """The ONNX Runtime options of a served session (the benchmark's variants start from these)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra
    options.inter_op_num_threads = inter
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Dynamic batching varies the batch size: a memory pattern (planned per input shape, kept beside
    # the arena) made every new size run slow twice and doubled the RSS (G3AN paper64, batch 32:
    # 13.0 -> 6.5 GB).
    options.enable_mem_pattern = False
    return options


class ShardedSession:
    """ONNX Runtime on `shards` cores for a batch of videos, with the same outputs as one
    session.run on the whole batch.

    Batches of at least two videos are split into up to `shards` nearly equal parts that run
    concurrently, each on one thread (a session with one intra-op thread runs a call on the
    calling thread; ONNX Runtime runs concurrent calls of a session safely); a one-video batch
    runs on a second session with `shards` intra-op threads. shards=1 is plain ONNX Runtime:
    one session with `intra` threads. `model` is a path or the ONNX bytes."""

    def __init__(self, model, shards=1, intra=1, inter=1):
        import onnxruntime as ort

        def session(threads):
            return ort.InferenceSession(model, sess_options=ort_session_options(threads, inter),
                                        providers=["CPUExecutionProvider"])

        self.shards = max(1, int(shards))
        if self.shards == 1:
            self.whole = session(max(1, int(intra)))
            self.narrow, self.pool = None, None
        else:
            self.whole = session(self.shards)
            self.narrow = session(1)
            self.pool = ThreadPoolExecutor(self.shards, thread_name_prefix="ort-shard")
        self.input_names = [i.name for i in self.whole.get_inputs()]
        self.output_names = [o.name for o in self.whole.get_outputs()]
        self.description = f"onnxruntime CPUExecutionProvider, ORT_ENABLE_ALL, {self.shards} shard(s)"

    def run(self, output_names, feed):
        batch = len(next(iter(feed.values())))
        if self.narrow is None or batch < 2:
            return self.whole.run(output_names, feed)
        parts = [self.pool.submit(self.narrow.run, output_names,
                                  {name: np.ascontiguousarray(value[a:b]) for name, value in feed.items()})
                 for a, b in shard_slices(batch, self.shards)]
        results = [part.result() for part in parts]
        return [np.concatenate(outs) for outs in zip(*results)]

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.whole = self.narrow = self.pool = None


def default_cache_dir():
    """OV_CACHE_DIR "auto": $VIDEOGAN_OV_CACHE_DIR, else the user's cache folder."""
    if os.environ.get("VIDEOGAN_OV_CACHE_DIR"):
        return os.environ["VIDEOGAN_OV_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "videogan", "openvino")


def model_cache_dir(cache_root, model_path):
    """CACHE/<sha256 of the graph file>/, created mode 0700; None (and a log line) when it cannot be."""
    digest = hashlib.sha256()
    with open(model_path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    folder = os.path.join(cache_root, digest.hexdigest()[:32])
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as error:
        _log(f"videogan: OpenVINO compile cache {folder} is not writable ({error}); compiling without a cache")
        return None
    return folder


_CORE_LOCK = threading.Lock()


def openvino_core():
    """The process's one openvino.Core, never destroyed (kept on the openvino module, so that a
    second import of this file shares it). OpenVINO's CPU plugin gives every thread that compiles
    an alternate signal stack and frees it when the plugin is destroyed; destroyed from another
    thread (Python's garbage collector runs in any thread), it left the compiling thread with a
    dangling signal stack, and the next signal handled there (a SIGCHLD) killed the process with
    SIGSEGV (OpenVINO 2026.4.1; tests/test_export.py reproduces it in a child process)."""
    import openvino as ov

    with _CORE_LOCK:
        if getattr(ov, "_videogan_core", None) is None:
            ov._videogan_core = ov.Core()
    return ov._videogan_core


class OpenVINOSession:
    """OpenVINO (CPU) on `shards` cores for a batch of videos, with the interface and the
    sharding of ShardedSession: batches of at least two videos run as up to `shards` shards
    side by side (one stream per shard, one thread each), a one-video batch (every batch when
    shards=1) on a model compiled with one stream on `threads` threads. `model` is a path or the ONNX bytes;
    `cache_dir` (paths only) is the compile cache folder of this graph (model_cache_dir).
    run() is not re-entrant (one infer request per shard); calls are serialised by a lock."""

    def __init__(self, model, shards=1, threads=1, precision="fp32", cache_dir=None):
        import openvino as ov

        core = openvino_core()
        source = core.read_model(bytes(model)) if isinstance(model, (bytes, bytearray)) else model
        hint = OV_PRECISION_HINT[precision]
        cache = {"CACHE_DIR": cache_dir} if cache_dir else {}

        def compiled(streams, threads_):
            return core.compile_model(source, "CPU", {"INFERENCE_PRECISION_HINT": hint, "NUM_STREAMS": streams,
                                                      "INFERENCE_NUM_THREADS": threads_, **cache})

        self.shards = max(1, int(shards))
        self.whole = compiled(1, max(1, int(threads)))
        self.whole_request = self.whole.create_infer_request()
        self.narrow, self.requests, self.pool = None, [], None
        if self.shards > 1:
            self.narrow = compiled(self.shards, self.shards)
            self.requests = [self.narrow.create_infer_request() for _ in range(self.shards)]
            self.pool = ThreadPoolExecutor(self.shards, thread_name_prefix="ov-shard")
        self.lock = threading.Lock()
        self.input_names = [p.get_any_name() for p in self.whole.inputs]
        self.output_names = [p.get_any_name() for p in self.whole.outputs]
        self.precision = precision
        self.inference_precision = self.whole.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.native_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        self.from_cache = all(bool(m.get_property("LOADED_FROM_CACHE")) for m in (self.whole, self.narrow) if m)
        self.description = (f"openvino {ov.get_version().split('-')[0]} CPU, INFERENCE_PRECISION_HINT {hint} "
                            f"(compiled: {self.inference_precision}), {self.shards} shard(s)"
                            + (", loaded from the compile cache" if self.from_cache else ""))

    @staticmethod
    def _infer(request, output_names, feed):
        result = request.infer(feed)          # share_outputs=False: the arrays are copies
        return [result[name] for name in output_names]

    def run(self, output_names, feed):
        batch = len(next(iter(feed.values())))
        with self.lock:
            if self.narrow is None or batch < 2:
                return self._infer(self.whole_request, output_names, feed)
            parts = [self.pool.submit(self._infer, request, output_names,
                                      {name: np.ascontiguousarray(value[a:b]) for name, value in feed.items()})
                     for request, (a, b) in zip(self.requests, shard_slices(batch, self.shards))]
            results = [part.result() for part in parts]
        return [np.concatenate(outs) for outs in zip(*results)]

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.whole = self.narrow = self.pool = self.whole_request = None
        self.requests = []


def open_session(model, runtime="openvino", precision="fp32", shards=1, threads=1, cache_dir=None):
    """The served session for `runtime`: what model.py runs, and what the parity gate and bench time."""
    if runtime == "openvino":
        return OpenVINOSession(model, shards=shards, threads=threads, precision=precision, cache_dir=cache_dir)
    if runtime == "onnxruntime" and precision == "fp32":
        return ShardedSession(model, shards=shards, intra=threads)
    raise ValueError(f"no served session for runtime {runtime!r} at precision {precision!r}")


def _error(message, code_name="INVALID_ARG"):
    code = getattr(pb_utils.TritonError, code_name, None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_name"]
        config = json.loads(args["model_config"])
        self.max_batch_size = int(config.get("max_batch_size", 0) or 0)
        self.inputs = [(t["name"], np.dtype(pb_utils.triton_string_to_numpy(t["data_type"])),
                        [int(d) for d in t["dims"]]) for t in config["input"]]
        self.outputs = [(t["name"], np.dtype(pb_utils.triton_string_to_numpy(t["data_type"])),
                         [int(d) for d in t["dims"]]) for t in config["output"]]

        version_dir = os.path.join(args["model_repository"], str(args["model_version"]))
        filename = _param(config, "ONNX_FILE", "model.onnx")
        path = os.path.join(version_dir, filename)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.name}: no ONNX graph at {path}")
        try:
            self.runtime, self.precision = read_runtime(version_dir)
        except (OSError, ValueError) as error:
            raise pb_utils.TritonModelException(f"{self.name}: {error}") from error
        self.session = self._open(config, path)
        _log(f"{self.name}: {self.session.description}")
        if self.precision == "bf16" and not self.session.native_bf16:
            _log(f"{self.name}: gated for bf16, but OpenVINO reports no native BF16 on this CPU: it runs "
                 f"{self.session.inference_precision}")

        graph_inputs, graph_outputs = set(self.session.input_names), set(self.session.output_names)
        missing = [n for n, _, _ in self.inputs if n not in graph_inputs] + \
                  [n for n, _, _ in self.outputs if n not in graph_outputs]
        if missing or len(graph_inputs) != len(self.inputs):
            raise pb_utils.TritonModelException(
                f"{self.name}: config.pbtxt and {filename} disagree: config inputs "
                f"{[n for n, _, _ in self.inputs]}, outputs {[n for n, _, _ in self.outputs]}; graph inputs "
                f"{sorted(graph_inputs)}, outputs {sorted(graph_outputs)}")
        self.output_names = [n for n, _, _ in self.outputs]

    def _open(self, config, path):
        auto = max(1, min(4, usable_cores()))
        if self.runtime == "onnxruntime":
            intra = _threads(_param(config, "ORT_INTRA_OP_THREADS", "auto"), auto)
            inter = _threads(_param(config, "ORT_INTER_OP_THREADS", "1"), 1)
            shards = _threads(_param(config, "ORT_BATCH_SHARDS", "auto"), auto)
            return ShardedSession(path, shards=shards, intra=intra, inter=inter)
        shards = _threads(_param(config, "OV_BATCH_SHARDS", "auto"), auto)
        threads = _threads(_param(config, "OV_THREADS", "auto"), usable_cores())
        cache = _param(config, "OV_CACHE_DIR", "auto")
        cache_dir = None
        if cache.lower() != "off":
            cache_dir = model_cache_dir(default_cache_dir() if cache.lower() == "auto" else cache, path)
        return OpenVINOSession(path, shards=shards, threads=threads, precision=self.precision, cache_dir=cache_dir)

    # ------------------------------------------------------------------ validation
    def _read(self, request):
        arrays, batch = {}, None
        for name, dtype, dims in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise RequestInvalid(f"missing input '{name}'")
            array = tensor.as_numpy()
            if array.dtype != dtype:
                raise RequestInvalid(f"input '{name}' has dtype {array.dtype}, expected {dtype}")
            if array.ndim != len(dims) + 1 or list(array.shape[1:]) != dims:
                raise RequestInvalid(f"input '{name}' has shape {list(array.shape)}, expected "
                                     f"[batch, {', '.join(str(d) for d in dims)}]")
            if batch is None:
                batch = array.shape[0]
            elif array.shape[0] != batch:
                raise RequestInvalid(f"input '{name}' has batch size {array.shape[0]}, other inputs {batch}")
            if self.max_batch_size and array.shape[0] > self.max_batch_size:
                raise RequestInvalid(f"batch size {array.shape[0]} exceeds max_batch_size {self.max_batch_size}")
            if array.dtype.kind == "f":
                finite = np.isfinite(array)
                if not finite.all():
                    bad = np.argwhere(~finite)[0].tolist()
                    raise RequestInvalid(
                        f"input '{name}' has {int(finite.size - finite.sum())} non-finite value(s) (NaN or Inf), "
                        f"first at index {bad}; latents must be finite")
            if name == "label" and array.size:
                one_hot = np.isin(array, (0.0, 1.0)).all() and (array.sum(axis=1) == 1.0).all()
                if not one_hot:
                    raise RequestInvalid(
                        f"input 'label' must be one-hot rows (a single 1, zeros elsewhere, "
                        f"{dims[0]} classes); got e.g. {array[0].tolist()}")
            arrays[name] = array
        return arrays, int(batch or 0)

    # ------------------------------------------------------------------ inference
    def execute(self, requests):
        responses = [None] * len(requests)
        valid, sizes, batches = [], [], []
        for index, request in enumerate(requests):
            try:
                arrays, n = self._read(request)
            except RequestInvalid as exc:
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[], error=_error(f"{self.name}: {exc}"))
                continue
            except Exception as exc:  # never let one request take the model down
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[], error=_error(f"{self.name}: cannot read the request: {exc}", "INTERNAL"))
                continue
            valid.append(index)
            sizes.append(n)
            batches.append(arrays)

        total = sum(sizes)
        if valid and total == 0:
            results = [np.zeros([0, *dims], dtype) for _, dtype, dims in self.outputs]
        elif valid:
            feed = {name: np.ascontiguousarray(np.concatenate([b[name] for b in batches]) if len(batches) > 1
                                               else batches[0][name])
                    for name, _, _ in self.inputs}
            try:
                results = self.session.run(self.output_names, feed)
            except Exception as exc:
                error = _error(f"{self.name}: {RUNTIME_LABEL[self.runtime]} failed on a batch of {total}: {exc}", "INTERNAL")
                for index in valid:
                    responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=error)
                return responses
        start = 0
        for index, n in zip(valid, sizes):
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + n], dtype=dtype))
                       for (name, dtype, _), out in zip(self.outputs, results)]
            responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
            start += n
        return responses

    def finalize(self):
        if self.session is not None:
            self.session.close()
        self.session = None
