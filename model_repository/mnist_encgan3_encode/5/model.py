"""videogan: one exported graph served by Triton's python backend with ONNX Runtime (CPU).

Written by `python -m export --target cpu` into <model>/<version>/ beside `model.onnx`, the
same graph the GPU target serves with Triton's onnxruntime backend. It:

- runs the graph with ONNX Runtime (CPU provider, ORT_ENABLE_ALL, no memory pattern: batch
  sizes vary) through a ShardedSession: a batch of at least two videos is cut into one shard
  per core and the shards run side by side, each on one thread, in one session (ORT runs
  concurrent calls of a session safely); a single video runs on all cores at once. On 2 cores
  this was 1.08x the throughput of one session with 2 intra-op threads (G3AN paper64, batch 8:
  one op's threads wait for each other at every op, two shards do not; see BENCHMARKS.md).
  Config parameters: ORT_BATCH_SHARDS ("auto" = the cores this process may use, at most 4;
  "1" = no sharding: one session.run on ORT_INTRA_OP_THREADS threads, "auto" likewise),
  ORT_INTER_OP_THREADS (default 1), ONNX_FILE (default model.onnx);
- checks every request of a dynamic batch (dtype, shape, equal batch sizes, finite floats,
  one-hot labels) and answers a bad one with a pb_utils.TritonError (INVALID_ARG) while the
  other requests of the batch are served;
- runs all valid requests of the batch in ONE session.run and splits the outputs per request,
  keeping the video uint8 as the graph returns it;
- never raises out of execute(): an ONNX Runtime failure becomes an error response.
"""
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton: serving.bench times ShardedSession exactly as served
    pb_utils = None


class RequestInvalid(ValueError):
    pass


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


class ShardedSession:
    """ONNX Runtime on `shards` cores for a batch of videos, with the same outputs as one
    session.run on the whole batch (each video's computation is independent of the others).

    Batches of at least two videos are split into up to `shards` nearly equal parts that run
    concurrently, each on one thread (a session with one intra-op thread runs a call on the
    calling thread); a one-video batch runs on a second session with `shards` intra-op threads.
    shards=1 is plain ONNX Runtime: one session with `intra` threads."""

    def __init__(self, path, shards=1, intra=1, inter=1):
        import onnxruntime as ort

        def session(threads):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = inter
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Dynamic batching varies the batch size: a memory pattern (planned per input shape, kept beside
            # the arena) made every new size run slow twice and doubled the RSS (G3AN paper64, batch 32:
            # 13.0 -> 6.5 GB).
            options.enable_mem_pattern = False
            return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])

        self.shards = max(1, int(shards))
        if self.shards == 1:
            self.whole = session(max(1, int(intra)))
            self.narrow, self.pool = None, None
        else:
            self.whole = session(self.shards)
            self.narrow = session(1)
            self.pool = ThreadPoolExecutor(self.shards, thread_name_prefix="ort-shard")

    def get_inputs(self):
        return self.whole.get_inputs()

    def get_outputs(self):
        return self.whole.get_outputs()

    def run(self, output_names, feed):
        batch = len(next(iter(feed.values())))
        if self.narrow is None or batch < 2:
            return self.whole.run(output_names, feed)
        bounds = np.linspace(0, batch, min(self.shards, batch) + 1).astype(int)
        parts = [self.pool.submit(self.narrow.run, output_names,
                                  {name: np.ascontiguousarray(value[a:b]) for name, value in feed.items()})
                 for a, b in zip(bounds[:-1], bounds[1:])]
        results = [part.result() for part in parts]
        return [np.concatenate(outs) for outs in zip(*results)]

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.whole = self.narrow = self.pool = None


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

        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        intra = _threads(_param(config, "ORT_INTRA_OP_THREADS", "auto"), max(1, min(4, cores)))
        inter = _threads(_param(config, "ORT_INTER_OP_THREADS", "1"), 1)
        shards = _threads(_param(config, "ORT_BATCH_SHARDS", "auto"), max(1, min(4, cores)))
        filename = _param(config, "ONNX_FILE", "model.onnx")
        path = os.path.join(args["model_repository"], str(args["model_version"]), filename)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.name}: no ONNX graph at {path}")

        self.session = ShardedSession(path, shards=shards, intra=intra, inter=inter)
        self.threads = (intra, inter, shards)

        graph_inputs = {i.name for i in self.session.get_inputs()}
        graph_outputs = {o.name for o in self.session.get_outputs()}
        missing = [n for n, _, _ in self.inputs if n not in graph_inputs] + \
                  [n for n, _, _ in self.outputs if n not in graph_outputs]
        if missing or len(graph_inputs) != len(self.inputs):
            raise pb_utils.TritonModelException(
                f"{self.name}: config.pbtxt and {filename} disagree: config inputs "
                f"{[n for n, _, _ in self.inputs]}, outputs {[n for n, _, _ in self.outputs]}; graph inputs "
                f"{sorted(graph_inputs)}, outputs {sorted(graph_outputs)}")
        self.output_names = [n for n, _, _ in self.outputs]

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
                error = _error(f"{self.name}: ONNX Runtime failed on a batch of {total}: {exc}", "INTERNAL")
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
