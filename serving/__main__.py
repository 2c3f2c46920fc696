"""``python -m serving up --repository model_repository``: run the embedded Triton server.

Starts the ``tritonserver`` bundled in nvidia-pytriton (CPU, python backend) over the
repository, bound to 127.0.0.1 unless ``--host`` says otherwise, waits until every model of
the repository is ready (or exits 1 with the tail of the server log), streams the server's
log to ``--log-file``, and stops it cleanly on Ctrl-C or SIGTERM. See serving/README.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from .server import ServerError, TritonServer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the embedded Triton server and keep it running")
    up.add_argument("--repository", default="model_repository", help="model repository folder (default model_repository)")
    up.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface)")
    up.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0 = any free port)")
    up.add_argument("--http-port", type=int, default=8000, help="HTTP port (default 8000; 0 = any free port)")
    up.add_argument("--metrics-port", type=int, default=8002, help="metrics port (default 8002; 0 = any free port)")
    up.add_argument("--log-file", default="tritonserver.log", help="server log (appended; default tritonserver.log)")
    up.add_argument("--log-verbose", type=int, default=0, help="Triton's --log-verbose level (default 0)")
    up.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for every model (default 300)")
    up.add_argument("--model", action="append", dest="models",
                    help="wait for these models only (default: every folder with a config.pbtxt)")
    up.add_argument("extra", nargs="*", help="after --: more tritonserver options, e.g. -- --exit-timeout-secs=10")
    return parser


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    server = TritonServer(
        args.repository, grpc_port=args.grpc_port or None, http_port=args.http_port or None,
        metrics_port=args.metrics_port or None,
        host=args.host, log_file=args.log_file, log_verbose=args.log_verbose,
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
        print(f"ready in {server.startup_seconds:.1f} s: grpc {server.grpc_url}, http {server.http_url}, "
              f"metrics {server.metrics_url}", flush=True)
        for name, state in sorted(models.items()):
            print(f"  {name} v{state.get('version', '?')}: {state.get('state', '?')}", flush=True)
        print("Ctrl-C or SIGTERM stops it", flush=True)
        while server.is_alive():
            time.sleep(0.5)
        code = server.stop()
        print(f"error: tritonserver exited on its own (code {code}); last lines of {server.log_file}:\n"
              f"{server.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping tritonserver ...", flush=True)
        code = server.stop()
        print(f"stopped (exit code {code})", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
