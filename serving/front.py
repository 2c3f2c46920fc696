"""The fronts between clients and the embedded Triton 2.51: what reaches tritonserver is checked first.

tritonserver listens on loopback ports that answer nothing without a key: health, metadata
and inference are restricted to a key only the fronts hold, the admin APIs
(``serving.server.ADMIN_APIS``) to the admin key. Clients talk to the fronts, which add the
front key to what they forward:

- :class:`GrpcFront` passes every gRPC call through unchanged (bytes in, bytes out, headers
  forwarded) and refuses a message larger than the largest valid request of the repository
  (Triton 2.51 takes messages up to 2 GiB and has no option to lower that). A ``ModelConfig``
  call without the admin key gets the public part of the config (name, platform, backend,
  max_batch_size, inputs, outputs: what a client needs to size its batches).
- :class:`HttpFront` (only with ``--http``) serves KServe v2 HTTP/JSON and the binary tensor
  extension. An inference request is checked against the model (datatype, rank, dims, batch
  <= max_batch_size, every input present, none extra, requested outputs known and distinct) and against the data it carries
  (values or ``binary_data_size`` against the declared shape, Content-Length against the
  largest valid request) before it is forwarded, because Triton 2.51's HTTP front end
  allocates from the declared shape before it validates: one request declaring
  ``[100000000, 128]`` with a single value aborts the whole server (``std::bad_alloc``;
  upstream added ``--http-max-input-size`` in 2.59). ``generate`` is not offered.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.client
import http.server
import json
import math
import re
import threading
import urllib.parse

import grpc
from google.protobuf import json_format
from tritonclient.grpc import service_pb2

__all__ = ["GrpcFront", "HttpFront", "ModelLimits", "Refused", "check_infer_request", "model_limits"]

ITEMSIZE = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2,
            "UINT32": 4, "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}
PUBLIC_CONFIG_FIELDS = ("name", "platform", "backend", "max_batch_size", "input", "output")
OVERHEAD_BYTES = 64 * 1024          # headers, names, parameters of a request
UNBOUNDED_LIMIT = 64 * 1024 * 1024  # for a model with a variable dim or BYTES input
JSON_CHARS = {"int": 8, "float": 32}  # most characters one value takes in JSON, separators included
GRPC_SERVICE = "/inference.GRPCInferenceService/"
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/(infer|generate|generate_stream)")
CONFIG_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/[^/]+)?/config")
FORWARDED_HTTP_HEADERS = ("content-type", "inference-header-content-length", "accept")


class Refused(Exception):
    """A request the HTTP front answers itself with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------- what a model accepts
@dataclasses.dataclass(frozen=True)
class TensorLimit:
    datatype: str            # KServe name: FP32, UINT8, ...
    dims: tuple[int, ...]    # without the batch axis; -1 = any size


@dataclasses.dataclass(frozen=True)
class ModelLimits:
    name: str
    max_batch_size: int
    inputs: dict[str, TensorLimit]
    outputs: tuple[str, ...]
    public_config: dict

    def largest_request(self) -> int | None:
        """Bytes of the inputs of the largest valid request; None when a dim or datatype is unbounded."""
        total = 0
        for spec in self.inputs.values():
            if spec.datatype not in ITEMSIZE or any(d < 0 for d in spec.dims):
                return None
            total += ITEMSIZE[spec.datatype] * math.prod(spec.dims)
        return total * max(1, self.max_batch_size)

    def largest_json_request(self) -> int | None:
        """Characters of the largest valid request written as KServe JSON."""
        if self.largest_request() is None:
            return None
        chars = sum(JSON_CHARS["float" if spec.datatype.startswith(("FP", "BF")) else "int"] * math.prod(spec.dims)
                    for spec in self.inputs.values())
        return chars * max(1, self.max_batch_size)


def _kserve_datatype(config_type: str) -> str:
    name = config_type.removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def model_limits(config: dict) -> ModelLimits:
    """What a request may carry, from a model config (tritonclient's ``as_json`` form)."""
    inputs = {entry["name"]: TensorLimit(_kserve_datatype(entry.get("data_type", "")),
                                         tuple(int(d) for d in entry.get("dims", [])))
              for entry in config.get("input", [])}
    outputs = tuple(entry["name"] for entry in config.get("output", []))
    public = {key: config[key] for key in PUBLIC_CONFIG_FIELDS if key in config}
    return ModelLimits(config["name"], int(config.get("max_batch_size", 0) or 0), inputs, outputs, public)


def request_limits(models: dict[str, ModelLimits]) -> tuple[int, int]:
    """(gRPC message bytes, HTTP body bytes) that the largest valid request of any model needs.

    A gRPC request carries raw bytes, or typed contents where a UINT8 value is a varint of at
    most 2 bytes: twice the raw size covers both.
    """
    raw = [m.largest_request() for m in models.values()]
    text = [m.largest_json_request() for m in models.values()]
    if not models or None in raw:
        return UNBOUNDED_LIMIT, UNBOUNDED_LIMIT
    return 2 * max(raw) + OVERHEAD_BYTES, max(max(raw), max(text)) + OVERHEAD_BYTES


# ---------------------------------------------------------------------------- gRPC
def _forwarded_metadata(context: grpc.ServicerContext, key: tuple[str, str]) -> list[tuple[str, str]]:
    keep = [(k, v) for k, v in context.invocation_metadata()
            if not k.startswith(":") and k not in ("user-agent", "te", "content-type", "grpc-timeout") and k != key[0]]
    return keep + [key]


def _timeout(context: grpc.ServicerContext) -> float | None:
    """The caller's deadline, for the forwarded call (grpc reports "none" as ~9e18 s)."""
    remaining = context.time_remaining()
    return remaining if remaining < 1e9 else None


class GrpcFront:
    """Pass-through gRPC server on ``host:port`` (0 = a free port) in front of tritonserver's gRPC."""

    def __init__(self, host: str, port: int, max_message_bytes: int, front_key: tuple[str, str],
                 admin_header: str, workers: int = 64):
        self.max_message_bytes = int(max_message_bytes)
        self._front_key = front_key
        self._admin_header = admin_header
        self._channel: grpc.Channel | None = None
        self._models: dict[str, ModelLimits] = {}
        self._server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc-front"),
            handlers=[_GrpcHandler(self)], maximum_concurrent_rpcs=4 * workers,
            options=[("grpc.max_receive_message_length", self.max_message_bytes),
                     ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise OSError(f"cannot listen for gRPC on {host}:{port}")
        self._server.start()

    def connect(self, target: str, models: dict[str, ModelLimits]) -> None:
        """Forward to tritonserver at ``target`` (a fresh channel after each restart)."""
        self._models = dict(models)
        self._channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1),
                                                               ("grpc.max_send_message_length", -1)])

    def close(self) -> None:
        self._server.stop(grace=1.0).wait()
        if self._channel is not None:
            self._channel.close()

    def _has_admin_key(self, metadata) -> bool:
        return any(k == self._admin_header for k, _ in metadata or ())

    def _upstream(self, context: grpc.ServicerContext) -> grpc.Channel:
        if self._channel is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "tritonserver is starting")
        return self._channel

    def unary(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        call = self._upstream(context).unary_unary(method)
        try:
            return call(request, metadata=_forwarded_metadata(context, self._front_key),
                        timeout=_timeout(context))
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")

    def stream(self, requests, context: grpc.ServicerContext):
        responses = self._upstream(context).stream_stream(GRPC_SERVICE + "ModelStreamInfer")(
            requests, metadata=_forwarded_metadata(context, self._front_key), timeout=_timeout(context))
        context.add_callback(responses.cancel)
        try:
            yield from responses
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details() or "")

    def public_config(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            name = service_pb2.ModelConfigRequest.FromString(request).name
        except Exception:  # noqa: BLE001 - any undecodable request
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed ModelConfigRequest")
        model = self._models.get(name)
        if model is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Request for unknown model: '{name}' is not found")
        response = json_format.ParseDict({"config": model.public_config}, service_pb2.ModelConfigResponse())
        return response.SerializeToString()


class _GrpcHandler(grpc.GenericRpcHandler):
    def __init__(self, front: GrpcFront):
        self.front = front

    def service(self, details):
        if details.method == GRPC_SERVICE + "ModelStreamInfer":
            return grpc.stream_stream_rpc_method_handler(self.front.stream)
        if details.method == GRPC_SERVICE + "ModelConfig" and not self.front._has_admin_key(details.invocation_metadata):
            return grpc.unary_unary_rpc_method_handler(self.front.public_config)
        method = details.method
        return grpc.unary_unary_rpc_method_handler(lambda request, context: self.front.unary(method, request, context))


# ---------------------------------------------------------------------------- HTTP: checking a request
def _parse_json(text: bytes):
    def no_constant(name):
        raise ValueError(f"{name} is not JSON (send non-finite values with the binary extension)")

    try:
        return json.loads(text.decode("utf-8"), parse_constant=no_constant)
    except UnicodeDecodeError as exc:
        raise Refused(400, f"the request header is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise Refused(400, "the request JSON is nested too deeply") from None
    except ValueError as exc:
        raise Refused(400, f"the request is not valid JSON: {exc}") from None


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise Refused(400, f"Inference-Header-Content-Length {header_length!r} is not a number") from None
    if not 0 < length <= len(body):
        raise Refused(400, f"Inference-Header-Content-Length {length} is outside the body of {len(body)} bytes")
    return body[:length], body[length:]


def _check_shape(model: ModelLimits, name: str, shape, spec: TensorLimit) -> None:
    expected = ([-1] if model.max_batch_size else []) + list(spec.dims)
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        raise Refused(400, f"input '{name}': shape must be a list of integers, got {str(shape)[:80]}")
    if len(shape) != len(expected) or any(e >= 0 and d != e for d, e in zip(shape, expected)):
        raise Refused(400, f"input '{name}' has shape {shape}; model '{model.name}' expects {expected}")
    if any(d < 1 for d in shape):
        raise Refused(400, f"input '{name}' has shape {shape}; every dimension must be >= 1")
    if model.max_batch_size and shape[0] > model.max_batch_size:
        raise Refused(400, f"input '{name}' has batch {shape[0]}; model '{model.name}' takes at most "
                           f"max_batch_size {model.max_batch_size}")


def _count_values(name: str, data, datatype: str, limit: int) -> int:
    """Leaves of a (nested) JSON ``data`` list, checked for type; stops counting past ``limit``."""
    count, stack = 0, [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if datatype == "BOOL":
            fits = isinstance(item, bool)
        elif datatype == "BYTES":
            fits = isinstance(item, str)
        else:
            fits = isinstance(item, (int, float)) and not isinstance(item, bool)
        if not fits:
            raise Refused(400, f"input '{name}': {str(item)[:40]!r} is not a {datatype} value")
        count += 1
        if count > limit:
            break
    return count


def _check_outputs(model: ModelLimits, outputs) -> None:
    """Requested outputs: each of the model's outputs at most once (Triton has crashed on huge lists)."""
    names = [o.get("name") for o in outputs if isinstance(o, dict)] if isinstance(outputs, list) else None
    if names is None or len(names) != len(outputs) or len(set(names)) != len(names) or not set(names) <= set(model.outputs):
        raise Refused(400, f"'outputs' may name each output of model '{model.name}' ({', '.join(model.outputs)}) "
                           "at most once")


def check_infer_request(model: ModelLimits, body: bytes, header_length: str | None) -> None:
    """Raise :class:`Refused` unless ``body`` is an inference request ``model`` can take."""
    header, binary = _split_body(body, header_length)
    request = _parse_json(header)
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise Refused(400, "the request needs a non-empty 'inputs' list")
    seen: set[str] = set()
    batches: set[int] = set()
    binary_bytes = 0
    for entry in request["inputs"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise Refused(400, "every input needs a 'name' string")
        name, params = entry["name"], entry.get("parameters") or {}
        if name not in model.inputs:
            raise Refused(400, f"model '{model.name}' has no input '{name[:64]}' (its inputs: {', '.join(model.inputs)})")
        if name in seen:
            raise Refused(400, f"input '{name}' appears twice")
        seen.add(name)
        spec = model.inputs[name]
        if entry.get("datatype") != spec.datatype:
            raise Refused(400, f"input '{name}' has datatype {str(entry.get('datatype'))[:16]}; model "
                               f"'{model.name}' expects {spec.datatype}")
        shape = entry.get("shape")
        _check_shape(model, name, shape, spec)
        if model.max_batch_size:
            batches.add(shape[0])
        count = math.prod(shape)
        if not isinstance(params, dict) or "shared_memory_region" in params:
            raise Refused(400, f"input '{name}': shared memory is not offered (send the data in the request)")
        if "binary_data_size" in params:
            size, needed = params["binary_data_size"], count * ITEMSIZE.get(spec.datatype, 0)
            if type(size) is not int or size != needed or "data" in entry:
                raise Refused(400, f"input '{name}' declares binary_data_size {str(size)[:20]}; shape {shape} of "
                                   f"{spec.datatype} is {needed} bytes (and no 'data' beside it)")
            binary_bytes += size
        elif "data" not in entry:
            raise Refused(400, f"input '{name}' carries no data (neither 'data' nor binary_data_size)")
        else:
            carried = _count_values(name, entry["data"], spec.datatype, count)
            if carried != count:
                raise Refused(400, f"input '{name}' declares shape {shape} ({count} values) but carries "
                                   f"{'more' if carried > count else carried}")
    missing = [n for n in model.inputs if n not in seen]
    if missing:
        raise Refused(400, f"model '{model.name}' needs input(s) {', '.join(missing)}")
    if len(batches) > 1:
        raise Refused(400, f"the inputs have different batch sizes {sorted(batches)}")
    _check_outputs(model, request.get("outputs", []))
    if binary_bytes != len(binary):
        raise Refused(400, f"the body carries {len(binary)} bytes after the JSON header; the inputs "
                           f"declare {binary_bytes}")


# ---------------------------------------------------------------------------- HTTP: the server
class HttpFront:
    """Checking HTTP server on ``host:port`` (0 = a free port) in front of tritonserver's HTTP."""

    def __init__(self, host: str, port: int, max_body_bytes: int, front_key: tuple[str, str],
                 admin_header: str, timeout: float = 30.0):
        self.max_body_bytes = int(max_body_bytes)
        self.front_key = front_key
        self.admin_header = admin_header
        self.timeout = timeout
        self.target: tuple[str, int] | None = None
        self.models: dict[str, ModelLimits] = {}
        handler = type("Handler", (_HttpHandler,), {"front": self, "timeout": timeout})
        self._server = http.server.ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-front", daemon=True)
        self._thread.start()

    def connect(self, target: str, models: dict[str, ModelLimits]) -> None:
        host, port = target.rsplit(":", 1)
        self.target, self.models = (host, int(port)), dict(models)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, method: str, target: str, headers, body: bytes) -> tuple[int, dict, bytes]:
        """Check one request and forward it, or refuse it: (status, headers, body)."""
        path = urllib.parse.urlsplit(target).path
        infer = INFER_PATH.fullmatch(path)
        if infer:
            model = self._model(infer.group(1))
            if infer.group(3) != "infer":
                raise Refused(404, f"{infer.group(3)} is not offered here; use infer")
            if method != "POST":
                raise Refused(405, "inference takes POST")
            check_infer_request(model, body, headers.get("Inference-Header-Content-Length"))
        config = CONFIG_PATH.fullmatch(path)
        if config and self.admin_header not in {k.lower() for k in headers.keys()}:
            return 200, {"Content-Type": "application/json"}, json.dumps(self._model(config.group(1)).public_config).encode()
        return self._forward(method, target, headers, body)

    def _model(self, quoted: str) -> ModelLimits:
        try:
            name = urllib.parse.unquote(quoted, errors="strict")
        except UnicodeDecodeError:
            raise Refused(400, "the model name in the path is not UTF-8") from None
        if name not in self.models:
            raise Refused(404, f"unknown model '{name[:64]}'")
        return self.models[name]

    def _forward(self, method: str, target: str, headers, body: bytes) -> tuple[int, dict, bytes]:
        forwarded = {k: v for k, v in headers.items() if k.lower() in FORWARDED_HTTP_HEADERS + (self.admin_header,)}
        forwarded[self.front_key[0]] = self.front_key[1]
        forwarded["Content-Length"] = str(len(body))
        connection = http.client.HTTPConnection(*self.target, timeout=max(self.timeout, 300.0))
        try:
            connection.request(method, target, body=body, headers=forwarded)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            raise Refused(503, "tritonserver is not answering (it may be restarting); retry") from None
        finally:
            connection.close()
        kept = {k: v for k, v in response.getheaders() if k.lower() in ("content-type", "inference-header-content-length")}
        return response.status, kept, data


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version, sys_version = "videogan-front", ""
    front: HttpFront

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet: tritonserver logs requests
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise Refused(411, "chunked bodies are not accepted; send Content-Length")
        if self.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise Refused(415, "compressed request bodies are not accepted")
        text = self.headers.get("Content-Length", "0")
        if not text.isdigit():
            raise Refused(400, f"Content-Length {text[:20]!r} is not a number")
        length = int(text)
        if length > self.front.max_body_bytes:
            raise Refused(413, f"the body of {length} bytes is over {self.front.max_body_bytes}, more than the "
                               "largest valid request of any model needs")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise Refused(408, f"the body did not arrive within {self.front.timeout:.0f} s") from None
        if len(body) < length:
            raise Refused(400, f"the body ended after {len(body)} of {length} bytes")
        return body

    def _handle(self, method: str) -> None:
        try:
            body = self._read_body()
        except Refused as exc:  # the rest of the body, if any, is not read: close the connection
            self.close_connection = True
            return self._reply(*_refusal(exc))
        try:
            reply = self.front.answer(method, self.path, self.headers, body)
        except Refused as exc:
            reply = _refusal(exc)
        self._reply(*reply)

    def _reply(self, status: int, headers: dict, data: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def _refusal(exc: Refused) -> tuple[int, dict, bytes]:
    return exc.status, {"Content-Type": "application/json"}, json.dumps({"error": str(exc)}).encode()
