"""The served paths: the exported repository and the Triton server, run as production runs them.

- `export_variants`: the checkpoint exported by the real exporter, called as a library
  (`export.__main__.export_checkpoint`, parity gate included), once per served variant
  (ort: ONNX Runtime FP32; ov: OpenVINO FP32; ov-bf16: OpenVINO BF16, where the CPU has it) into
  one repository, as models named bench_<family>_<variant>_<kind>.
- `ServedTriton`: `python -m serving up` over that repository as its own process group (the
  launcher with its checking gRPC front, tritonserver and the python-backend stubs), started
  and stopped here; the OpenVINO compile cache goes to a folder of the run
  ($VIDEOGAN_OV_CACHE_DIR), so start-up is measured with a cold and with a warm cache.
  `statistics()` reads Triton's own per-model statistics (admin key): request and execution
  counts and the time requests spent queued, copying inputs, in execute() of model.py and
  copying outputs: where a request's time goes.
- `worker_factory`: one clients.triton.Connection per worker thread (measure_concurrent).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.host import proc_stats, process_tree

from .paths import SERVED

ROOT = Path(__file__).resolve().parents[1]
STAT_PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


def model_prefix(family: str, variant: str) -> str:
    return f"bench_{family}_{variant.replace('-', '')}"


def export_variants(checkpoint: Path, repository: Path, family: str, variants: list[str], **flags) -> dict:
    """Export the checkpoint once per served variant into `repository`; {variant: summary + seconds},
    or {"refused": why, "seconds"} where the parity gate refused the variant (e.g. BF16 outside its
    tolerance for these weights): nothing of it is written, the other variants go on.
    `flags`: export options (max_batch_size, parity_batches, threads, queue_delay_us, ...)."""
    from export.__main__ import export_checkpoint
    from export.parity import ParityError

    out = {}
    for variant in variants:
        runtime, precision = SERVED[variant]
        t0 = time.monotonic()
        try:
            summary = export_checkpoint(checkpoint, repository, target="cpu", name=model_prefix(family, variant),
                                        runtime=runtime, precision=precision.upper(), replace=True, **flags)
        except ParityError as error:
            summary = {"refused": str(error)}
        out[variant] = {**summary, "seconds": round(time.monotonic() - t0, 1)}
    return out


def sub_repository(repository: Path, folder: Path, prefix: str) -> Path:
    """A repository of the models of one variant only (hard links: no copy of the graphs)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for model in repository.iterdir():
        if model.name.startswith(prefix + "_"):
            shutil.copytree(model, folder / model.name, copy_function=os.link)
    return folder


class ServedTriton:
    """`python -m serving up` over `repository` as a process group of its own.

    start() returns the seconds from launching the command to every model ready (polled through
    the gRPC front every 0.1 s); stop() sends SIGINT (the launcher stops tritonserver and its
    stubs) and, past `stop_timeout`, SIGKILL to the group it started."""

    def __init__(self, repository: Path, workdir: Path, cache_dir: Path, startup_timeout: float = 900.0,
                 stop_timeout: float = 60.0, server_args: tuple[str, ...] = ()):
        from serving.server import find_free_port

        self.repository, self.workdir, self.cache_dir = Path(repository), Path(workdir), Path(cache_dir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key_file = self.workdir / "admin.key"
        self.log_file = self.workdir / "tritonserver.log"
        self.port = find_free_port()
        self.startup_timeout, self.stop_timeout = startup_timeout, stop_timeout
        self.server_args = tuple(server_args)
        self.process: subprocess.Popen | None = None
        self.models = sorted(p.name for p in self.repository.iterdir() if (p / "config.pbtxt").is_file())

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def admin_headers(self) -> dict:
        from serving.server import ADMIN_HEADER, grpc_header

        return {grpc_header(ADMIN_HEADER): self.key_file.read_text().strip()}

    def start(self) -> float:
        command = [sys.executable, "-m", "serving", "up", "--repository", str(self.repository),
                   "--grpc-port", str(self.port), "--no-metrics", "--admin-key-file", str(self.key_file),
                   "--log-file", str(self.log_file), "--no-restart", "--startup-timeout", str(self.startup_timeout)]
        if self.server_args:
            command += ["--", *self.server_args]
        env = {**os.environ, "VIDEOGAN_OV_CACHE_DIR": str(self.cache_dir)}
        t0 = time.monotonic()
        with open(self.workdir / "serving-up.out", "ab") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - t0

    def _wait_ready(self, t0: float) -> None:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            while time.monotonic() - t0 < self.startup_timeout:
                if self.process.poll() is not None:
                    raise RuntimeError(f"python -m serving up exited ({self.process.returncode}) before its models "
                                       f"were ready:\n{self.tail()}")
                try:
                    if all(client.is_model_ready(m) for m in self.models):
                        return
                except Exception:   # not listening yet
                    pass
                time.sleep(0.1)
            raise RuntimeError(f"models not ready after {self.startup_timeout:.0f} s:\n{self.tail()}")
        finally:
            client.close()

    def tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.workdir / "serving-up.out", self.log_file):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def __enter__(self) -> "ServedTriton":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def server_version(self) -> str | None:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            return client.get_server_metadata(as_json=True).get("version")
        finally:
            client.close()

    def statistics(self) -> dict:
        """{model: counts and nanoseconds} from Triton's statistics API (cumulative since start)."""
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            stats = client.get_inference_statistics("", headers=self.admin_headers, as_json=True)
        finally:
            client.close()
        out = {}
        for entry in stats.get("model_stats", []):
            inference = entry.get("inference_stats", {})
            out[entry["name"]] = {
                "requests": int(inference.get("success", {}).get("count", 0)),
                "videos": int(entry.get("inference_count", 0)), "executions": int(entry.get("execution_count", 0)),
                **{f"{phase}_ns": int(inference.get(phase, {}).get("ns", 0)) for phase in ("success", *STAT_PHASES)}}
        return out

    def cpu_seconds(self) -> dict:
        """CPU seconds so far of the launcher (with its gRPC front), tritonserver and the python stubs."""
        out = {"launcher and front": 0.0, "tritonserver": 0.0, "python stubs": 0.0}
        for pid in process_tree(self.pid):
            stats = proc_stats(pid)
            if stats is None:
                continue
            role = ("launcher and front" if pid == self.pid else "python stubs"
                    if stats["name"].startswith("triton_python") else "tritonserver")
            out[role] += stats["cpu_s"]
        return out

    def snapshot(self) -> dict:
        """What `where_time_goes` compares before and after a cell."""
        return {"statistics": self.statistics(), "cpu_s": self.cpu_seconds(), "client_cpu_s": time.process_time()}


def statistics_delta(before: dict, after: dict, models: list[str]) -> dict:
    """Per model of a cell: requests, videos, executions (batches the model ran), videos per
    execution, and the mean milliseconds per request in each phase (Triton's accounting: queue =
    waiting for the dynamic batcher and a free instance; compute_infer = model.py's execute())."""
    out = {}
    for model in models:
        a, b = before.get(model, {}), after.get(model, {})
        requests, videos, executions = (b.get(k, 0) - a.get(k, 0) for k in ("requests", "videos", "executions"))
        if requests <= 0:
            continue
        entry = {"requests": requests, "videos": videos, "executions": executions,
                 "videos_per_execution": round(videos / executions, 2) if executions else None}
        for phase in ("success", *STAT_PHASES):
            ns = b.get(f"{phase}_ns", 0) - a.get(f"{phase}_ns", 0)
            entry[f"{phase}_ms_per_request"] = round(ns / requests / 1e6, 3)
        out[model] = entry
    return out


def where_time_goes(before: dict, after: dict, models: list[str], top: str) -> dict:
    """Triton's phases per request of every model of a cell (statistics_delta), and the CPU
    milliseconds per request (of `top`, the model the client called) of the client (this
    process), the launcher with its gRPC front, tritonserver and the python stubs."""
    phases = statistics_delta(before["statistics"], after["statistics"], models)
    requests = phases.get(top, {}).get("requests")
    cpu = {role: after["cpu_s"][role] - before["cpu_s"][role] for role in after["cpu_s"]}
    cpu["client"] = after["client_cpu_s"] - before["client_cpu_s"]
    return {"models": phases, "requests": requests,
            "cpu_ms_per_request": {role: round(1e3 * s / requests, 2) for role, s in cpu.items()} if requests else {}}


def worker_factory(url: str, model: str, feeds: dict, log):
    """make() -> call(): one clients.triton.Connection per worker thread, checked once."""
    from clients.triton import Connection

    def make():
        connection = Connection(url, retries=2, log=log)
        connection.model_info(model)

        def call():
            return connection.infer(model, feeds)
        call.close = connection.close
        return call
    return make
