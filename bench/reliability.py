"""``python -m bench.reliability``: fuzz, soak and fault checks against the real supervised server.

    python -m bench.reliability [--repository model_repository] [--parts fuzz,soak,kill9,disk,training]
        [--soak-seconds 120] [--streams 32] [--kill-videos 1000] [--disk-videos 64]
        [--out RELIABILITY.md] [--json RELIABILITY.json] [--machine-note TEXT]

Starts ``python -m serving up --http`` (the bundled tritonserver behind its fronts, loopback
only, free ports) over the repository, then, each part bounded in time:

1. **fuzz**: malformed requests over gRPC, HTTP/JSON and the HTTP binary extension
   (:func:`fuzz_cases`). Each must get an error of the expected kind that names the problem,
   and after each one the same tritonserver process must still run and answer a valid request.
2. **soak**: ``--streams`` gRPC clients (a channel each, requests back to back, batch 1,
   cycling over the repository's sample and reconstruct models) for ``--soak-seconds``:
   failed requests, p50/p99 latency, RSS of tritonserver + its stubs and of the serving
   process (the fronts) at start and end.
3. **kill9**: a ``--kill-videos`` sampling job (``clients.sample``); ``kill -9`` of tritonserver
   once a tenth of the files exist; the supervisor's restart; then exactly the requested
   files, each decodable, no two alike, no temporaries, no process and no shared-memory
   region of the killed server left.
4. **disk**: a ``--disk-videos`` job into a small tmpfs that fills up (mounting needs root; the
   part says so when it cannot): a clear error, a manifest that lists only complete files,
   and a re-run after the tmpfs grows that completes.
5. **training**: ``train/run.py`` killed with -9 resumes; a truncated, a corrupt and a
   malicious ``checkpoint.pt`` are refused by ``--resume`` in one line, run nothing, and are
   left as they were.

Writes the results as JSON (``--json``) and markdown (``--out``), with the machine described.
``tests/test_reliability.py`` runs the fast parts on small settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Callable

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from clients.latents import latents_for_seeds, one_hot
from clients.triton import Connection, ModelInfo
from clients.video_io import read_frames
from bench.host import loadavg, machine_info, proc_stats, summarize, tree_stats
from serving.front import GRPC_SERVICE
from serving.server import SHM_DIR, process_group_members

ROOT = Path(__file__).resolve().parents[1]
FORMAT = "videogan-reliability/1"
PARTS = ("fuzz", "soak", "kill9", "disk", "training")
TRACEBACK = "Traceback (most recent call last)"


# ---------------------------------------------------------------------------- the server under test
class ServingUp:
    """``python -m serving up --http`` as a child process, its output lines kept in ``lines``."""

    READY = re.compile(r"^ready in [\d.]+ s: grpc (\S+), http (\S+), metrics \S+ \(tritonserver pid (\d+)\)")
    RESTARTED = re.compile(r"^restarted: ready in ([\d.]+) s \(tritonserver pid (\d+)\)")
    MODEL = re.compile(r"^  (\S+) v\S+: READY$")
    LIMIT = re.compile(r"\((?:messages|bodies) up to (\d+) bytes\)")

    def __init__(self, repository: Path, log_file: Path, timeout: float = 600.0):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving", "up", "--repository", str(repository), "--http", "--grpc-port", "0",
             "--http-port", "0", "--metrics-port", "0", "--log-file", str(log_file)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.wait_for(self.READY, timeout)
        self.grpc_url, self.http_url, self.pid = ready.group(1), ready.group(2), int(ready.group(3))
        self.wait_for(re.compile("^Ctrl-C or SIGTERM"), 30)
        self.models = [m.group(1) for m in map(self.MODEL.match, self.lines) if m]
        self.grpc_limit, self.http_limit = (int(m.group(1)) for m in map(self.LIMIT.search, self.lines) if m)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern, timeout: float, start: int = 0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                match = pattern.search(line)
                if match:
                    return match
            if self.process.poll() is not None:
                raise RuntimeError("serving up ended:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.1)
        raise TimeoutError(f"serving up printed no line like {pattern.pattern!r} in {timeout:.0f} s:\n"
                           + "\n".join(self.lines[-30:]))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> "ServingUp":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def sample_inputs(info: ModelInfo, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid inputs of a ``_sample`` model (latents from seeds, label class 0) or of a video model."""
    if "video" in info.inputs:
        T, H, W = info.video_shape("input")
        return {"video": np.random.default_rng(seed).integers(0, 256, (batch, T, H, W, 3), dtype=np.uint8)}
    z_a, z_m = latents_for_seeds(range(seed, seed + batch), info.feature_dim("z_a"), info.feature_dim("z_m"))
    inputs = {"z_a": z_a, "z_m": z_m}
    if "label" in info.inputs:
        inputs["label"] = one_hot(0, info.feature_dim("label"), batch)
    return inputs


def infer_inputs(arrays: dict[str, np.ndarray]) -> list[grpcclient.InferInput]:
    tensors = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def answers_valid_request(url: str, model: str, inputs: dict[str, np.ndarray]) -> bool:
    try:
        with grpcclient.InferenceServerClient(url) as client:
            client.infer(model, infer_inputs(inputs), client_timeout=60)
        return True
    except InferenceServerException:
        return False


# ---------------------------------------------------------------------------- fuzz: sending
def grpc_infer_request(model: str, tensors, version: str = "") -> bytes:
    """A serialized ModelInferRequest; ``tensors``: (name, datatype, shape, raw bytes) each."""
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, datatype, shape, raw in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    return request.SerializeToString()


def tensor(name: str, array: np.ndarray, datatype: str | None = None, shape=None):
    return name, datatype or np_to_triton_dtype(array.dtype), list(array.shape if shape is None else shape), array.tobytes()


def grpc_call(url: str, payload: bytes, method: str = "ModelInfer", timeout: float = 60) -> tuple[str, str]:
    """Send raw bytes as one gRPC call: (status name, message)."""
    with grpc.insecure_channel(url, options=[("grpc.max_send_message_length", -1)]) as channel:
        try:
            channel.unary_unary(GRPC_SERVICE + method)(payload, timeout=timeout)
            return "OK", ""
        except grpc.RpcError as exc:
            return exc.code().name, exc.details() or ""


def http_call(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None,
              content_length: int | None = None, timeout: float = 60) -> tuple[str, str]:
    """One raw HTTP/1.1 request (sent as given, then the write side closed): ("HTTP 400", body)."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {url}", "Connection: close"]
    if content_length is not None or body or method == "POST":
        head.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    head += [f"{key}: {value}" for key, value in (headers or {}).items()]
    host, port = url.rsplit(":", 1)
    data = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the front refused and closed before reading everything
            pass
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
    status_line, _, rest = data.partition(b"\r\n")
    parts = status_line.split()
    return (f"HTTP {parts[1].decode()}" if len(parts) > 1 else "no answer"), \
        rest.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")


def json_body(inputs: list[dict]) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


def json_input(name: str, array: np.ndarray, **fields) -> dict:
    entry = {"name": name, "datatype": np_to_triton_dtype(array.dtype), "shape": list(array.shape),
             "data": array.ravel().tolist()}
    entry.update(fields)
    return entry


def binary_body(tensors, sizes: list[int] | None = None) -> tuple[bytes, dict]:
    """KServe binary extension: JSON header + raw bytes; ``sizes`` overrides binary_data_size."""
    sizes = sizes or [len(raw) for *_, raw in tensors]
    header = json.dumps({"inputs": [{"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": size}}
                                    for (n, d, s, _), size in zip(tensors, sizes)]}).encode()
    return header + b"".join(raw for *_, raw in tensors), {
        "Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}


# ---------------------------------------------------------------------------- fuzz: the cases
@dataclasses.dataclass
class Case:
    protocol: str          # gRPC, HTTP/JSON, HTTP binary
    name: str
    sent: str              # what was sent, in words
    send: Callable[[], tuple[str, str]]
    expect: str            # status: INVALID_ARGUMENT, HTTP 400, ...
    fragment: str          # a piece of the message that names the problem (case-insensitive)


def fuzz_cases(model: str, info: ModelInfo, grpc_url: str, http_url: str, grpc_limit: int,
               http_limit: int) -> list[Case]:
    """Malformed requests for ``model`` (a ``_sample`` model; label cases when it is conditional)."""
    # Long on purpose: a table of cases (request, expected status, expected words), one per line,
    # that reads best in one place; the helpers it calls do the work.
    good = sample_inputs(info)
    names = list(good)
    mbs = info.max_batch_size
    z_a, rest = good["z_a"], {k: v for k, v in good.items() if k != "z_a"}
    Da = z_a.shape[1]
    infer_path = f"/v2/models/{model}/infer"

    def g(tensors, name=model, version=""):
        return lambda: grpc_call(grpc_url, grpc_infer_request(name, tensors, version))

    def g_with(**replaced):  # the good request with some inputs replaced (None: left out)
        arrays = {**good, **replaced}
        return [tensor(n, a) if isinstance(a, np.ndarray) else a for n, a in arrays.items() if a is not None]

    def h(body, headers=None, path=infer_path, **kw):
        return lambda: http_call(http_url, "POST", path, body, {"Content-Type": "application/json", **(headers or {})}, **kw)

    def j_with(**replaced):
        arrays = {**good, **replaced}
        return json_body([json_input(n, a) if isinstance(a, np.ndarray) else a
                          for n, a in arrays.items() if a is not None])

    batch_over = sample_inputs(info, batch=mbs + 1) if mbs else sample_inputs(info, batch=2)
    nan = z_a.copy()
    nan[0, 0] = np.nan
    inf = z_a.copy()
    inf[0, -1] = np.inf
    rest_json = [json_input(n, a) for n, a in rest.items()]
    huge = [100_000_000, Da]
    cases = [
        # ------------------------------------------------------------------ gRPC
        Case("gRPC", "wrong dtype", "z_a as FP64", g(g_with(z_a=z_a.astype(np.float64))),
             "INVALID_ARGUMENT", "expects 'FP32'"),
        Case("gRPC", "wrong rank", f"z_a shape [1, 1, {Da}]", g(g_with(z_a=tensor("z_a", z_a, shape=[1, 1, Da]))),
             "INVALID_ARGUMENT", "unexpected shape for input 'z_a'"),
        Case("gRPC", "huge declared shape, little data", f"every input with batch 100000000 and 4 bytes",
             g([(n, np_to_triton_dtype(a.dtype), [100_000_000, *a.shape[1:]], b"\0" * 4) for n, a in good.items()]),
             "INVALID_ARGUMENT", "batch-size must be <="),
        Case("gRPC", "huge inner dims, little data", "z_a shape [1, 1000000000] with 4 bytes",
             g(g_with(z_a=("z_a", "FP32", [1, 1_000_000_000], b"\0" * 4))), "INVALID_ARGUMENT", "unexpected shape"),
        Case("gRPC", "negative batch", "every input with batch -3 and no data",
             g([(n, np_to_triton_dtype(a.dtype), [-3, *a.shape[1:]], b"") for n, a in good.items()]),
             "INVALID_ARGUMENT", "batch size"),
        Case("gRPC", "negative inner dim", f"z_a shape [1, -{Da}] and no data", g(g_with(z_a=("z_a", "FP32", [1, -Da], b""))),
             "INVALID_ARGUMENT", "unexpected shape"),
        Case("gRPC", "empty batch", "every input with batch 0 and no data",
             g([(n, np_to_triton_dtype(a.dtype), [0, *a.shape[1:]], b"") for n, a in good.items()]),
             "INVALID_ARGUMENT", "byte size mismatch"),
        Case("gRPC", "byte size mismatch", f"batch 2, z_a with the bytes of one row",
             g(g_with(z_a=tensor("z_a", z_a, shape=[2, Da]), **{n: np.concatenate([a, a]) for n, a in rest.items()})),
             "INVALID_ARGUMENT", "byte size mismatch"),
        Case("gRPC", "batch over max_batch_size", f"batch {mbs + 1} (max_batch_size {mbs})",
             g([tensor(n, a) for n, a in batch_over.items()]), "INVALID_ARGUMENT", f"batch-size must be <= {mbs}"),
        Case("gRPC", "inputs of different batch sizes", "z_a batch 1, the others batch 2",
             g(g_with(**{n: np.concatenate([a, a]) for n, a in rest.items()})), "INVALID_ARGUMENT", "batch"),
        Case("gRPC", "NaN latent", "z_a[0, 0] = NaN", g(g_with(z_a=nan)), "INVALID_ARGUMENT", "non-finite"),
        Case("gRPC", "Inf latent", "z_a[0, -1] = +Inf", g(g_with(z_a=inf)), "INVALID_ARGUMENT", "non-finite"),
        Case("gRPC", "unknown model", "model 'no_such_sample'", g(g_with(), name="no_such_sample"),
             "NOT_FOUND", "unknown model"),
        Case("gRPC", "unknown version", "version 99", g(g_with(), version="99"), "NOT_FOUND", "unknown model"),
        Case("gRPC", "missing input", "no z_a", g(g_with(z_a=None)), "INVALID_ARGUMENT", "z_a"),
        Case("gRPC", "extra input", "an input 'extra' besides the right ones",
             g(g_with(extra=np.zeros((1, 3), np.float32))), "INVALID_ARGUMENT", "extra"),
        Case("gRPC", "oversized message", f"a {grpc_limit + 1024}-byte message (limit {grpc_limit})",
             lambda: grpc_call(grpc_url, grpc_infer_request(model, [("z_a", "FP32", [1, Da], b"\0" * (grpc_limit + 1024))])),
             "RESOURCE_EXHAUSTED", "larger than max"),
        Case("gRPC", "truncated message", "a valid request without its last 7 bytes",
             lambda: grpc_call(grpc_url, grpc_infer_request(model, g_with())[:-7]), "INTERNAL", "Unable to parse"),
        Case("gRPC", "invalid UTF-8 in an input name", "input name b'z_\\xff\\xfe'",
             lambda: grpc_call(grpc_url, grpc_infer_request(model, g_with(z_a=tensor("z_\x01\x02", z_a)))
                               .replace(b"z_\x01\x02", b"z_\xff\xfe")), "INTERNAL", "Unable to parse"),
        Case("gRPC", "invalid UTF-8 in the model name", "model name with bytes ff fe",
             lambda: grpc_call(grpc_url, grpc_infer_request(model[:-2] + "\x01\x02", g_with())
                               .replace((model[:-2] + "\x01\x02").encode(), model[:-2].encode() + b"\xff\xfe")),
             "INTERNAL", "Unable to parse"),
        # ------------------------------------------------------------------ HTTP/JSON
        Case("HTTP/JSON", "the issue's request", f'z_a shape {huge} with one value (aborted Triton 2.51 before)',
             h(json.dumps({"inputs": [{"name": "z_a", "shape": huge, "datatype": "FP32", "data": [1.0]}]}).encode()),
             "HTTP 400", "max_batch_size" if Da == 128 else "expects"),
        Case("HTTP/JSON", "wrong dtype", "z_a as FP64", h(j_with(z_a=z_a.astype(np.float64))), "HTTP 400", "expects FP32"),
        Case("HTTP/JSON", "wrong rank", f"z_a shape [1, 1, {Da}]", h(j_with(z_a=json_input("z_a", z_a, shape=[1, 1, Da]))),
             "HTTP 400", "expects [-1"),
        Case("HTTP/JSON", "negative dim", f"z_a shape [-3, {Da}]", h(j_with(z_a=json_input("z_a", z_a, shape=[-3, Da]))),
             "HTTP 400", ">= 1"),
        Case("HTTP/JSON", "empty batch", "every input with batch 0 and no data",
             h(json_body([{"name": n, "datatype": np_to_triton_dtype(a.dtype), "shape": [0, *a.shape[1:]], "data": []}
                          for n, a in good.items()])), "HTTP 400", ">= 1"),
        Case("HTTP/JSON", "value count mismatch", f"z_a shape [1, {Da}] with {Da - 1} values",
             h(j_with(z_a=json_input("z_a", z_a, data=z_a.ravel()[:-1].tolist()))), "HTTP 400", "carries"),
        Case("HTTP/JSON", "batch over max_batch_size", f"batch {mbs + 1}",
             h(json_body([json_input(n, a) for n, a in batch_over.items()])), "HTTP 400", "max_batch_size"),
        Case("HTTP/JSON", "NaN in JSON", "z_a with a NaN literal",
             h(j_with().replace(json.dumps(float(z_a[0, 0])).encode(), b"NaN", 1)), "HTTP 400", "NaN"),
        Case("HTTP/JSON", "strings as numbers", "z_a values as strings",
             h(j_with(z_a=json_input("z_a", z_a, data=[str(v) for v in z_a.ravel()]))), "HTTP 400", "not a FP32 value"),
        Case("HTTP/JSON", "unknown model", "model 'no_such_sample'", h(j_with(), path="/v2/models/no_such_sample/infer"),
             "HTTP 404", "unknown model"),
        Case("HTTP/JSON", "unknown version", "version 99", h(j_with(), path=f"/v2/models/{model}/versions/99/infer"),
             "HTTP 404", "unknown model"),
        Case("HTTP/JSON", "missing input", "no z_a", h(j_with(z_a=None)), "HTTP 400", "needs input(s) z_a"),
        Case("HTTP/JSON", "extra input", "an input 'extra'", h(j_with(extra=np.zeros((1, 3), np.float32))),
             "HTTP 400", "has no input 'extra'"),
        Case("HTTP/JSON", "truncated body", "Content-Length 4000, 100 bytes sent",
             h(j_with()[:100], content_length=4000), "HTTP 400", "body ended after"),
        Case("HTTP/JSON", "oversized body", f"Content-Length {http_limit + 1} (limit {http_limit})",
             h(b"{}", content_length=http_limit + 1), "HTTP 413", "over"),
        Case("HTTP/JSON", "deeply nested JSON", "data nested 100000 lists deep",
             h(json_body([{"name": "z_a", "datatype": "FP32", "shape": [1, Da], "data": []}, *rest_json])
               .replace(b'"data": []', b'"data": ' + b"[" * 100_000 + b"]" * 100_000, 1)), "HTTP 400", "nested too deeply"),
        Case("HTTP/JSON", "invalid JSON", "a body cut inside an object", h(b'{"inputs": [{"name": "z_a", '),
             "HTTP 400", "not valid JSON"),
        Case("HTTP/JSON", "invalid UTF-8 in an input name", "input name b'z_\\xff\\xfe'",
             h(j_with().replace(b'"z_a"', b'"z_\xff\xfe"', 1)), "HTTP 400", "not UTF-8"),
        Case("HTTP/JSON", "chunked body", "Transfer-Encoding: chunked",
             h(b"0\r\n\r\n", {"Transfer-Encoding": "chunked"}), "HTTP 411", "chunked"),
        Case("HTTP/JSON", "compressed body", "Content-Encoding: gzip", h(j_with(), {"Content-Encoding": "gzip"}),
             "HTTP 415", "compressed"),
        Case("HTTP/JSON", "many requested outputs", "'outputs' naming 'video' 100000 times",
             h(json.dumps({"inputs": [json_input(n, a) for n, a in good.items()],
                           "outputs": [{"name": "video"}] * 100_000}).encode()), "HTTP 400", "at most once"),
        Case("HTTP/JSON", "unknown requested output", "'outputs' naming 'nonexistent'",
             h(json.dumps({"inputs": [json_input(n, a) for n, a in good.items()],
                           "outputs": [{"name": "nonexistent"}]}).encode()), "HTTP 400", "at most once"),
        Case("HTTP/JSON", "generate endpoint", "POST .../generate (not offered)",
             h(b'{"z_a": [0]}', path=f"/v2/models/{model}/generate"), "HTTP 404", "not offered"),
    ]
    if "label" in good:
        K = good["label"].shape[1]
        soft = np.full((1, K), 1.0 / K, np.float32)
        wide = one_hot(0, K + 1)
        cases += [
            Case("gRPC", "non-one-hot label", f"label = 1/{K} everywhere", g(g_with(label=soft)),
                 "INVALID_ARGUMENT", "one-hot"),
            Case("gRPC", "label value out of range", "label with 7.0 at the class", g(g_with(label=good["label"] * 7)),
                 "INVALID_ARGUMENT", "one-hot"),
            Case("gRPC", "label class out of range", f"label one-hot over {K + 1} classes (model: {K})",
                 g(g_with(label=wide)), "INVALID_ARGUMENT", "unexpected shape for input 'label'"),
            Case("HTTP/JSON", "non-one-hot label", f"label = 1/{K} everywhere", h(j_with(label=soft)),
                 "HTTP 400", "one-hot"),
        ]
    binary = g_with()
    nan_binary = g_with(z_a=nan)
    cases += [
        Case("HTTP binary", "huge declared shape, little data", f"z_a shape {huge}, binary_data_size 4",
             lambda: http_call(http_url, "POST", infer_path, *binary_body([("z_a", "FP32", huge, b"\0" * 4), *binary[1:]])),
             "HTTP 400", "max_batch_size" if Da == 128 else "expects"),
        Case("HTTP binary", "binary_data_size mismatch", "z_a binary_data_size one row short of its shape",
             lambda: http_call(http_url, "POST", infer_path, *binary_body(
                 binary, [len(binary[0][3]) - 4] + [len(t[3]) for t in binary[1:]])), "HTTP 400", "binary_data_size"),
        Case("HTTP binary", "fewer bytes than declared", "the last 16 bytes of the binary part left out",
             lambda: http_call(http_url, "POST", infer_path, binary_body(binary)[0][:-16], binary_body(binary)[1]),
             "HTTP 400", "after the JSON header"),
        Case("HTTP binary", "header length past the body", "Inference-Header-Content-Length larger than the body",
             lambda: http_call(http_url, "POST", infer_path, binary_body(binary)[0],
                               {"Inference-Header-Content-Length": "99999999"}), "HTTP 400", "outside the body"),
        Case("HTTP binary", "header length not a number", "Inference-Header-Content-Length: abc",
             lambda: http_call(http_url, "POST", infer_path, binary_body(binary)[0],
                               {"Inference-Header-Content-Length": "abc"}), "HTTP 400", "not a number"),
        Case("HTTP binary", "NaN latent", "z_a[0, 0] = NaN as raw FP32",
             lambda: http_call(http_url, "POST", infer_path, *binary_body(nan_binary)), "HTTP 400", "non-finite"),
    ]
    return cases


def run_fuzz(up: ServingUp, model: str | None = None) -> dict:
    """Send every case; after each, the same tritonserver must run and answer a valid request."""
    with Connection(up.grpc_url, retries=2) as connection:
        model = model or pick_sample_model(up.models)
        info = connection.model_info(model)
    valid = sample_inputs(info)
    rows = []
    for case in fuzz_cases(model, info, up.grpc_url, up.http_url, up.grpc_limit, up.http_limit):
        pid = up.pid
        try:
            status, message = case.send()
        except OSError as exc:
            status, message = "no answer", f"{type(exc).__name__}: {exc}"
        message = " ".join(message.split())
        alive = running(pid) and answers_valid_request(up.grpc_url, model, valid)
        specific = status == case.expect and case.fragment.lower() in message.lower()
        rows.append({"protocol": case.protocol, "case": case.name, "sent": case.sent, "status": status,
                     "message": message[:300], "expected": f"{case.expect} ~ {case.fragment!r}",
                     "specific_error": specific, "alive_after": alive, "same_process": up.pid == pid and running(pid)})
    return {"model": model, "cases": rows, "passed": sum(r["specific_error"] and r["alive_after"] for r in rows),
            "grpc_limit_bytes": up.grpc_limit, "http_limit_bytes": up.http_limit}


def pick_sample_model(models: list[str]) -> str:
    """The first ``_sample`` model, preferring one whose name says it is conditional (g3an here)."""
    samples = [m for m in models if m.endswith("_sample")]
    if not samples:
        raise RuntimeError(f"no _sample model among {models}")
    return next((m for m in samples if "g3an" in m or "cond" in m), samples[0])


# ---------------------------------------------------------------------------- soak
def soak_models(up: ServingUp) -> dict[str, tuple[dict, dict]]:
    """Valid batch-1 inputs, and full-batch inputs for the warm-up, of every sample and reconstruct model."""
    chosen = [m for m in up.models if m.endswith(("_sample", "_reconstruct"))]
    with Connection(up.grpc_url, retries=2) as connection:
        infos = {m: connection.model_info(m) for m in chosen}
    return {m: (sample_inputs(info, seed=i), sample_inputs(info, batch=max(1, info.max_batch_size), seed=i))
            for i, (m, info) in enumerate(infos.items())}


def _soak_stream(url: str, models: dict, deadline: float, offset: int, out: dict) -> None:
    names = list(models)
    tensors = {m: infer_inputs(a) for m, a in models.items()}
    with grpcclient.InferenceServerClient(url) as client:
        k = offset
        while time.monotonic() < deadline:
            model = names[k % len(names)]
            k += 1
            t0 = time.perf_counter()
            try:
                client.infer(model, tensors[model], client_timeout=120)
                out["latencies"].append(time.perf_counter() - t0)
            except InferenceServerException as exc:
                out["failed"].append(f"{model}: {exc.status()} {exc.message()}"[:200])


def _sample_rss(pid: int, deadline: float, every: float, out: list) -> None:
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))
        out.append([round(time.monotonic() - t0), tree_stats(pid)["rss_mib"]])


def run_soak(up: ServingUp, seconds: float, streams: int, rss_every: float = 10.0) -> dict:
    """``streams`` clients back to back for ``seconds``: failures, latency, RSS at start, every
    ``rss_every`` s and at the end. Every model first runs one full batch, so that the start
    figure is a server whose batch-size-dependent buffers exist already."""
    models = soak_models(up)
    for model, (_, full) in models.items():
        answers_valid_request(up.grpc_url, model, full)
    single = {m: one for m, (one, _) in models.items()}
    start = {"server": tree_stats(up.pid), "front": proc_stats(up.process.pid), "loadavg": loadavg()}
    results = [{"latencies": [], "failed": []} for _ in range(streams)]
    rss: list = []
    deadline = time.monotonic() + seconds
    t0 = time.monotonic()
    threads = [threading.Thread(target=_soak_stream, args=(up.grpc_url, single, deadline, i, results[i]), daemon=True)
               for i in range(streams)]
    threads.append(threading.Thread(target=_sample_rss, args=(up.pid, deadline, rss_every, rss), daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 300)
    wall = time.monotonic() - t0
    end = {"server": tree_stats(up.pid), "front": proc_stats(up.process.pid), "loadavg": loadavg()}
    latencies = [x for r in results for x in r["latencies"]]
    failed = [x for r in results for x in r["failed"]]
    rss0, rss1 = start["server"]["rss_mib"], end["server"]["rss_mib"]
    return {
        "streams": streams, "seconds": round(wall, 1), "models": list(models), "batch": 1,
        "requests_ok": len(latencies), "requests_failed": len(failed), "failures_first": sorted(set(failed))[:5],
        "requests_per_s": round(len(latencies) / wall, 2) if wall else None,
        "latency_s": {k: round(v, 4) for k, v in summarize(latencies).items()} if latencies else None,
        "server_rss_mib": {"start": rss0, "end": rss1, "growth": round(rss1 - rss0, 1),
                           "growth_pct": round(100 * (rss1 - rss0) / rss0, 2) if rss0 else None,
                           "every_s": rss_every, "samples": rss},
        "front_rss_mib": {"start": (start["front"] or {}).get("rss_mib"), "end": (end["front"] or {}).get("rss_mib")},
        "server_processes": len(end["server"]["processes"]), "same_process": running(up.pid),
        "loadavg": {"start": start["loadavg"], "end": end["loadavg"]},
    }


# ---------------------------------------------------------------------------- faults: sampling jobs
def sample_command(up: ServingUp, model: str, videos: int, out: Path) -> list[str]:
    command = [sys.executable, "-m", "clients.sample", "--url", up.grpc_url, "--model", model,
               "--seeds", f"0-{videos - 1}", "--batch-size", "8", "--out", str(out), "--format", "mp4", "--no-progress"]
    with Connection(up.grpc_url, retries=2) as connection:
        if "label" in connection.model_info(model).inputs:
            command += ["--label", "0"]
    return command


def check_output(out: Path, videos: int) -> dict:
    """What a job left in ``out``: files, manifest, temporaries, decodability, duplicates."""
    files = sorted(out.glob("seed*.mp4"))
    expected = {f"seed{s:06d}.mp4" for s in range(videos)}
    manifest = {}
    manifest_error = None
    try:
        manifest = json.loads((out / "manifest.json").read_text()).get("done", {})
    except (OSError, ValueError) as exc:
        manifest_error = str(exc)
    undecodable, digests = [], []
    for path in files:
        try:
            frames, _, _ = read_frames(path)
            if frames.ndim != 4 or len(frames) == 0:
                raise ValueError(f"frames {frames.shape}")
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a finding
            undecodable.append(f"{path.name}: {exc}"[:120])
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    listed_missing = [entry.get("file") for entry in manifest.values() if not (out / entry.get("file", "")).is_file()]
    return {"files": len(files), "expected": videos, "unexpected_names": sorted({p.name for p in files} - expected)[:5],
            "missing": len(expected - {p.name for p in files}), "undecodable": undecodable[:5],
            "identical_contents": len(digests) - len(set(digests)),
            "temporaries": sorted(p.name for p in out.iterdir() if ".tmp-" in p.name),
            "manifest_entries": len(manifest), "manifest_error": manifest_error,
            "manifest_entries_without_file": listed_missing[:5]}


def old_server_leftovers(pid: int, stubs: list[int], regions: list[str]) -> dict:
    return {"processes_alive": [p for p in [pid, *stubs] if running(p)],
            "group_members": process_group_members(pid),
            "shm_regions_left": [r for r in regions if (SHM_DIR / r).exists()]}


def stub_regions(stubs: list[int]) -> list[str]:
    """Shared-memory regions of python-backend stubs (the second argument of a stub's command line)."""
    regions = []
    for pid in stubs:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        regions += [a.decode() for a in argv if a.startswith(b"triton_python_backend_shm_region_")]
    return regions


def run_kill9(up: ServingUp, model: str, videos: int, workdir: Path, timeout: float = 1800) -> dict:
    """kill -9 of tritonserver during a sampling job; the supervisor restarts it; the job ends complete."""
    out = workdir / "kill9"
    job = subprocess.Popen(sample_command(up, model, videos, out), cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while len(list(out.glob("seed*.mp4"))) < max(1, videos // 10) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    old_pid = up.pid
    stubs = [p for p in process_group_members(old_pid) if p != old_pid]
    regions = stub_regions(stubs)
    mark = len(up.lines)
    written_at_kill = len(list(out.glob("seed*.mp4")))
    os.kill(old_pid, signal.SIGKILL)
    t_kill = time.monotonic()
    restarted = up.wait_for(ServingUp.RESTARTED, 300, start=mark)
    restart_s = time.monotonic() - t_kill
    up.pid = int(restarted.group(2))
    try:
        stdout, stderr = job.communicate(timeout=max(60.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        job.kill()
        stdout, stderr = job.communicate()
    supervisor = [line[:200] for line in up.lines[mark:]]
    return {"videos": videos, "model": model, "written_when_killed": written_at_kill, "killed_pid": old_pid,
            "stubs_of_killed_server": len(stubs), "restart_seen_after_s": round(restart_s, 1),
            "new_pid": up.pid, "supervisor_log": supervisor,
            "job_exit": job.returncode, "job_retries_logged": stderr.count(" retry "),
            "job_summary": stdout.strip().splitlines()[-1:] or stderr.strip().splitlines()[-1:],
            "output": check_output(out, videos), "killed_server_leftovers": old_server_leftovers(old_pid, stubs, regions),
            "alive_after": running(up.pid)}


def _mount_tmpfs(path: Path, size: int, remount: bool = False) -> str | None:
    """Mount (or resize) a tmpfs of ``size`` bytes at ``path``; the reason when that is not possible."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"{'remount,' if remount else ''}size={size}"
    command = ["mount", "-o", options, str(path)] if remount else ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"mount exited {done.returncode}")


def run_disk_full(up: ServingUp, model: str, videos: int, workdir: Path, video_bytes: int) -> dict:
    """A job into a tmpfs that holds about a third of its files; then the tmpfs grows and the job is re-run."""
    disk = workdir / "small-disk"
    size = max(64 * 1024, video_bytes * videos // 3)
    problem = _mount_tmpfs(disk, size)
    if problem:
        return {"skipped": f"cannot mount a tmpfs here ({problem}); the part needs root"}
    out = disk / "samples"
    command = sample_command(up, model, videos, out)
    try:
        first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
        after_full = check_output(out, videos)
        problem = _mount_tmpfs(disk, size * 10, remount=True)
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
        return {"videos": videos, "tmpfs_bytes": size, "grown_to_bytes": size * 10, "grow_problem": problem,
                "first_exit": first.returncode, "first_error": _last_line(first.stderr),
                "first_traceback": TRACEBACK in first.stderr, "after_full": after_full,
                "rerun_exit": second.returncode, "rerun_summary": _last_line(second.stdout or second.stderr),
                "after_rerun": check_output(out, videos)}
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ---------------------------------------------------------------------------- faults: training
def _train(out: Path, steps: int, resume: bool, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(_train_command(out, steps, resume), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _train_command(out: Path, steps: int, resume: bool) -> list[str]:
    return [sys.executable, "train/run.py", "--model", "g3an", "--preset", "tiny", "--data", "moving-mnist",
            "--batch-size", "2", "--steps", str(steps), "--checkpoint-every", "1", "--sample-every", "0",
            "--threads", "1", "--no-progress", "--out", str(out)] + (["--resume"] if resume else [])


def _checkpoint_step(path: Path) -> int:
    code = "import sys; from train.checkpoint import read_checkpoint; print(read_checkpoint(sys.argv[1])['step'])"
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"the checkpoint after kill -9 does not load: {_last_line(done.stderr)}")
    return int(done.stdout.strip())


def _damaged_checkpoints(good: bytes, workdir: Path, marker: Path) -> dict[str, bytes]:
    """A truncated copy, a copy with zeros inside a tensor (CRC mismatch), and a malicious pickle."""
    corrupt = bytearray(good)
    copy = workdir / "good.pt"
    copy.write_bytes(good)
    with zipfile.ZipFile(copy) as archive:
        biggest = max(archive.infolist(), key=lambda info: info.file_size)
    start = biggest.header_offset + 30 + len(biggest.filename.encode()) + len(biggest.extra) + 16
    corrupt[start:start + 64] = bytes(64)
    evil = workdir / "evil.pt"
    code = ("import builtins, sys, torch\n"
            "class Payload:\n"
            "    def __reduce__(self): return (builtins.open, (sys.argv[2], 'w'))\n"
            "torch.save({'family': 'g3an', 'preset': 'tiny', 'model': {}, 'step': 0, 'x': Payload()}, sys.argv[1])\n")
    subprocess.run([sys.executable, "-c", code, str(evil), str(marker)], cwd=ROOT, check=True, capture_output=True,
                   timeout=300)
    return {"truncated (first half)": good[: len(good) // 2], "corrupt (64 zero bytes inside a tensor)": bytes(corrupt),
            "malicious (a pickled callable that creates a file)": evil.read_bytes()}


def run_training_faults(workdir: Path, timeout: float = 600) -> dict:
    """kill -9 of train/run.py, then --resume; then damaged checkpoints refused by --resume."""
    out = workdir / "training"
    checkpoint = out / "checkpoint.pt"
    job = subprocess.Popen(_train_command(out, 1000, False), cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.poll() is None:
        log = out / "losses.jsonl"
        if checkpoint.exists() and log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    job.send_signal(signal.SIGKILL)
    job.wait()
    logged = len((out / "losses.jsonl").read_text().splitlines())
    step = _checkpoint_step(checkpoint)
    temporaries = sorted(p.name for p in out.glob(".checkpoint.pt.*"))
    resumed = _train(out, step + 2, resume=True)
    result = {"killed_after_logged_steps": logged, "checkpoint_step_after_kill": step,
              "temporaries_after_kill": temporaries, "resume_exit": resumed.returncode,
              "resume_last_line": _last_line(resumed.stdout) or _last_line(resumed.stderr), "refusals": []}
    good = checkpoint.read_bytes()
    marker = workdir / "payload-ran"
    for name, data in _damaged_checkpoints(good, workdir, marker).items():
        checkpoint.write_bytes(data)
        before = hashlib.sha256(data).hexdigest()
        done = _train(out, step + 4, resume=True)
        result["refusals"].append({
            "checkpoint": name, "exit": done.returncode, "error_line": _last_line(done.stderr),
            "stderr_lines": len(done.stderr.strip().splitlines()), "traceback": TRACEBACK in done.stderr,
            "checkpoint_unchanged": hashlib.sha256(checkpoint.read_bytes()).hexdigest() == before,
            "payload_ran": marker.exists()})
        checkpoint.write_bytes(good)
    return result


# ---------------------------------------------------------------------------- one run of the command
def busy_processes(seconds: float = 2.0, min_share: float = 0.2) -> list[str]:
    """Other processes that kept at least ``min_share`` of a core busy over ``seconds``."""
    def sample() -> dict[int, float]:
        stats = (proc_stats(int(p.name)) for p in Path("/proc").glob("[0-9]*"))
        return {s["pid"]: s["cpu_s"] for s in stats if s}

    before = sample()
    time.sleep(seconds)
    busy = []
    for pid, cpu in sample().items():
        share = (cpu - before.get(pid, cpu)) / seconds
        if share >= min_share and pid != os.getpid():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            busy.append(f"{command.strip()[:110]} ({share:.0%} of a core)")
    return busy


def describe_machine(note: str) -> dict:
    return {**machine_info(), "loadavg": loadavg(), "busy_processes": busy_processes(), "note": note}


def run(args: argparse.Namespace) -> dict:
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown --parts {', '.join(sorted(unknown))} (choose from {', '.join(PARTS)})")
    workdir = Path(tempfile.mkdtemp(prefix="videogan-reliability-", dir=args.workdir))
    t0 = time.monotonic()
    result = {"format": FORMAT, "started": _dt.datetime.now().isoformat(timespec="seconds"),
              "command": shlex.join(["python", "-m", "bench.reliability", *args.argv]), "repository": str(args.repository),
              "machine": describe_machine(args.machine_note)}
    try:
        with ServingUp(Path(args.repository), workdir / "tritonserver.log") as up:
            result["server"] = {"models": up.models, "grpc_limit_bytes": up.grpc_limit, "http_limit_bytes": up.http_limit,
                                "endpoints": [line for line in up.lines if line.startswith("  ") and ":" in line]}
            model = pick_sample_model(up.models)
            if "fuzz" in parts:
                _log("fuzz ...")
                result["fuzz"] = run_fuzz(up, model)
            if "soak" in parts:
                _log(f"soak: {args.streams} streams for {args.soak_seconds:.0f} s ...")
                result["soak"] = run_soak(up, args.soak_seconds, args.streams)
            if "kill9" in parts:
                _log(f"kill -9 during a {args.kill_videos}-video job ...")
                result["kill9"] = run_kill9(up, model, args.kill_videos, workdir)
            if "disk" in parts:
                _log("disk full ...")
                sizes = [p.stat().st_size for p in (workdir / "kill9").glob("seed*.mp4")]
                result["disk"] = run_disk_full(up, model, args.disk_videos, workdir,
                                               int(np.mean(sizes)) if sizes else 16 * 1024)
            result["serving_up_exit"] = up.stop()
            result["serving_up_tail"] = up.lines[-3:]
        if "training" in parts:
            _log("training: kill -9, damaged checkpoints ...")
            result["training"] = run_training_faults(workdir)
    finally:
        result["seconds"] = round(time.monotonic() - t0, 1)
        result["machine_end"] = {"loadavg": loadavg(), "busy_processes": busy_processes()}
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def _log(message: str) -> None:
    print(f"[reliability] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- RELIABILITY.md
def _yes(value: bool) -> str:
    return "yes" if value else "**NO**"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_machine(machine: dict) -> str:
    cpu = machine.get("cpu", {})
    lines = [f"- CPU: {cpu.get('model')} — {cpu.get('logical_cpus')} logical CPUs, {cpu.get('usable_cpus')} usable, "
             f"SIMD {', '.join(cpu.get('simd_flags', []))}; {'a virtual machine (hypervisor flag set)' if cpu.get('hypervisor') else 'bare metal'}; "
             f"memory {machine.get('memory_gib', {}).get('MemTotal')} GiB; {machine.get('os')}",
             f"- load average at the start: {machine.get('loadavg')}"]
    if machine.get("busy_processes"):
        lines.append("- other processes busy at the start: " + "; ".join(f"`{p}`" for p in machine["busy_processes"]))
    if machine.get("note"):
        lines.append(f"- {machine['note']}")
    versions = machine.get("versions", {})
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "tensorrt"))
    return "\n".join(lines)


def _render_machine_end(end: dict | None) -> str:
    if not end:
        return ""
    busy = "; ".join(f"`{p}`" for p in end["busy_processes"]) or "none"
    return f"\n- at the end of the run: load average {end['loadavg']}; other processes busy: {busy}"


def render_fuzz(fuzz: dict) -> str:
    rows = fuzz["cases"]
    head = (f"{fuzz['passed']} of {len(rows)} malformed requests to `{fuzz['model']}` got the expected specific "
            f"error, and after every one the same tritonserver process answered a valid gRPC request. The fronts "
            f"let through gRPC messages up to {fuzz['grpc_limit_bytes']} bytes and HTTP bodies up to "
            f"{fuzz['http_limit_bytes']} bytes (the largest valid request of the repository, see serving/README.md).\n\n"
            "| # | protocol | case | what was sent | what came back | specific | alive after |\n"
            "|---:|---|---|---|---|---|---|\n")
    body = "".join(f"| {i} | {r['protocol']} | {_cell(r['case'])} | {_cell(r['sent'])} | `{r['status']}` "
                   f"{_cell(r['message'][:160])} | {_yes(r['specific_error'])} | {_yes(r['alive_after'] and r['same_process'])} |\n"
                   for i, r in enumerate(rows, 1))
    return head + body


def render_soak(soak: dict) -> str:
    lat = soak.get("latency_s") or {}
    rss = soak["server_rss_mib"]
    return (f"{soak['streams']} gRPC clients (one channel each, requests back to back, batch 1) for {soak['seconds']} s, "
            f"cycling over {', '.join(soak['models'])}.\n\n"
            "| requests ok | failed | requests/s | p50 latency | p99 latency | server RSS start → end (growth) | front RSS start → end |\n"
            "|---:|---:|---:|---:|---:|---|---|\n"
            f"| {soak['requests_ok']} | {soak['requests_failed']} | {soak['requests_per_s']} | "
            f"{lat.get('p50', float('nan')):.3f} s | {lat.get('p99', float('nan')):.3f} s | "
            f"{rss['start']} → {rss['end']} MiB ({rss['growth']:+} MiB, {rss['growth_pct']:+}%) | "
            f"{soak['front_rss_mib']['start']} → {soak['front_rss_mib']['end']} MiB |\n\n"
            f"Server RSS: tritonserver and its {soak['server_processes'] - 1} python-backend stubs, summed, after one "
            f"full batch of every model (start), then every {rss['every_s']:.0f} s (MiB): "
            f"{', '.join(str(v) for _, v in rss['samples'])}. Front: the "
            f"`serving up` process (the gRPC and HTTP fronts). Load average {soak['loadavg']['start']} at the start, "
            f"{soak['loadavg']['end']} at the end."
            + (f" Failures: {'; '.join(soak['failures_first'])}" if soak["failures_first"] else ""))


def render_kill9(k: dict) -> str:
    out, left = k["output"], k["killed_server_leftovers"]
    return (f"A {k['videos']}-video job (`clients.sample`, `{k['model']}`, batch 8, mp4); `kill -9` of tritonserver "
            f"(pid {k['killed_pid']}, {k['stubs_of_killed_server']} stub processes) when {k['written_when_killed']} "
            f"files existed. `serving up` printed:\n\n```\n" + "\n".join(k["supervisor_log"]) + "\n```\n\n"
            f"- restart seen {k['restart_seen_after_s']} s after the kill; the job exited {k['job_exit']} "
            f"({k['job_retries_logged']} retries logged): {' '.join(k['job_summary'])}\n"
            f"- files: {out['files']} of {out['expected']} (missing {out['missing']}, unexpected names "
            f"{out['unexpected_names'] or 'none'}), undecodable: {out['undecodable'] or 'none'}, files with identical "
            f"contents: {out['identical_contents']}, temporaries: {out['temporaries'] or 'none'}, manifest entries: "
            f"{out['manifest_entries']}\n"
            f"- left of the killed server: processes {left['processes_alive'] or 'none'}, process-group members "
            f"{left['group_members'] or 'none'}, shared-memory regions {left['shm_regions_left'] or 'none'}")


def render_disk(d: dict) -> str:
    if "skipped" in d:
        return f"Not run: {d['skipped']}."
    full, rerun = d["after_full"], d["after_rerun"]
    return (f"A {d['videos']}-video job into a {d['tmpfs_bytes'] // 1024} KiB tmpfs:\n\n"
            f"- exit {d['first_exit']}, last line: `{d['first_error']}` (traceback: {_yes(not d['first_traceback']).replace('yes', 'none')})\n"
            f"- left behind: {full['files']} files, all decodable: {_yes(not full['undecodable'])}, manifest "
            f"entries {full['manifest_entries']} (entries without a file: {full['manifest_entries_without_file'] or 'none'}), "
            f"temporaries: {full['temporaries'] or 'none'}\n"
            f"- tmpfs grown to {d['grown_to_bytes'] // 1024} KiB, the same command again: exit {d['rerun_exit']}, "
            f"`{d['rerun_summary']}`; {rerun['files']} of {rerun['expected']} files, undecodable "
            f"{rerun['undecodable'] or 'none'}, manifest entries {rerun['manifest_entries']}, temporaries "
            f"{rerun['temporaries'] or 'none'}")


def render_training(t: dict) -> str:
    head = (f"`train/run.py --model g3an --preset tiny` killed with `kill -9` after {t['killed_after_logged_steps']} "
            f"logged steps: its checkpoint.pt (step {t['checkpoint_step_after_kill']}) loads; temporaries left: "
            f"{t['temporaries_after_kill'] or 'none'}; `--resume` to step {t['checkpoint_step_after_kill'] + 2}: "
            f"exit {t['resume_exit']}, `{_cell(t['resume_last_line'])[:160]}`.\n\n"
            "Then `--resume` over a damaged checkpoint.pt:\n\n"
            "| checkpoint.pt | exit | last line of stderr | stderr lines | traceback | file unchanged | payload ran |\n"
            "|---|---:|---|---:|---|---|---|\n")
    return head + "".join(
        f"| {r['checkpoint']} | {r['exit']} | `{_cell(r['error_line'])[:220]}` | {r['stderr_lines']} | "
        f"{'**yes**' if r['traceback'] else 'no'} | {_yes(r['checkpoint_unchanged'])} | "
        f"{'**YES**' if r['payload_ran'] else 'no'} |\n" for r in t["refusals"])


def render_markdown(result: dict) -> str:
    sections = [
        "# Reliability\n",
        "One request must never take the service down. These figures come from one run of\n"
        f"`{result['command']}` started {result['started']} ({result['seconds']} s), against a real "
        "`python -m serving up --http` (the tritonserver 2.51 bundled in nvidia-pytriton behind the fronts of "
        f"`serving/front.py`, supervised) over `{result['repository']}`. What each part does: "
        "`bench/reliability.py`. Regenerate with the same command.\n",
        "## Machine\n", render_machine(result["machine"]) + _render_machine_end(result.get("machine_end")) + "\n",
    ]
    for key, title, render in (("fuzz", "Fuzz matrix", render_fuzz), ("soak", "Soak", render_soak),
                               ("kill9", "Fault: kill -9 of tritonserver during a sampling job", render_kill9),
                               ("disk", "Fault: the output disk fills up during a job", render_disk),
                               ("training", "Fault: training killed, damaged checkpoints", render_training)):
        if key in result:
            sections += [f"## {title}\n", render(result[key]) + "\n"]
    return "\n".join(sections)


# ---------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--repository", default="model_repository", help="model repository (default model_repository)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {','.join(PARTS)} (default all)")
    p.add_argument("--soak-seconds", type=float, default=120.0, help="soak duration (default 120)")
    p.add_argument("--streams", type=int, default=32, help="concurrent gRPC clients of the soak (default 32)")
    p.add_argument("--kill-videos", type=int, default=1000, help="videos of the kill -9 job (default 1000)")
    p.add_argument("--disk-videos", type=int, default=64, help="videos of the disk-full job (default 64)")
    p.add_argument("--out", default="RELIABILITY.md", help="markdown report (default RELIABILITY.md; '' for none)")
    p.add_argument("--json", default="RELIABILITY.json", help="JSON results (default RELIABILITY.json; '' for none)")
    p.add_argument("--machine-note", default="", help="what the report cannot detect about the machine")
    p.add_argument("--workdir", default=None, help="where the temporary folder goes (default the system's)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, outputs)")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    if args.out:
        Path(args.out).write_text(render_markdown(result))
    print(json.dumps({k: result[k] for k in ("seconds",) if k in result}
                     | {"fuzz_passed": result.get("fuzz", {}).get("passed"),
                        "fuzz_cases": len(result.get("fuzz", {}).get("cases", [])),
                        "soak_failed": result.get("soak", {}).get("requests_failed")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
