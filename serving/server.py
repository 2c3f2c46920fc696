"""Run the real Triton Inference Server that ships inside the ``nvidia-pytriton`` wheel.

The wheel bundles a CPU-capable ``tritonserver`` binary (Triton 2.51) with only the python
backend. Every videogan model in a CPU repository is a python-backend model whose
``model.py`` runs ``model.onnx`` with ONNX Runtime, so this binary serves the same wire
contract as NVIDIA's GPU container.

Making the bundled binary run takes a few steps that pytriton normally hides (we run the
binary ourselves so that we control the model repository, ports and log):

1. Copy ``<site-packages>/pytriton/tritonserver`` (``bin/``, ``backends/python/``,
   ``caches/``) into a fresh working folder, leaving out ``python_backend_stubs/``.
2. Copy the stub for *this* interpreter,
   ``python_backend_stubs/<major.minor>/triton_python_backend_stub``, to
   ``backends/python/triton_python_backend_stub``.
3. Environment of the server process:
   ``LD_LIBRARY_PATH=<site-packages>/nvidia_pytriton.libs:<sysconfig LIBDIR>:$LD_LIBRARY_PATH``
   (the copied binary's relative RPATH no longer reaches the bundled libs, and the stub must
   load the libpython of this interpreter, not a system one), and
   ``PATH=<dirname(sys.executable)>:$PATH`` (the stub's embedded Python finds its prefix, and
   so the virtualenv's site-packages with numpy and onnxruntime, through ``python3`` on PATH).
4. numpy must be < 2 in that environment: with numpy 2 the stub returns empty outputs and
   logs nothing.
5. ``tritonserver --model-repository=R --backend-directory=<work>/backends
   --cache-directory=<work>/caches --grpc-address=127.0.0.1 --http-address=127.0.0.1
   --metrics-address=127.0.0.1 ...``.

Use it as a context manager::

    with TritonServer("model_repository") as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_url)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Iterable, Sequence

__all__ = [
    "ServerError",
    "TritonServer",
    "find_free_port",
    "list_repository_models",
    "pytriton_dist",
    "server_environment",
]


class ServerError(RuntimeError):
    """The server did not start, or a model in the repository did not load."""


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def pytriton_dist() -> dict[str, pathlib.Path]:
    """Where the bundled server lives inside the installed ``nvidia-pytriton`` wheel."""
    try:
        import pytriton  # noqa: PLC0415  (only needed to locate the wheel's files)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ServerError(
            "nvidia-pytriton is not installed; it bundles the tritonserver binary "
            "(pip install nvidia-pytriton)"
        ) from exc
    root = pathlib.Path(pytriton.__file__).resolve().parent
    dist = root / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    paths = {
        "dist": dist,
        "binary": dist / "bin" / "tritonserver",
        "stub": dist / "python_backend_stubs" / version / "triton_python_backend_stub",
        "libs": root.parent / "nvidia_pytriton.libs",
    }
    if not paths["binary"].is_file():
        raise ServerError(f"no tritonserver binary in the nvidia-pytriton wheel at {paths['binary']}")
    if not paths["stub"].is_file():
        have = sorted(p.name for p in (dist / "python_backend_stubs").iterdir())
        raise ServerError(
            f"nvidia-pytriton has no python backend stub for Python {version} "
            f"(it has {', '.join(have)}); run the server with one of those Python versions"
        )
    return paths


def _check_numpy() -> None:
    version = importlib.metadata.version("numpy")
    if int(version.split(".")[0]) >= 2:
        raise ServerError(
            f"numpy {version} is installed; the embedded Triton python backend stub needs numpy < 2 "
            "(with numpy 2 every output comes back empty and nothing logs an error). "
            "pip install 'numpy<2'"
        )


def prepare_server_dir(workdir: pathlib.Path) -> pathlib.Path:
    """Copy the bundled server into ``workdir/tritonserver`` with this Python's stub in place."""
    paths = pytriton_dist()
    target = workdir / "tritonserver"
    shutil.copytree(
        paths["dist"], target,
        ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"),
    )
    stub = target / "backends" / "python" / "triton_python_backend_stub"
    shutil.copy2(paths["stub"], stub)
    stub.chmod(0o755)
    return target


def server_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the tritonserver process (see the module docstring, step 3)."""
    env = dict(os.environ if base is None else base)
    paths = pytriton_dist()
    libdirs = [str(paths["libs"])]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        libdirs.append(libdir)
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libdirs)
    python_bin = os.path.dirname(sys.executable)  # not resolved: a venv's bin/, with pyvenv.cfg beside
    env["PATH"] = python_bin + os.pathsep + env.get("PATH", "")
    # One ONNX Runtime / OpenMP pool per model instance would otherwise claim every core.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def list_repository_models(repository: str | os.PathLike) -> list[str]:
    """Names of the models in a repository: its sub-folders that hold a ``config.pbtxt``."""
    repo = pathlib.Path(repository)
    return sorted(p.name for p in repo.iterdir() if p.is_dir() and (p / "config.pbtxt").is_file())


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the parent
    except Exception:  # pragma: no cover - non-Linux
        pass


class TritonServer:
    """The bundled ``tritonserver`` as a child process, bound to ``host`` (127.0.0.1 by default).

    Ports left as ``None`` are picked free. ``start()`` returns once the server and every
    model of the repository are ready; otherwise it stops the server and raises
    :class:`ServerError` with the tail of the server log. The log streams to ``log_file``
    (a file in the working folder when not given). ``stop()`` sends SIGINT, waits, then kills.
    """

    def __init__(
        self,
        repository: str | os.PathLike,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        metrics_port: int | None = None,
        host: str = "127.0.0.1",
        log_file: str | os.PathLike | None = None,
        log_verbose: int = 0,
        startup_timeout: float = 180.0,
        stop_timeout: float = 30.0,
        models: Sequence[str] | None = None,
        extra_args: Iterable[str] = (),
        check_ensembles: bool = True,
        workdir: str | os.PathLike | None = None,
    ) -> None:
        self.repository = pathlib.Path(repository).resolve()
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.log_file = pathlib.Path(log_file).resolve() if log_file else None
        self.log_verbose = int(log_verbose)
        self.startup_timeout = float(startup_timeout)
        self.stop_timeout = float(stop_timeout)
        self.models = list(models) if models is not None else None
        self.extra_args = list(extra_args)
        self.check_ensembles = bool(check_ensembles)
        self._workdir_arg = pathlib.Path(workdir) if workdir else None
        self._workdir: pathlib.Path | None = None
        self._own_workdir = False
        self._process: subprocess.Popen | None = None
        self._log_handle = None
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ addresses
    @property
    def grpc_url(self) -> str:
        """``host:port`` for ``tritonclient.grpc.InferenceServerClient``."""
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self._client_host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> "TritonServer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "TritonServer":
        if self.is_alive():
            raise ServerError(f"server already running (pid {self._process.pid})")
        if not self.repository.is_dir():
            raise ServerError(f"model repository {self.repository} is not a folder")
        expected = self.models if self.models is not None else list_repository_models(self.repository)
        if not expected:
            raise ServerError(f"model repository {self.repository} holds no model (no */config.pbtxt)")
        _check_numpy()

        if self._workdir_arg is not None:
            self._workdir = self._workdir_arg
            self._workdir.mkdir(parents=True, exist_ok=True)
        else:
            self._workdir = pathlib.Path(tempfile.mkdtemp(prefix="videogan-triton-"))
            self._own_workdir = True
        server_dir = self._workdir / "tritonserver"
        if not server_dir.exists():
            prepare_server_dir(self._workdir)
        if self.log_file is None:
            self.log_file = self._workdir / "tritonserver.log"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)

        taken = {getattr(self, n) for n in ("grpc_port", "http_port", "metrics_port")}
        for name in ("grpc_port", "http_port", "metrics_port"):
            if getattr(self, name) is None:
                port = find_free_port(self._client_host)
                while port in taken:  # the OS may hand the same free port out twice in a row
                    port = find_free_port(self._client_host)
                taken.add(port)
                setattr(self, name, port)

        args = [
            str(server_dir / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={server_dir / 'backends'}",
            f"--cache-directory={server_dir / 'caches'}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",  # CPU only: no CUDA pinned memory to ask for
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--disable-auto-complete-config",
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]
        t0 = time.monotonic()
        self._log_handle = open(self.log_file, "ab", buffering=0)
        self._log_handle.write(f"# videogan: {' '.join(args)}\n".encode())
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env=server_environment(),
            cwd=str(self._workdir),
            # PR_SET_PDEATHSIG fires when the forking *thread* ends: only ask for it from the main thread.
            preexec_fn=_set_pdeathsig if threading.current_thread() is threading.main_thread() else None,
            start_new_session=True,  # a terminal's Ctrl-C reaches us only; stop() forwards one SIGINT
        )
        try:
            self._wait_ready(expected, t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def log_tail(self, lines: int = 40) -> str:
        if self.log_file is None or not self.log_file.exists():
            return "(no server log)"
        with open(self.log_file, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _get_json(self, path: str, method: str = "GET", timeout: float = 2.0):
        request = urllib.request.Request(f"http://{self.http_url}{path}", method=method,
                                         data=b"{}" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            return response.status, (json.loads(body) if body else None)

    def model_states(self) -> dict[str, dict]:
        """``{model: {"state": "READY"|"UNAVAILABLE"|..., "reason": str}}`` from the repository index."""
        _, index = self._get_json("/v2/repository/index", method="POST")
        return {entry["name"]: entry for entry in index or []}

    def _wait_ready(self, expected: list[str], t0: float) -> None:
        deadline = t0 + self.startup_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                # --exit-on-error: a model that fails to load makes the server exit.
                failed = self._failed_models_from_log()
                detail = f" (models that failed to load: {', '.join(failed)})" if failed else ""
                raise ServerError(
                    f"tritonserver exited with code {code} while starting{detail}; "
                    f"last lines of {self.log_file}:\n{self.log_tail()}"
                )
            try:
                status, _ = self._get_json("/v2/health/ready", timeout=1.0)
                server_ready = status == 200
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                server_ready = False
            if server_ready:
                states = self.model_states()
                missing = [m for m in expected if states.get(m, {}).get("state") != "READY"]
                if not missing:
                    if self.check_ensembles:
                        self._check_ensembles(expected)
                    return
                broken = {m: states[m] for m in missing
                          if m in states and states[m].get("state") == "UNAVAILABLE"}
                if broken:
                    reasons = "; ".join(f"{m}: {s.get('reason', '?')}" for m, s in broken.items())
                    raise ServerError(f"models failed to load: {reasons}; last lines of "
                                      f"{self.log_file}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ServerError(
                    f"tritonserver was not ready with every model ({', '.join(expected)}) after "
                    f"{self.startup_timeout:.0f} s; last lines of {self.log_file}:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def _check_ensembles(self, models: list[str]) -> None:
        """Refuse an ensemble whose output has the name of one of its inputs.

        Both names then denote one ensemble tensor: the last step's output feeds the first
        step again, the request never completes, and Triton 2.51 accepts such a config
        without a word (seen here: a reconstruct ensemble video -> encode -> decode -> video
        looped, and the next request crashed the server with SIGSEGV).
        """
        problems = []
        for name in models:
            try:
                _, config = self._get_json(f"/v2/models/{name}/config", timeout=5.0)
            except (urllib.error.URLError, OSError, ValueError):
                continue
            if (config or {}).get("platform") != "ensemble":
                continue
            same = sorted({t["name"] for t in config.get("input", [])} & {t["name"] for t in config.get("output", [])})
            if same:
                problems.append(f"{name}: {', '.join(repr(n) for n in same)}")
        if problems:
            raise ServerError(
                "ensemble models with an output named like an input (Triton loops on such an ensemble "
                "and requests never complete; give the output its own name, e.g. 'reconstruction'): "
                + "; ".join(problems))

    def _failed_models_from_log(self) -> list[str]:
        failed = []
        for line in self.log_tail(400).splitlines():
            # Triton's status table: "| name | 1 | UNAVAILABLE: reason |"
            if "UNAVAILABLE" in line and line.startswith("|"):
                cells = [c.strip() for c in line.strip("|").split("|")]
                if cells:
                    failed.append(cells[0])
        return failed

    def stop(self) -> int | None:
        """SIGINT (Triton's graceful shutdown), then SIGKILL after ``stop_timeout`` s."""
        code = None
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=self.stop_timeout)
            code = process.returncode
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        if self._own_workdir and self._workdir is not None:
            # keep the log when it lives in the working folder and the caller may still read it
            server_dir = self._workdir / "tritonserver"
            shutil.rmtree(server_dir, ignore_errors=True)
            if self.log_file is None or self.log_file.parent != self._workdir:
                shutil.rmtree(self._workdir, ignore_errors=True)
        return code
