"""Talking to a Triton server over gRPC: connection, model metadata, retries with backoff.

Only ``tritonclient[grpc]`` and numpy. A :class:`Connection` retries calls that fail because
the server is unreachable or busy (gRPC ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``,
``RESOURCE_EXHAUSTED``) with exponential backoff (``backoff * 2**attempt`` seconds, capped
at ``max_backoff``, up to ``retries`` retries) and raises :class:`ServerUnavailable` when
they run out. Any other error (a malformed request, an unknown model, NaN latents refused by
the model, an API the server keeps behind a key) is raised at once as :class:`RequestError`
with the server's message.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from typing import Callable, Mapping, Sequence, TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

__all__ = [
    "Connection",
    "ModelInfo",
    "RequestError",
    "ServerUnavailable",
    "TensorSpec",
    "TritonClientError",
    "normalize_url",
]

RETRIABLE = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED"}
# Triton answers an API restricted to a key with UNAVAILABLE: permanent, not worth retrying.
RESTRICTED = "This protocol is restricted"
_REQUEST_ID = re.compile(r"^\[request id: [^\]]*\]\s*")

T = TypeVar("T")


class TritonClientError(RuntimeError):
    """Base of the errors raised by this module."""

    def __init__(self, message: str, status: str | None = None, url: str | None = None):
        super().__init__(message)
        self.status = status
        self.url = url


class ServerUnavailable(TritonClientError):
    """The server could not be reached (or stayed busy) through every retry."""


class RequestError(TritonClientError):
    """The server refused the request; retrying the same request would not help."""


def normalize_url(url: str) -> str:
    """``grpc://host:port`` or ``host:port`` -> ``host:port`` (default port 8001)."""
    url = url.strip()
    for prefix in ("grpc://", "grpcs://", "http://", "https://"):
        if url.startswith(prefix):
            url = url[len(prefix):]
    url = url.rstrip("/")
    if ":" not in url.rsplit("]", 1)[-1]:
        url += ":8001"
    return url


def _message(exc: InferenceServerException) -> str:
    return _REQUEST_ID.sub("", exc.message() or str(exc))


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str          # Triton name: FP32, UINT8, ...
    shape: tuple[int, ...]  # with -1 for the batch axis when the model batches

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(triton_to_np_dtype(self.datatype))


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a client needs to know about a served model, read from its metadata and config."""

    name: str
    platform: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    max_batch_size: int

    def feature_dim(self, name: str) -> int:
        """The size of a ``[-1, D]`` input (e.g. ``z_a`` -> Da)."""
        spec = self.inputs[name]
        if len(spec.shape) != 2:
            raise TritonClientError(f"model {self.name}: input '{name}' has shape {list(spec.shape)}, expected [-1, D]")
        return int(spec.shape[1])

    def video_shape(self, where: str = "output", name: str = "video") -> tuple[int, int, int]:
        """``(T, H, W)`` of the ``video`` input or output (UINT8 [-1, T, H, W, 3])."""
        specs = self.outputs if where == "output" else self.inputs
        if name not in specs:
            raise TritonClientError(
                f"model {self.name} has no {where} '{name}' (its {where}s: {', '.join(specs) or 'none'})")
        shape = specs[name].shape
        if len(shape) != 5 or shape[-1] != 3 or any(int(d) <= 0 for d in shape[1:]):
            raise TritonClientError(
                f"model {self.name}: {where} '{name}' has shape {list(shape)}, expected [-1, T, H, W, 3]")
        return int(shape[1]), int(shape[2]), int(shape[3])

    def video_output(self) -> str:
        """Name of the model's video output: ``video`` if present, else its only UINT8 [-1, T, H, W, 3]
        output (a reconstruct ensemble cannot reuse its input's name ``video`` for its output)."""
        if "video" in self.outputs:
            return "video"
        videos = [n for n, s in self.outputs.items() if s.datatype == "UINT8" and len(s.shape) == 5]
        if len(videos) != 1:
            raise TritonClientError(
                f"model {self.name} has {'no' if not videos else 'several'} UINT8 [-1, T, H, W, 3] output "
                f"(its outputs: {', '.join(self.outputs) or 'none'})")
        return videos[0]

    def require_inputs(self, names: Sequence[str]) -> None:
        missing = [n for n in names if n not in self.inputs]
        if missing:
            raise TritonClientError(
                f"model {self.name} has no input {', '.join(repr(m) for m in missing)} "
                f"(its inputs: {', '.join(self.inputs)}); is it the right model for this tool?")


class Connection:
    """A gRPC client for one server (``host:port``) with retries and backoff.

    Not shared between threads: give each worker thread its own Connection.
    """

    def __init__(
        self,
        url: str,
        *,
        retries: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.timeout = timeout
        self.log = log if log is not None else (lambda msg: print(msg, file=sys.stderr))
        self.client = grpcclient.InferenceServerClient(self.url)
        self._info: dict[str, ModelInfo] = {}

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with retries on transient gRPC errors (see the module docstring)."""
        attempt = 0
        while True:
            try:
                return fn()
            except InferenceServerException as exc:
                status = str(exc.status()) if exc.status() is not None else None
                message = _message(exc)
                if status not in RETRIABLE or RESTRICTED in message:
                    raise RequestError(f"{what} on {self.url} failed: {message}", status, self.url) from exc
                if attempt >= self.retries:
                    raise ServerUnavailable(
                        f"{what}: server {self.url} unavailable after {attempt + 1} attempts: {message}",
                        status, self.url) from exc
                delay = min(self.max_backoff, self.backoff * (2 ** attempt))
                self.log(f"{what}: {self.url} {status.split('.')[-1].lower()} ({message}); "
                         f"retry {attempt + 1}/{self.retries} in {delay:.1f} s")
                time.sleep(delay)
                attempt += 1

    def wait_ready(self, model: str | None = None) -> None:
        """Block (with the retry policy) until the server, and ``model`` if given, is ready."""
        def check():
            if not self.client.is_server_ready():
                raise InferenceServerException("server not ready", status="StatusCode.UNAVAILABLE")
            if model is not None and not self.client.is_model_ready(model):
                raise InferenceServerException(f"model {model} not ready", status="StatusCode.UNAVAILABLE")
            return True

        self.call("waiting for the server", check)

    def model_info(self, model: str) -> ModelInfo:
        """Inputs, outputs and max batch size of ``model`` (cached)."""
        if model not in self._info:
            meta = self.call(f"metadata of {model}", lambda: self.client.get_model_metadata(model, as_json=True))
            try:
                config = self.call(f"config of {model}", lambda: self.client.get_model_config(model, as_json=True))
                config = config.get("config", config)
            except RequestError as exc:
                if RESTRICTED not in str(exc):
                    raise
                config = {}  # the server keeps model configs behind a key: max_batch_size unknown (0)

            def specs(entries):
                return {e["name"]: TensorSpec(e["name"], e["datatype"], tuple(int(d) for d in e["shape"]))
                        for e in entries or []}

            self._info[model] = ModelInfo(
                name=model,
                platform=meta.get("platform", ""),
                inputs=specs(meta.get("inputs")),
                outputs=specs(meta.get("outputs")),
                max_batch_size=int(config.get("max_batch_size", 0) or 0),
            )
        return self._info[model]

    def infer(self, model: str, inputs: Mapping[str, np.ndarray],
              outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """One inference request; returns ``{output name: array}`` (all outputs by default)."""
        infer_inputs = []
        for name, array in inputs.items():
            array = np.ascontiguousarray(array)
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            infer_inputs.append(tensor)
        if outputs is None:
            outputs = list(self.model_info(model).outputs)
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        kwargs = {"client_timeout": self.timeout} if self.timeout else {}
        result = self.call(f"inference on {model}",
                           lambda: self.client.infer(model, infer_inputs, outputs=requested, **kwargs))
        out = {}
        for name in outputs:
            array = result.as_numpy(name)
            if array is None:
                raise RequestError(f"inference on {model} on {self.url}: the response has no output '{name}'",
                                   None, self.url)
            out[name] = array
        return out
