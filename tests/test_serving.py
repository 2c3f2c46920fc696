"""The embedded Triton server (serving/): start, answer, refuse bad requests, stop.

Real components only: the tritonserver binary bundled in nvidia-pytriton, python-backend
models running ONNX Runtime, tritonclient gRPC.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import RECONSTRUCT_OUTPUT, REPO_ROOT, TINY
from serving.server import (ADMIN_HEADER, ServerError, TritonServer, find_free_port, grpc_header,
                            list_repository_models, process_group_members)

pytestmark = pytest.mark.slow

Da, Dm, T, H, W, MBS = (TINY[k] for k in ("Da", "Dm", "T", "H", "W", "max_batch_size"))
SHM = pathlib.Path("/dev/shm")


def _input(name, array, datatype=None):
    tensor = grpcclient.InferInput(name, list(array.shape), datatype or {
        np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.uint8): "UINT8"}[array.dtype])
    tensor.set_data_from_numpy(array)
    return tensor


def _good_request(client):
    result = client.infer("tiny_sample", [_input("z_a", np.zeros((2, Da), np.float32)),
                                          _input("z_m", np.zeros((2, Dm), np.float32))])
    return result.as_numpy("video")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_server_answers_on_localhost(triton_server, tiny_repository):
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    assert client.is_server_live() and client.is_server_ready()
    assert triton_server.grpc_url.startswith("127.0.0.1:")
    assert triton_server.startup_seconds is not None and triton_server.startup_seconds < 120
    for model in list_repository_models(tiny_repository):
        assert client.is_model_ready(model), model
    meta = client.get_model_metadata("tiny_sample", as_json=True)
    assert {i["name"]: i["shape"] for i in meta["inputs"]} == {"z_a": ["-1", str(Da)], "z_m": ["-1", str(Dm)]}
    assert meta["outputs"][0] == {"name": "video", "datatype": "UINT8", "shape": ["-1", str(T), str(H), str(W), "3"]}
    video = _good_request(client)
    assert video.shape == (2, T, H, W, 3) and video.dtype == np.uint8
    # deterministic: the same latents give the same video
    assert np.array_equal(video, _good_request(client))
    with urllib.request.urlopen(triton_server.metrics_url, timeout=5) as response:
        assert b"nv_inference_request_success" in response.read()


def test_admin_apis_need_the_key_and_clients_get_the_public_config(triton_server):
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    for call in (client.get_model_repository_index, lambda: client.get_inference_statistics("tiny_sample"),
                 lambda: client.get_system_shared_memory_status(), lambda: client.get_log_settings()):
        with pytest.raises(InferenceServerException, match=f"restricted, expecting header '{grpc_header(ADMIN_HEADER)}'"):
            call()
    public = client.get_model_config("tiny_sample", as_json=True)["config"]
    assert public["max_batch_size"] == MBS and [i["name"] for i in public["input"]] == ["z_a", "z_m"]
    assert "instance_group" not in public and "dynamic_batching" not in public
    full = client.get_model_config("tiny_sample", as_json=True, headers=triton_server.admin_headers)["config"]
    assert "instance_group" in full and "dynamic_batching" in full
    assert client.get_model_repository_index(headers=triton_server.admin_headers, as_json=True)["models"]


def test_tritonserver_itself_answers_nothing_without_a_key_and_http_is_off(triton_server):
    log = triton_server.log_file.read_text()
    own = re.search(r"Started GRPCInferenceService at 127\.0\.0\.1:(\d+)", log).group(1)
    assert own != str(triton_server.grpc_port)  # clients reach the front, not tritonserver
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{own}")
    for call in (client.is_server_ready, lambda: _good_request(client)):
        with pytest.raises(InferenceServerException, match="This protocol is restricted"):
            call()
    assert triton_server.http_url is None and "Started HTTPService" not in log
    assert triton_server.metrics_url.startswith("http://127.0.0.1:")


def test_oversized_grpc_message_is_refused_before_tritonserver(triton_server):
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    rows = triton_server.request_limits["grpc"] // (4 * Da) + 1
    with pytest.raises(InferenceServerException) as info:
        client.infer("tiny_sample", [_input("z_a", np.zeros((rows, Da), np.float32)),
                                     _input("z_m", np.zeros((rows, Dm), np.float32))])
    assert info.value.status() == "StatusCode.RESOURCE_EXHAUSTED" and "larger than max" in info.value.message()
    assert _good_request(client).shape == (2, T, H, W, 3)


def test_restart_ends_the_killed_process_group_and_its_shared_memory(tmp_path, tiny_repository):
    with TritonServer(tiny_repository, log_file=tmp_path / "server.log") as server:
        url, pid, prefix = server.grpc_url, server.pid, server.shm_prefix
        assert len(process_group_members(pid)) == 5  # tritonserver + a stub per python model (not the ensemble)
        assert list(SHM.glob(prefix + "*"))
        os.kill(pid, signal.SIGKILL)
        server.restart()
        assert server.grpc_url == url and server.pid != pid
        assert process_group_members(pid) == [] and list(SHM.glob(prefix + "*")) == []
        assert server.last_cleanup["exit"] == "killed by signal 9 (SIGKILL)"
        assert len(server.last_cleanup["leftover_processes"]) == 4  # the stubs outlived it, then were ended
        assert _good_request(grpcclient.InferenceServerClient(url)).shape == (2, T, H, W, 3)
        pid, prefix = server.pid, server.shm_prefix
    assert process_group_members(pid) == [] and list(SHM.glob(prefix + "*")) == []


def test_reconstruct_ensemble_is_encode_then_decode(triton_server):
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    video = np.random.default_rng(0).integers(0, 256, (3, T, H, W, 3), dtype=np.uint8)
    recon = client.infer("tiny_reconstruct", [_input("video", video)], client_timeout=30).as_numpy(RECONSTRUCT_OUTPUT)
    enc = client.infer("tiny_encode", [_input("video", video)])
    dec = client.infer("tiny_decode", [_input("z_a", enc.as_numpy("z_a_mean")), _input("z_m", enc.as_numpy("z_m_mean"))])
    assert recon.shape == (3, T, H, W, 3)
    assert np.array_equal(recon, dec.as_numpy("video"))


MALFORMED = {
    "wrong dtype": ("tiny_sample", lambda: [_input("z_a", np.zeros((1, Da), np.float64)),
                                            _input("z_m", np.zeros((1, Dm), np.float32))],
                    "StatusCode.INVALID_ARGUMENT", ["'z_a'", "FP64", "expects 'FP32'"]),
    "wrong shape": ("tiny_sample", lambda: [_input("z_a", np.zeros((1, Da + 1), np.float32)),
                                            _input("z_m", np.zeros((1, Dm), np.float32))],
                    "StatusCode.INVALID_ARGUMENT", ["unexpected shape for input 'z_a'", f"Expected [-1,{Da}]",
                                                    f"got [1,{Da + 1}]"]),
    "batch over the maximum": ("tiny_sample", lambda: [_input("z_a", np.zeros((MBS + 1, Da), np.float32)),
                                                       _input("z_m", np.zeros((MBS + 1, Dm), np.float32))],
                               "StatusCode.INVALID_ARGUMENT", [f"batch-size must be <= {MBS}"]),
    "missing input": ("tiny_sample", lambda: [_input("z_a", np.zeros((1, Da), np.float32))],
                      "StatusCode.INVALID_ARGUMENT", ["missing required input(s) ['z_m']"]),
    "unknown model": ("nosuch_sample", lambda: [_input("z_a", np.zeros((1, Da), np.float32))],
                      "StatusCode.NOT_FOUND", ["unknown model", "'nosuch_sample'"]),
    "NaN latents": ("tiny_sample", lambda: [_input("z_a", np.array([[np.nan] + [0.0] * (Da - 1)], np.float32)),
                                            _input("z_m", np.zeros((1, Dm), np.float32))],
                    "StatusCode.INVALID_ARGUMENT", ["input 'z_a'", "1 non-finite value(s)", "NaN"]),
    "Inf latents": ("tiny_sample", lambda: [_input("z_a", np.zeros((1, Da), np.float32)),
                                            _input("z_m", np.full((1, Dm), np.inf, np.float32))],
                    "StatusCode.INVALID_ARGUMENT", ["input 'z_m'", f"{Dm} non-finite value(s)"]),
    "wrong video size": ("tiny_encode", lambda: [_input("video", np.zeros((1, T, H + 1, W, 3), np.uint8))],
                         "StatusCode.INVALID_ARGUMENT", ["unexpected shape for input 'video'"]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_is_refused_clearly_and_server_stays_up(triton_server, case):
    model, make_inputs, status, fragments = MALFORMED[case]
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, make_inputs(), client_timeout=30)
    assert info.value.status() == status
    for fragment in fragments:
        assert fragment in info.value.message(), (fragment, info.value.message())
    # the server still answers, and a good request in the same batch window is unaffected
    assert client.is_server_ready()
    assert _good_request(client).shape == (2, T, H, W, 3)


def test_nan_request_does_not_spoil_requests_batched_with_it(triton_server):
    """Dynamic batching may put a NaN request and good ones in one execute(): only the bad one fails."""
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    results = []

    def callback(result, error):
        results.append((result, error))

    z_m = np.zeros((1, Dm), np.float32)
    for i in range(6):
        z_a = np.full((1, Da), np.nan if i == 2 else 0.1 * i, np.float32)
        client.async_infer("tiny_sample", [_input("z_a", z_a), _input("z_m", z_m)], callback)
    deadline = time.monotonic() + 30
    while len(results) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    errors = [e for _, e in results if e is not None]
    assert len(results) == 6 and len(errors) == 1
    assert "non-finite" in errors[0].message()


def test_unloadable_model_fails_start_with_log_tail(tmp_path, tiny_repository):
    repo = tmp_path / "repo"
    build_tiny_repository_broken_only(repo, tiny_repository)
    server = TritonServer(repo, log_file=tmp_path / "server.log", startup_timeout=120)
    with pytest.raises(ServerError) as info:
        server.start()
    message = str(info.value)
    assert "tinybroken_sample" in message
    assert "fixture model that never loads" in message  # the log tail carries the model's own error
    assert not server.is_alive()


def build_tiny_repository_broken_only(repo, tiny_repository):
    """tiny_sample (copied) plus a model whose initialize() raises."""
    shutil.copytree(tiny_repository / "tiny_sample", repo / "tiny_sample")
    d = repo / "tinybroken_sample"
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.py").write_text(
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        "        raise RuntimeError('fixture model that never loads')\n")
    (d / "config.pbtxt").write_text(
        (tiny_repository / "tiny_sample" / "config.pbtxt").read_text().replace('"tiny_sample"', '"tinybroken_sample"'))


def test_looping_ensemble_is_refused(tmp_path, tiny_repository):
    """An ensemble whose output is named like its input loops forever in Triton: refused at start."""
    repo = tmp_path / "repo"
    for name in ("tiny_encode", "tiny_decode", "tiny_reconstruct"):
        shutil.copytree(tiny_repository / name, repo / name)
    config = repo / "tiny_reconstruct" / "config.pbtxt"
    config.write_text(config.read_text().replace(f'"{RECONSTRUCT_OUTPUT}"', '"video"'))
    server = TritonServer(repo, log_file=tmp_path / "server.log")
    with pytest.raises(ServerError, match=r"tiny_reconstruct: 'video'"):
        server.start()
    assert not server.is_alive()


def test_empty_or_missing_repository_is_refused(tmp_path):
    with pytest.raises(ServerError, match="not a folder"):
        TritonServer(tmp_path / "nope").start()
    with pytest.raises(ServerError, match="holds no model"):
        TritonServer(tmp_path).start()


def test_cli_up_serves_and_stops_on_sigterm(tmp_path, tiny_repository):
    ports: list[int] = []
    while len(ports) < 3:  # three distinct ports (the OS may hand one out twice in a row)
        port = find_free_port()
        if port not in ports:
            ports.append(port)
    log = tmp_path / "triton.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "up", "--repository", str(tiny_repository),
         "--grpc-port", str(ports[0]), "--http-port", str(ports[1]), "--metrics-port", str(ports[2]),
         "--log-file", str(log)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Ctrl-C or SIGTERM"):
                break
        output = "".join(lines)
        assert f"grpc 127.0.0.1:{ports[0]}" in output, output
        assert "tiny_reconstruct v1: READY" in output
        assert "HTTP: off" in output and "admin APIs (model-repository" in output
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{ports[0]}")
        assert _good_request(client).shape == (2, T, H, W, 3)
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output + rest
    assert "stopped (exit code 0)" in rest
    assert not _port_open(ports[0])
    text = log.read_text()
    assert "Started GRPCInferenceService at 127.0.0.1" in text and "Started HTTPService" not in text
    assert "successfully unloaded 'tiny_sample'" in text


def test_cli_up_no_restart_says_why_tritonserver_died_and_exits_1(tmp_path, tiny_repository):
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "up", "--repository", str(tiny_repository), "--grpc-port", "0",
         "--metrics-port", "0", "--log-file", str(tmp_path / "triton.log"), "--no-restart"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while not line.startswith("ready in") and time.monotonic() < deadline:
            line = process.stdout.readline()
        pid = int(re.search(r"\(tritonserver pid (\d+)\)", line).group(1))
        os.kill(pid, signal.SIGKILL)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1
    assert f"error: tritonserver (pid {pid}) exited unexpectedly: killed by signal 9 (SIGKILL)" in rest
    assert "not restarting it (--no-restart)" in rest
    assert process_group_members(pid) == []


def test_cli_up_reports_load_failure(tmp_path, tiny_repository):
    repo = tmp_path / "repo"
    build_tiny_repository_broken_only(repo, tiny_repository)
    ports: list[int] = []
    while len(ports) < 3:  # three distinct ports (the OS may hand one out twice in a row)
        port = find_free_port()
        if port not in ports:
            ports.append(port)
    result = subprocess.run(
        [sys.executable, "-m", "serving", "up", "--repository", str(repo), "--grpc-port", str(ports[0]),
         "--http-port", str(ports[1]), "--metrics-port", str(ports[2]), "--log-file", str(tmp_path / "log")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 1
    assert "error:" in result.stderr and "tinybroken_sample" in result.stderr
    assert "fixture model that never loads" in result.stderr
