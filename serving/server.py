"""Run the real Triton Inference Server that ships inside the ``nvidia-pytriton`` wheel.

The wheel bundles a CPU-capable ``tritonserver`` binary (Triton 2.51) with only the python
backend. Every videogan model in a CPU repository is a python-backend model whose
``model.py`` runs ``model.onnx`` with OpenVINO (or ONNX Runtime), so this binary serves the same wire
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

Hardening (issue 13; see serving/README.md): tritonserver itself listens on loopback only,
and every API of it is restricted to a key (``--grpc-restricted-protocol``,
``--http-restricted-api``): health, metadata and inference to a random key only the fronts
of ``serving/front.py`` hold, the admin APIs (:data:`ADMIN_APIS`) to the admin key. Clients
reach the fronts, on ``host`` (127.0.0.1 by default): gRPC always, HTTP only with
``http=True``. tritonserver and its python-backend stubs form one process group, ended as a
whole; the stubs' shared-memory regions carry a prefix of this start, removed once the group
is gone. :meth:`TritonServer.restart` starts tritonserver again behind the same fronts.

Use it as a context manager::

    with TritonServer("model_repository") as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_url)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.metadata
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from typing import Iterable, Sequence

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from export.contract import ensemble_loops

from .front import GrpcFront, HttpFront, model_limits, request_limits

__all__ = [
    "ADMIN_APIS",
    "ADMIN_HEADER",
    "ServerError",
    "TritonServer",
    "describe_exit",
    "find_free_port",
    "grpc_header",
    "list_repository_models",
    "process_group_members",
    "pytriton_dist",
    "server_environment",
]


# Restricted to the admin key on both protocols; health, metadata and inference stay open (through the fronts).
ADMIN_APIS = ("model-repository", "model-config", "shared-memory", "statistics", "trace", "logging")
FRONT_APIS = ("health", "metadata", "inference")
ADMIN_HEADER = "videogan-admin-key"   # HTTP header; over gRPC it is grpc_header(ADMIN_HEADER)
FRONT_HEADER = "videogan-front-key"
SHM_DIR = pathlib.Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"


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


def grpc_header(name: str) -> str:
    """The gRPC metadata key Triton checks for a restricted protocol keyed by ``name``."""
    return f"triton-grpc-protocol-{name}"


def describe_exit(code: int | None) -> str:
    """``"killed by signal 9 (SIGKILL)"``, ``"exit code 1"`` (a Popen returncode)."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def process_group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group ``pgid``, from /proc."""
    members = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return sorted(members)


class TritonServer:
    """The bundled ``tritonserver`` as a child process behind the fronts of ``serving/front.py``.

    The fronts listen on ``host`` (127.0.0.1 by default): gRPC on ``grpc_port``, HTTP on
    ``http_port`` only when ``http=True``; ports left as ``None`` are picked free.
    tritonserver's own ports are loopback ports picked free at every start, and answer
    nothing without a key; metrics stay on 127.0.0.1 (``metrics=False`` turns them off).
    The admin APIs take ``admin_key`` (a random one when not given) in the header
    :data:`ADMIN_HEADER` (HTTP) or ``grpc_header(ADMIN_HEADER)`` (gRPC).

    ``start()`` returns once the server and every model of the repository are ready;
    otherwise it stops the server and raises :class:`ServerError` with the tail of the server
    log. The log streams to ``log_file`` (a file in the working folder when not given).
    ``stop()`` sends SIGINT, waits, then kills the process group.
    """

    def __init__(
        self,
        repository: str | os.PathLike,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        metrics_port: int | None = None,
        host: str = "127.0.0.1",
        http: bool = False,
        metrics: bool = True,
        admin_key: str | None = None,
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
        self.http_port = http_port if http else None
        self.metrics_port = metrics_port if metrics else None
        self.http = bool(http)
        self.metrics = bool(metrics)
        self.admin_key = admin_key or secrets.token_urlsafe(24)
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
        self._front_key = secrets.token_urlsafe(24)
        self._internal: dict[str, int] = {}   # tritonserver's own ports: grpc, http
        self._shm_prefix = ""
        self._grpc_front: GrpcFront | None = None
        self._http_front: HttpFront | None = None
        self.startup_seconds: float | None = None
        self.started_at: float | None = None
        self.last_cleanup: dict = {}  # what ending the last process group took (see _end_process_group)

    # ------------------------------------------------------------------ addresses
    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC front, for ``tritonclient.grpc.InferenceServerClient``."""
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str | None:
        """``host:port`` of the HTTP front, or None without ``http=True``."""
        return f"{self._client_host}:{self.http_port}" if self.http else None

    @property
    def metrics_url(self) -> str | None:
        return f"http://127.0.0.1:{self.metrics_port}/metrics" if self.metrics else None

    @property
    def admin_headers(self) -> dict[str, str]:
        """gRPC headers that open the admin APIs (pass as ``headers=`` to tritonclient.grpc calls)."""
        return {grpc_header(ADMIN_HEADER): self.admin_key}

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def exit_code(self) -> int | None:
        """tritonserver's exit status once it has ended (negative: killed by that signal)."""
        return self._process.poll() if self._process else None

    @property
    def shm_prefix(self) -> str:
        """Name prefix of the python backend's shared-memory regions of the current start."""
        return self._shm_prefix

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
        expected = self._expected_models()
        _check_numpy()
        self._prepare_workdir()
        self._log_handle = open(self.log_file, "ab", buffering=0)
        try:
            self._launch_and_wait(expected)
            self._open_fronts()
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self) -> "TritonServer":
        """Start tritonserver again behind the same fronts (after it died, or to replace it).

        Whatever is left of the previous process group is ended and its shared-memory regions
        removed first. Raises :class:`ServerError` (with nothing left running) if it does not
        come up.
        """
        if self._log_handle is None:
            raise ServerError("restart() of a server that was never started")
        self._end_process_group()
        self._log_handle.write(f"# videogan: restarting tritonserver ({time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
        try:
            self._launch_and_wait(self._expected_models())
        except BaseException:
            self._end_process_group()
            raise
        self._connect_fronts()
        return self

    def _expected_models(self) -> list[str]:
        expected = self.models if self.models is not None else list_repository_models(self.repository)
        if not expected:
            raise ServerError(f"model repository {self.repository} holds no model (no */config.pbtxt)")
        return expected

    def _prepare_workdir(self) -> None:
        if self._workdir_arg is not None:
            self._workdir = self._workdir_arg
            self._workdir.mkdir(parents=True, exist_ok=True)
        else:
            self._workdir = pathlib.Path(tempfile.mkdtemp(prefix="videogan-triton-"))
            self._own_workdir = True
        if not (self._workdir / "tritonserver").exists():
            prepare_server_dir(self._workdir)
        if self.log_file is None:
            self.log_file = self._workdir / "tritonserver.log"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)

    def _pick_ports(self) -> None:
        """Fresh loopback ports for tritonserver, and the metrics port once."""
        taken = {self.grpc_port, self.http_port, self.metrics_port}
        wanted = ["grpc"] + (["http"] if self.http else [])
        for name in wanted + (["metrics"] if self.metrics and self.metrics_port is None else []):
            port = find_free_port("127.0.0.1")
            while port in taken:  # the OS may hand the same free port out twice in a row
                port = find_free_port("127.0.0.1")
            taken.add(port)
            if name == "metrics":
                self.metrics_port = port
            else:
                self._internal[name] = port

    def _arguments(self) -> list[str]:
        server_dir = self._workdir / "tritonserver"
        admin = f"{','.join(ADMIN_APIS)}:{ADMIN_HEADER}={self.admin_key}"
        front = f"{','.join(FRONT_APIS)}:{FRONT_HEADER}={self._front_key}"
        args = [
            str(server_dir / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={server_dir / 'backends'}",
            f"--cache-directory={server_dir / 'caches'}",
            "--model-control-mode=none",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self._internal['grpc']}",
            f"--grpc-restricted-protocol={admin}",
            f"--grpc-restricted-protocol={front}",
        ]
        if self.http:
            args += ["--allow-http=true", "--http-address=127.0.0.1", f"--http-port={self._internal['http']}",
                     f"--http-restricted-api={admin}", f"--http-restricted-api={front}"]
        else:
            args += ["--allow-http=false"]
        if self.metrics:
            args += ["--allow-metrics=true", "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
                     "--allow-gpu-metrics=false"]
        else:
            args += ["--allow-metrics=false"]
        return args + [
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            "--pinned-memory-pool-byte-size=0",  # CPU only: no CUDA pinned memory to ask for
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--disable-auto-complete-config",
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]

    def _launch_and_wait(self, expected: list[str]) -> None:
        self._pick_ports()
        self._shm_prefix = f"{SHM_PREFIX}videogan{os.getpid()}_{secrets.token_hex(3)}_"
        args = self._arguments()
        t0 = time.monotonic()
        shown = " ".join(a.replace(self.admin_key, "***").replace(self._front_key, "***") for a in args)
        self._log_handle.write(f"# videogan: {shown}\n".encode())
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env=server_environment(),
            cwd=str(self._workdir),
            # PR_SET_PDEATHSIG fires when the forking *thread* ends: only ask for it from the main thread.
            preexec_fn=_set_pdeathsig if threading.current_thread() is threading.main_thread() else None,
            start_new_session=True,  # its own process group (stubs included); Ctrl-C of a terminal reaches us only
        )
        self._wait_ready(expected, t0)
        self.startup_seconds = time.monotonic() - t0
        self.started_at = time.time()

    # ------------------------------------------------------------------ fronts
    def _model_table(self) -> dict:
        with self._client() as client:
            names = [entry["name"] for entry in client.get_model_repository_index(
                headers=self._headers, as_json=True).get("models", []) if entry.get("state") == "READY"]
            return {name: model_limits(client.get_model_config(name, headers=self._headers, as_json=True)["config"])
                    for name in names}

    def _open_fronts(self) -> None:
        if self._grpc_front is not None:
            return self._connect_fronts()
        table = self._model_table()
        grpc_limit, http_limit = request_limits(table)
        try:
            self._grpc_front = GrpcFront(self.host, self.grpc_port or 0, grpc_limit,
                                         (grpc_header(FRONT_HEADER), self._front_key),
                                         grpc_header(ADMIN_HEADER))
            self.grpc_port = self._grpc_front.port
            if self.http:
                self._http_front = HttpFront(self.host, self.http_port or 0, http_limit,
                                             (FRONT_HEADER, self._front_key), ADMIN_HEADER)
                self.http_port = self._http_front.port
        except OSError as exc:
            raise ServerError(f"cannot listen on {self.host}: {exc}") from exc
        self._connect_fronts(table)

    def _connect_fronts(self, table: dict | None = None) -> None:
        table = table if table is not None else self._model_table()
        self._grpc_front.connect(f"127.0.0.1:{self._internal['grpc']}", table)
        if self._http_front is not None:
            self._http_front.connect(f"127.0.0.1:{self._internal['http']}", table)

    @property
    def request_limits(self) -> dict[str, int]:
        """Largest request the fronts let through, in bytes: ``{"grpc": ..., "http": ...}``."""
        limits = {"grpc": self._grpc_front.max_message_bytes} if self._grpc_front else {}
        if self._http_front:
            limits["http"] = self._http_front.max_body_bytes
        return limits

    # ------------------------------------------------------------------ talking to tritonserver
    @property
    def _headers(self) -> dict[str, str]:
        return {grpc_header(ADMIN_HEADER): self.admin_key, grpc_header(FRONT_HEADER): self._front_key}

    def _client(self) -> grpcclient.InferenceServerClient:
        return grpcclient.InferenceServerClient(f"127.0.0.1:{self._internal['grpc']}")

    def log_tail(self, lines: int = 40) -> str:
        if self.log_file is None or not self.log_file.exists():
            return "(no server log)"
        with open(self.log_file, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def model_states(self) -> dict[str, dict]:
        """``{model: {"state": "READY"|"UNAVAILABLE"|..., "reason": str}}`` from the repository index."""
        with self._client() as client:
            index = client.get_model_repository_index(headers=self._headers, as_json=True)
        return {entry["name"]: entry for entry in index.get("models", [])}

    def _server_ready(self) -> bool:
        try:
            with self._client() as client:
                return client.is_server_ready(headers=self._headers)
        except InferenceServerException:
            return False

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
            if self._server_ready():
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
        with self._client() as client:
            for name in models:
                try:
                    config = client.get_model_config(name, headers=self._headers, as_json=True)["config"]
                except InferenceServerException:
                    continue
                if config.get("platform") != "ensemble":
                    continue
                same = ensemble_loops((t["name"] for t in config.get("input", [])),
                                      (t["name"] for t in config.get("output", [])))
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

    # ------------------------------------------------------------------ ending
    def _end_process_group(self) -> int | None:
        """SIGINT (Triton's graceful shutdown), SIGKILL after ``stop_timeout`` s, then SIGKILL to
        whatever is left of the process group (the stubs of a killed server outlive it), and
        the removal of its shared-memory regions. Returns tritonserver's exit status."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                pass
        leftover = [pid for pid in process_group_members(process.pid) if pid != process.pid]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10.0
        while process_group_members(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.last_cleanup = {"pid": process.pid, "exit": describe_exit(process.returncode),
                             "leftover_processes": leftover, "shm_regions_removed": self.remove_shm_regions()}
        return process.returncode

    def remove_shm_regions(self) -> list[str]:
        """Remove the shared-memory regions of the current start's stubs; returns their names."""
        if not self._shm_prefix:
            return []
        removed = []
        for region in SHM_DIR.glob(f"{self._shm_prefix}*"):
            with contextlib.suppress(FileNotFoundError):
                region.unlink()
                removed.append(region.name)
        return removed

    def stop(self) -> int | None:
        """Close the fronts and end tritonserver's process group; returns its exit status."""
        for front in (self._grpc_front, self._http_front):
            if front is not None:
                front.close()
        self._grpc_front = self._http_front = None
        code = self._end_process_group()
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
