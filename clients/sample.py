"""Batch sampling job: one video file per seed from a ``<name>_sample`` model on Triton.

    python -m clients.sample --url 127.0.0.1:8001 --model g3an_sample --seeds 0-999 \\
        --batch-size 16 --out samples/ --format mp4 [--label K] [--concurrency 2] [--url host2:8001 ...]

- Latents come from the seeds by :func:`clients.latents.latents_for_seed`; their sizes (Da, Dm)
  are read from the model's input shapes. ``--label K`` sends a one-hot ``label`` to a
  conditional model (its number of classes is read from the model too).
- ``--concurrency`` requests are in flight per server; ``--url`` may be repeated and the
  seeds are spread over the servers (a faster server takes more batches). A server that
  stays unreachable through the retries (exponential backoff) hands its batch back to the
  others; the job fails only when no server is left.
- Files are named ``seed000123.<format>`` and written atomically (temporary + ``os.replace``).
  ``DIR/manifest.json`` records the job's settings and every finished seed; a re-run with the
  same settings skips finished seeds, so an interrupted job resumes where it stopped. A
  manifest with other settings (model, format, fps, label, latent sizes) is refused.
- A write that fails (the output disk is full) ends the job with one ``error:`` line; every file
  left is complete, the manifest lists only such files, and the same command run again once
  there is space finishes the job.
- mp4: H.264 (libx264, else MPEG-4) yuv420p via PyAV; gif: Pillow; npz: ``video`` uint8
  [T, H, W, 3] with ``z_a``, ``z_m``, ``seed`` (and ``label``).
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import pathlib
import queue
import re
import signal
import sys
import threading
import time
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from .latents import ALGORITHM, latents_for_seeds, one_hot
from .triton import Connection, ModelInfo, RequestError, ServerUnavailable, TritonClientError, normalize_url
from .video_io import FORMATS, atomic_path, remove_stale_temporaries, write_video

__all__ = ["JobError", "file_name", "main", "parse_seeds", "run_job"]

MANIFEST = "manifest.json"
LOCK = ".manifest.lock"


class JobError(RuntimeError):
    pass


def parse_seeds(spec: str) -> list[int]:
    """``"0-999"``, ``"7"``, ``"0-9,100,200-204"`` -> sorted unique seeds (inclusive ranges)."""
    seeds: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match or (match.group(2) is not None and int(match.group(2)) < int(match.group(1))):
            raise ValueError(f"bad seed range {part!r} in {spec!r} (seeds are >= 0; use e.g. 0-999 or 0-9,20,30-35)")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        seeds.update(range(lo, hi + 1))
    if not seeds:
        raise ValueError(f"no seed in {spec!r}")
    return sorted(seeds)


def file_name(seed: int, fmt: str) -> str:
    return f"seed{seed:06d}.{fmt}"


@dataclasses.dataclass
class _Batch:
    seeds: list[int]
    tried: set = dataclasses.field(default_factory=set)  # urls that gave up on it


class _Manifest:
    """``DIR/manifest.json``: settings + finished seeds; written atomically, throttled."""

    def __init__(self, folder: pathlib.Path, settings: dict):
        self.path = folder / MANIFEST
        self.settings = settings
        self.done: dict[str, dict] = {}
        self._last_write = 0.0
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise JobError(f"{self.path} is unreadable ({exc}); move it away to start over") from exc
            old = data.get("settings", {})
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            if diff:
                lines = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
                raise JobError(f"{folder} holds a job with other settings ({lines}); "
                               "use another --out folder, or delete its manifest.json to start over")
            self.done = dict(data.get("done", {}))

    def add(self, seed: int, entry: dict) -> None:
        self.done[str(seed)] = entry
        if time.monotonic() - self._last_write > 1.0:
            self.write()

    def write(self) -> None:
        data = {"settings": self.settings, "done": dict(sorted(self.done.items(), key=lambda kv: int(kv[0])))}
        try:
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(data, indent=1) + "\n")
        except OSError as exc:  # e.g. the disk is full: the previous manifest stays as it was
            raise JobError(f"cannot save {self.path} ({exc.strerror or exc}); the files written so far are "
                           "complete, and the same command run again keeps them") from exc
        self._last_write = time.monotonic()


def _model_settings(info: ModelInfo, label: int | None) -> tuple[int, int, int | None, tuple]:
    info.require_inputs(["z_a", "z_m"])
    Da, Dm = info.feature_dim("z_a"), info.feature_dim("z_m")
    n_classes = info.feature_dim("label") if "label" in info.inputs else None
    if n_classes is not None and label is None:
        raise JobError(f"model {info.name} is conditional ({n_classes} classes): pass --label K (0..{n_classes - 1})")
    if n_classes is None and label is not None:
        raise JobError(f"model {info.name} is unconditional (no 'label' input): drop --label")
    if n_classes is not None and not 0 <= label < n_classes:
        raise JobError(f"--label {label} is out of range: model {info.name} has {n_classes} classes (0..{n_classes - 1})")
    T, H, W = info.video_shape("output")
    return Da, Dm, n_classes, (T, H, W, 3)


def run_job(
    urls: Sequence[str],
    model: str,
    seeds: Iterable[int],
    out: str | os.PathLike,
    *,
    fmt: str = "mp4",
    batch_size: int = 16,
    concurrency: int = 2,
    label: int | None = None,
    fps: float = 8.0,
    retries: int = 6,
    backoff: float = 0.5,
    timeout: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run a sampling job (see the module docstring); returns a summary dict.

    Raises :class:`JobError` (bad settings, refused request, every server gone) after
    saving the manifest, so a re-run resumes.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if fmt not in FORMATS:
        raise JobError(f"unknown --format {fmt!r} (use one of {', '.join(FORMATS)})")
    if not urls:
        raise JobError("no server: pass --url HOST:PORT")
    urls = [normalize_url(u) for u in urls]
    seeds = sorted(set(int(s) for s in seeds))
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)

    lock_handle = _lock_folder(out)
    try:
        info = _describe_model(urls, model, retries, backoff, log)
        Da, Dm, n_classes, video_shape = _model_settings(info, label)
        if info.max_batch_size and batch_size > info.max_batch_size:
            log(f"--batch-size {batch_size} is over the model's max_batch_size {info.max_batch_size}: "
                f"using {info.max_batch_size}")
            batch_size = info.max_batch_size
        batch_size = max(1, int(batch_size))
        job = _Job(urls=urls, model=model, out=out, fmt=fmt, fps=fps, label=label, Da=Da, Dm=Dm,
                   label_row=one_hot(label, n_classes) if n_classes is not None else None,
                   video_shape=video_shape, retries=retries, backoff=backoff, timeout=timeout, log=log)

        settings = {"model": model, "format": fmt, "fps": fps, "label": label,
                    "z_a_dim": Da, "z_m_dim": Dm, "video_shape": list(video_shape),
                    "latents": ALGORITHM}
        manifest = _Manifest(out, settings)
        todo = _seeds_to_do(out, seeds, fmt, manifest)
        n_done = len(seeds) - len(todo)
        if n_done:
            log(f"{out}: {n_done} of {len(seeds)} seeds already done, {len(todo)} to go")
        summary = {"requested": len(seeds), "skipped": n_done, "written": 0, "out": str(out),
                   "model": model, "batch_size": batch_size, "urls": urls, "seconds": 0.0}
        if not todo:
            return summary
        _sample_all(job, todo, len(seeds), batch_size, concurrency, manifest, summary, progress)
        return summary
    finally:
        lock_handle.close()


@dataclasses.dataclass
class _Job:
    """What every worker of one job needs: where, what and how to ask, and where to write."""

    urls: list[str]
    model: str
    out: pathlib.Path
    fmt: str
    fps: float
    label: int | None
    Da: int
    Dm: int
    label_row: np.ndarray | None
    video_shape: tuple
    retries: int
    backoff: float
    timeout: float | None
    log: Callable[[str], None]


@dataclasses.dataclass
class _Event:
    """What a worker tells the main thread: a file written ("done", payload (seed, name)), a
    server given up on ("down", payload the exception) or a failure that ends the job ("error")."""

    kind: str
    url: str
    payload: object


def _lock_folder(out: pathlib.Path):
    """One job per folder at a time: an exclusive lock on DIR/.manifest.lock (→ its open file)."""
    lock_handle = open(out / LOCK, "w")
    try:
        fcntl.flock(lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_handle.close()
        raise JobError(f"another sampling job is writing to {out} (lock {out / LOCK})") from None
    return lock_handle


def _describe_model(urls: list[str], model: str, retries: int, backoff: float, log) -> ModelInfo:
    """The model's description from the first server that answers (the same model on all of them)."""
    info: ModelInfo | None = None
    unreachable = []
    for url in urls:
        with Connection(url, retries=retries, backoff=backoff, log=log) as conn:
            try:
                this = conn.model_info(model)
            except ServerUnavailable as exc:
                log(f"warning: {exc}")
                unreachable.append(str(exc))
                continue
            if info is not None and (this.inputs, this.outputs) != (info.inputs, info.outputs):
                raise JobError(f"model {model} differs between servers ({urls[0]} and {url})")
            info = info or this
    if info is None:
        raise JobError(f"no server answered ({'; '.join(unreachable)}); nothing was written")
    return info


def _seeds_to_do(out: pathlib.Path, seeds: list[int], fmt: str, manifest: _Manifest) -> list[int]:
    """The seeds without a file. Finished: in the manifest, or written (atomically, hence complete)
    after the manifest was created by a run with these settings but before it was saved again."""
    remove_stale_temporaries(out)
    todo = []
    for seed in seeds:
        name = file_name(seed, fmt)
        if (out / name).is_file():
            if str(seed) not in manifest.done:
                manifest.done[str(seed)] = {"file": name, "recovered": True}
        else:
            manifest.done.pop(str(seed), None)
            todo.append(seed)
    manifest.write()
    return todo


def _worker(job: _Job, url: str, batches: queue.Queue, events: queue.Queue, stop: threading.Event) -> None:
    """Take batches of seeds, ask `url` for their videos, write one file per seed. A server that
    stops answering leaves its batch to the others ("down"); a refused request ends the job."""
    conn = Connection(url, retries=job.retries, backoff=job.backoff, timeout=job.timeout, log=job.log)
    try:
        while not stop.is_set():
            try:
                batch = batches.get(timeout=0.1)
            except queue.Empty:
                continue
            if url in batch.tried and len(batch.tried) < len(job.urls):
                batches.put(batch)  # leave it to a server that has not failed it
                time.sleep(0.05)
                continue
            z_a, z_m = latents_for_seeds(batch.seeds, job.Da, job.Dm)
            inputs = {"z_a": z_a, "z_m": z_m}
            if job.label_row is not None:
                inputs["label"] = np.repeat(job.label_row, len(batch.seeds), axis=0)
            try:
                videos = conn.infer(job.model, inputs, ["video"])["video"]
            except ServerUnavailable as exc:
                batch.tried.add(url)
                batches.put(batch)
                events.put(_Event("down", url, exc))
                return
            except TritonClientError as exc:
                events.put(_Event("error", url, exc))
                return
            if videos.shape != (len(batch.seeds),) + job.video_shape:
                events.put(_Event("error", url, RequestError(
                    f"{job.model} on {url} returned video {list(videos.shape)}, expected "
                    f"{[len(batch.seeds), *job.video_shape]}")))
                return
            for k, seed in enumerate(batch.seeds):
                if stop.is_set():
                    return
                events.put(_Event("done", url, _write_one(job, seed, videos[k], z_a[k], z_m[k])))
    except BaseException as exc:  # noqa: BLE001 - report anything to the main thread
        events.put(_Event("error", url, exc))
    finally:
        conn.close()


def _write_one(job: _Job, seed: int, video: np.ndarray, z_a: np.ndarray, z_m: np.ndarray) -> tuple[int, str]:
    name = file_name(seed, job.fmt)
    extra = {}
    if job.fmt == "npz":
        extra = {"z_a": z_a, "z_m": z_m, "seed": np.int64(seed)}
        if job.label is not None:
            extra["label"] = np.int64(job.label)
    write_video(job.out / name, video, fps=job.fps, fmt=job.fmt, **extra)
    return seed, name


def _sample_all(job: _Job, todo: list[int], n_seeds: int, batch_size: int, concurrency: int,
                manifest: _Manifest, summary: dict, progress: bool) -> None:
    """Workers (`concurrency` per server) over batches of `todo`; this thread records every
    finished file in the manifest and decides when the job has failed."""
    batches: queue.Queue[_Batch] = queue.Queue()
    for i in range(0, len(todo), batch_size):
        batches.put(_Batch(todo[i:i + batch_size]))
    events: queue.Queue[_Event] = queue.Queue()
    stop = threading.Event()
    threads = [threading.Thread(target=_worker, args=(job, url, batches, events, stop), name=f"sample-{url}-{i}",
                                daemon=True)
               for url in job.urls for i in range(max(1, concurrency))]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    bar = tqdm(total=n_seeds, initial=n_seeds - len(todo), unit="video", desc=job.model, disable=not progress,
               dynamic_ncols=True)
    remaining = set(todo)
    down: dict[str, str] = {}
    error: BaseException | None = None

    def record(event: _Event) -> None:
        seed, name = event.payload
        remaining.discard(seed)
        manifest.add(seed, {"file": name, "url": event.url})
        summary["written"] += 1

    try:
        while remaining:
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                if not any(t.is_alive() for t in threads):
                    break
                continue
            if event.kind == "done":
                record(event)
                bar.update(1)
            elif event.kind == "down":
                down[event.url] = str(event.payload)
                alive_urls = {u for u in job.urls if u not in down}
                if not alive_urls:
                    error = event.payload
                    break
                job.log(f"warning: giving up on {event.url} ({event.payload}); going on with "
                        f"{', '.join(sorted(alive_urls))}")
            else:
                error = event.payload
                break
    except KeyboardInterrupt:
        stop.set()
        manifest.write()
        bar.close()
        job.log(f"interrupted: {n_seeds - len(remaining)} of {n_seeds} done; run the same command to resume")
        raise
    finally:
        stop.set()
        join_deadline = time.monotonic() + 10.0  # workers finish the file they write (atomically)
        for t in threads:
            t.join(timeout=max(0.0, join_deadline - time.monotonic()))
        while True:  # drain what finished while stopping
            try:
                event = events.get_nowait()
            except queue.Empty:
                break
            if event.kind == "done":
                record(event)
        manifest.write()
        bar.close()
    summary["seconds"] = time.monotonic() - t0
    if error is not None or remaining:
        why = error if error is not None else "; ".join(f"{u}: {m}" for u, m in down.items()) or "workers stopped"
        if isinstance(error, OSError):
            why = f"writing to {job.out} failed: {error.strerror or error}"
        raise JobError(f"{len(remaining)} of {n_seeds} seeds not done ({why}); "
                       "run the same command again to resume") from (error if isinstance(error, Exception) else None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m clients.sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", action="append", help="Triton gRPC endpoint HOST:PORT; repeat to spread "
                   "the seeds over several servers (default 127.0.0.1:8001)")
    p.add_argument("--model", required=True, help="a <name>_sample model, e.g. g3an_sample")
    p.add_argument("--seeds", default="0-15", help="seeds, inclusive ranges: 0-999 or 0-9,20,30-35 (default 0-15)")
    p.add_argument("--batch-size", type=int, default=16, help="seeds per request (capped at the model's max_batch_size)")
    p.add_argument("--concurrency", type=int, default=2, help="requests in flight per server (default 2)")
    p.add_argument("--out", required=True, help="output folder (holds manifest.json)")
    p.add_argument("--format", choices=FORMATS, default="mp4")
    p.add_argument("--label", type=int, default=None, help="class index for a conditional model")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of mp4/gif files (default 8)")
    p.add_argument("--retries", type=int, default=6, help="retries per request while a server is unavailable")
    p.add_argument("--backoff", type=float, default=0.5, help="first retry delay in s, doubled each retry (max 30)")
    p.add_argument("--timeout", type=float, default=None, help="per-request timeout in s (default none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _sigterm_as_interrupt() -> None:
    """SIGTERM stops a job like Ctrl-C: the manifest is saved and a re-run resumes."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _sigterm_as_interrupt()
    try:
        seeds = parse_seeds(args.seeds)
        summary = run_job(args.url or ["127.0.0.1:8001"], args.model, seeds, args.out, fmt=args.format,
                          batch_size=args.batch_size, concurrency=args.concurrency, label=args.label,
                          fps=args.fps, retries=args.retries, backoff=args.backoff, timeout=args.timeout,
                          progress=not args.no_progress)
    except KeyboardInterrupt:
        return 130
    except (JobError, TritonClientError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rate = summary["written"] / summary["seconds"] if summary["seconds"] else 0.0
    print(f"{summary['out']}: wrote {summary['written']} files, skipped {summary['skipped']} already done "
          f"({summary['requested']} requested) in {summary['seconds']:.1f} s"
          + (f" ({rate:.1f} videos/s)" if summary["written"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
