"""``python -m serving up --repository model_repository``: run the embedded Triton server, supervised.

Starts the ``tritonserver`` bundled in nvidia-pytriton (CPU, python backend) over the
repository behind the fronts of ``serving/front.py``: gRPC on 127.0.0.1 unless ``--host``
says otherwise, HTTP only with ``--http``, admin APIs behind a key, metrics on 127.0.0.1 only.
Waits until every model of the repository is ready (or exits 1 with the tail of the server
log), streams the server's log to ``--log-file``, and stops it cleanly on Ctrl-C or SIGTERM.

Supervision: when tritonserver exits on its own (a crash, ``kill -9``), this says why (signal
or exit code, last log lines), ends what is left of its process group (python-backend stubs),
removes its shared-memory regions and starts it again behind the same ports, after 1, 2, 4 ...
(at most 30) s; more than ``--max-restarts`` restarts within 10 minutes, or ``--no-restart``,
end the command with exit code 1. See serving/README.md.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import os
import pathlib
import secrets
import signal
import sys
import time

from .server import ADMIN_APIS, ADMIN_HEADER, ServerError, TritonServer, describe_exit, grpc_header

RESTART_WINDOW_S = 600.0
MAX_BACKOFF_S = 30.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the embedded Triton server and keep it running")
    up.add_argument("--repository", default="model_repository", help="model repository folder (default model_repository)")
    up.add_argument("--host", default="127.0.0.1",
                    help="address of the gRPC (and HTTP) front (default 127.0.0.1; 0.0.0.0 for every interface)")
    up.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0 = any free port)")
    up.add_argument("--http", action="store_true",
                    help="also serve KServe HTTP/JSON, through a front that checks every inference request")
    up.add_argument("--http-port", type=int, default=8000, help="HTTP port with --http (default 8000; 0 = any free port)")
    up.add_argument("--metrics-port", type=int, default=8002, help="metrics port on 127.0.0.1 (default 8002; 0 = any free port)")
    up.add_argument("--no-metrics", action="store_true", help="no Prometheus metrics endpoint")
    up.add_argument("--admin-key-file", default=None,
                    help="file with the key of the admin APIs (created, mode 0600, if missing); "
                         "default: a random key nobody is told, i.e. admin APIs closed")
    up.add_argument("--log-file", default="tritonserver.log", help="server log (appended; default tritonserver.log)")
    up.add_argument("--log-verbose", type=int, default=0, help="Triton's --log-verbose level (default 0)")
    up.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for every model (default 300)")
    up.add_argument("--model", action="append", dest="models",
                    help="wait for these models only (default: every folder with a config.pbtxt)")
    up.add_argument("--no-restart", action="store_true", help="exit (code 1) when tritonserver dies, do not restart it")
    up.add_argument("--max-restarts", type=int, default=5,
                    help="restarts allowed within 10 minutes before giving up with exit code 1 (default 5)")
    up.add_argument("extra", nargs="*", help="after --: more tritonserver options, e.g. -- --exit-timeout-secs=10")
    return parser


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def read_admin_key(path: str | None) -> str | None:
    """The key in ``path``, or a new random one written there (mode 0600); None without a path."""
    if not path:
        return None
    file = pathlib.Path(path)
    if not file.exists():
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    key = file.read_text().strip()
    if len(key) < 16:
        raise ServerError(f"{file}: an admin key needs at least 16 characters")
    return key


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe_endpoints(server: TritonServer, key_file: str | None) -> list[str]:
    """What is listening where, and who may use it."""
    limits = server.request_limits
    lines = [f"  gRPC {server.grpc_url}: inference, health, metadata (messages up to {limits['grpc']} bytes)"]
    if server.http:
        lines.append(f"  HTTP {server.http_url}: the same; every inference request is checked against the model "
                     f"before tritonserver sees it (bodies up to {limits['http']} bytes)")
    else:
        lines.append("  HTTP: off (--http turns it on)")
    lines.append(f"  metrics: {server.metrics_url or 'off'}")
    where = f"the key in {key_file}" if key_file else "a random key (admin APIs closed; --admin-key-file to use them)"
    lines.append(f"  admin APIs ({', '.join(ADMIN_APIS)}): header '{ADMIN_HEADER}' (gRPC "
                 f"'{grpc_header(ADMIN_HEADER)}') with {where}")
    if not _is_loopback(server.host):
        lines.append(f"warning: listening on {server.host}, not loopback: anyone who reaches it can run inference "
                     f"on gRPC port {server.grpc_port}" + (f" and HTTP port {server.http_port}" if server.http else "")
                     + ", read health and model metadata; tritonserver itself and metrics stay on 127.0.0.1")
    return lines


def _report_exit(server: TritonServer) -> None:
    uptime = time.time() - server.started_at if server.started_at else 0.0
    print(f"error: tritonserver (pid {server.pid}) exited unexpectedly: {describe_exit(server.exit_code)} after "
          f"{uptime:.0f} s up; last lines of {server.log_file}:\n{server.log_tail(12)}", file=sys.stderr, flush=True)


def supervise(server: TritonServer, max_restarts: int, restart: bool = True) -> int:
    """Watch tritonserver until it dies; say why and restart it with backoff. Returns 1 when giving up."""
    restarts: collections.deque[float] = collections.deque()
    while True:
        while server.is_alive():
            time.sleep(0.5)
        _report_exit(server)
        if not restart:
            print("not restarting it (--no-restart)", file=sys.stderr, flush=True)
            return 1
        while True:
            now = time.monotonic()
            while restarts and now - restarts[0] > RESTART_WINDOW_S:
                restarts.popleft()
            if len(restarts) >= max_restarts:
                print(f"error: giving up: {len(restarts)} restarts within {RESTART_WINDOW_S / 60:.0f} minutes "
                      "(--max-restarts)", file=sys.stderr, flush=True)
                return 1
            delay = min(MAX_BACKOFF_S, 2.0 ** len(restarts))
            print(f"restarting tritonserver in {delay:.0f} s (restart {len(restarts) + 1}; at most {max_restarts} "
                  f"within {RESTART_WINDOW_S / 60:.0f} minutes)", file=sys.stderr, flush=True)
            time.sleep(delay)
            restarts.append(time.monotonic())
            try:
                server.restart()
                break
            except ServerError as exc:
                print(f"error: restart failed: {exc}", file=sys.stderr, flush=True)
        cleanup = server.last_cleanup
        print(f"restarted: ready in {server.startup_seconds:.1f} s (tritonserver pid {server.pid}); ended "
              f"{len(cleanup.get('leftover_processes', []))} leftover process(es) of pid {cleanup.get('pid')} "
              f"and removed {len(cleanup.get('shm_regions_removed', []))} shared-memory region(s) of it",
              file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        admin_key = read_admin_key(args.admin_key_file)
    except (OSError, ServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    server = TritonServer(
        args.repository, grpc_port=args.grpc_port or None, http_port=args.http_port or None,
        metrics_port=args.metrics_port or None, host=args.host, http=args.http, metrics=not args.no_metrics,
        admin_key=admin_key, log_file=args.log_file, log_verbose=args.log_verbose,
        startup_timeout=args.startup_timeout, models=args.models, extra_args=args.extra,
    )
    # Ctrl-C and SIGTERM both stop the server cleanly (SIGINT is set explicitly: a shell starts
    # background jobs with SIGINT ignored, and Python would then never raise KeyboardInterrupt).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    print(f"starting tritonserver over {server.repository} (log: {server.log_file})", flush=True)
    try:
        server.start()
    except KeyboardInterrupt:
        server.stop()
        print("interrupted while starting; server stopped", file=sys.stderr)
        return 130
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        models = server.model_states()
        print(f"ready in {server.startup_seconds:.1f} s: grpc {server.grpc_url}, http {server.http_url or 'off'}, "
              f"metrics {server.metrics_url or 'off'} (tritonserver pid {server.pid})", flush=True)
        for name, state in sorted(models.items()):
            print(f"  {name} v{state.get('version', '?')}: {state.get('state', '?')}", flush=True)
        print("\n".join(describe_endpoints(server, args.admin_key_file)), flush=True)
        print("Ctrl-C or SIGTERM stops it", flush=True)
        code = supervise(server, args.max_restarts, restart=not args.no_restart)
        server.stop()
        return code
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping tritonserver ...", flush=True)
        code = server.stop()
        print(f"stopped (exit code {code})", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
