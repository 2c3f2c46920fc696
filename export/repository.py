"""Triton model repository: config.pbtxt, version folders, manifests, atomic writes.

Layout written for one export name NAME (see model_repository/README.md):

    <repository>/NAME_sample/config.pbtxt       Triton's config (inputs/outputs, batching, warmup)
    <repository>/NAME_sample/manifest.json      provenance, parity figures and sha256 of every file
    <repository>/NAME_sample/warmup/label       (conditional models) one-hot row for model_warmup
    <repository>/NAME_sample/<N>/model.onnx     the graph (every target)
    <repository>/NAME_sample/<N>/model.py       --target cpu: python-backend runner (OpenVINO or ONNX Runtime)
    <repository>/NAME_sample/<N>/runtime.json   --target cpu: the runtime and precision this version was
                                                 gated for and runs with ({"runtime", "precision"})
    <repository>/NAME_sample/<N>/model.plan     --target gpu --tensorrt: TensorRT engine
    <repository>/NAME_{encode,decode}/...       encoder families, same layout
    <repository>/NAME_reconstruct/config.pbtxt  ensemble encode -> decode; <N>/ holds only
                                                 ENSEMBLE_KEEP (git drops empty folders, and
                                                 Triton needs the version folder)

Versions: every export adds version N = 1 + the highest version of any NAME_* model, to every
NAME_* model, so "version N" is one checkpoint across sample/encode/decode/reconstruct. Older
version folders stay on disk; `version_policy { latest { num_versions: 2 } }` (default,
`--serve-versions`) serves the newest two so a client can pin the previous one during a
roll-out (0 = serve all). An export whose tensors, backend or target differ from the existing
NAME_* models is refused unless `--replace` (which drops the old versions).

Atomic writes: the complete new state of every NAME_* model folder (old versions hard-linked,
the new version, config, manifest) is built in a temporary folder next to the repository (in
its parent, or inside it as a hidden folder when the parent is on another file system or not
writable), checked, and then swapped into place with one rename per model folder
(renameat2(RENAME_EXCHANGE) on Linux, so a folder is never missing). A repository that does
not exist yet is created by a single rename. Any failure before the swap leaves the
repository untouched.
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train.jsonio import json_default
from train.metrics.i3d import sha256_of as sha256_file  # noqa: F401 (one file hash for the tree)

from .onnx_export import Tensor
from .templates.model import RUNTIME_FILE

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "videogan-export-manifest/1"
CONFIG = "config.pbtxt"
KINDS = ("sample", "encode", "decode", "reconstruct")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
TEMPLATE = Path(__file__).resolve().parent / "templates" / "model.py"
_DTYPES = {"FP32": "TYPE_FP32", "UINT8": "TYPE_UINT8"}


class RepositoryError(RuntimeError):
    """The repository cannot be written, or the export conflicts with what it holds."""


# --- options and plans ------------------------------------------------------------------------

CPU_RUNTIMES = ("openvino", "onnxruntime")
PRECISIONS = {"cpu": ("FP32", "BF16"), "gpu": ("FP16", "FP32")}


@dataclass
class Options:
    target: str = "cpu"                      # cpu | gpu
    tensorrt: bool = False                   # gpu: tensorrt_plan engines instead of onnxruntime
    precision: str = "FP16"                  # gpu: TensorRT precision (accelerator or engine); cpu: FP32 | BF16
    runtime: str = "openvino"                # cpu: what model.py runs the graph with (openvino | onnxruntime)
    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = ()
    queue_delay_us: int = 2000
    instances: int = 1
    ort_intra_threads: int = 0               # cpu: 0 = auto (cores available, at most 4)
    ort_inter_threads: int = 1
    ort_batch_shards: int = 0                # cpu: 0 = auto (one shard per core, at most 4); 1 = off
    ov_threads: int = 0                      # cpu/openvino: threads of a one-video batch, 0 = auto (cores)
    ov_batch_shards: int = 0                 # cpu/openvino: 0 = auto (one shard per core, at most 4); 1 = off
    ov_cache_dir: str = "auto"               # cpu/openvino: compile cache (auto | off | a folder)
    serve_versions: int = 2                  # version_policy latest N; 0 = all
    warmup: bool = True
    replace: bool = False
    trt_opt_batch: int = 0                   # 0 = max_batch_size
    trt_workspace_mib: int = 4096

    def validate(self) -> None:
        if self.target not in ("cpu", "gpu"):
            raise ValueError(f"--target must be cpu or gpu, got {self.target!r}")
        if self.tensorrt and self.target != "gpu":
            raise ValueError("--tensorrt builds engines for the GPU target: add --target gpu")
        if self.precision not in PRECISIONS[self.target]:
            raise ValueError(f"--precision {self.precision.lower()} is not offered for --target {self.target} "
                             f"(choose from {', '.join(p.lower() for p in PRECISIONS[self.target])})")
        if self.runtime not in CPU_RUNTIMES:
            raise ValueError(f"--runtime must be one of {', '.join(CPU_RUNTIMES)}, got {self.runtime!r}")
        if self.precision == "BF16" and self.runtime != "openvino":
            raise ValueError("--precision bf16 is served by OpenVINO only: use --runtime openvino")
        if not 1 <= self.max_batch_size <= 4096:
            raise ValueError(f"--max-batch-size must be 1..4096, got {self.max_batch_size}")
        bad = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if bad:
            raise ValueError(f"preferred batch sizes {bad} are outside 1..max_batch_size ({self.max_batch_size})")
        if self.queue_delay_us < 0 or self.instances < 1 or self.serve_versions < 0:
            raise ValueError("--queue-delay-us >= 0, --instances >= 1 and --serve-versions >= 0 are required")
        if min(self.ort_intra_threads, self.ort_inter_threads, self.ort_batch_shards, self.ov_threads,
               self.ov_batch_shards) < 0:
            raise ValueError("thread and shard counts must be >= 0")
        if not 0 <= self.trt_opt_batch <= self.max_batch_size:
            raise ValueError(f"--trt-opt-batch must be 0..{self.max_batch_size}")

    @property
    def preferred(self) -> list[int]:
        if self.preferred_batch_sizes:
            return sorted(set(self.preferred_batch_sizes))
        return sorted({b for b in (self.max_batch_size // 2, self.max_batch_size) if b >= 1})

    @property
    def backend(self) -> str:
        if self.target == "cpu":
            return "python"
        return "tensorrt_plan" if self.tensorrt else "onnxruntime"

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class ModelPlan:
    """One Triton model of an export: its tensors, version files and manifest entry."""

    name: str
    kind: str                                # sample / encode / decode / reconstruct
    inputs: list[Tensor]
    outputs: list[Tensor]
    files: dict[str, bytes] = field(default_factory=dict)    # version folder contents
    entry: dict = field(default_factory=dict)                # manifest entry of the new version
    steps: list[dict] | None = None                          # ensemble: [{model, input_map, output_map}]

    @property
    def is_ensemble(self) -> bool:
        return self.steps is not None


# The only file of an ensemble's version folder: Triton reads nothing there but needs the folder,
# and git (a repository committed like model_repository/) does not keep an empty one.
ENSEMBLE_KEEP = ".gitkeep"


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise ValueError(f"--name {name!r} is not a valid model name: use letters, digits, '_', '-', '.' "
                         "(starting with a letter or digit, at most 100 characters)")
    return name


def model_name(name: str, kind: str) -> str:
    return f"{name}_{kind}"


# --- hashing and small helpers ----------------------------------------------------------------

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_hashes(folder: Path) -> dict[str, dict]:
    """{relative path: {sha256, bytes}} of every file under `folder` (sorted, posix paths)."""
    out = {}
    if folder.is_dir():
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            out[path.relative_to(folder).as_posix()] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return out


def version_folders(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def to_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n"


def tool_versions() -> dict:
    import onnx
    import onnxruntime
    import openvino
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "openvino": openvino.get_version().split("-")[0],
            "numpy": np.__version__}


# --- config.pbtxt -----------------------------------------------------------------------------

def model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2 as mc  # noqa: PLC0415
    except ImportError as error:  # pragma: no cover - tritonclient is a project dependency
        raise RepositoryError("tritonclient[grpc] is needed to write/read config.pbtxt "
                              "(pip install 'tritonclient[grpc]')") from error
    return mc


def parse_config(text: str):
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2().ModelConfig())


def config_tensor(name: str, data_type: int, dims) -> Tensor:
    """A Tensor from a config entry's name, DataType enum value and dims."""
    type_name = model_config_pb2().DataType.Name(data_type)
    back = {v: k for k, v in _DTYPES.items()}
    return Tensor(name, back.get(type_name, type_name.replace("TYPE_", "")), tuple(int(d) for d in dims))


def config_tensors(entries) -> list[Tensor]:
    return [config_tensor(e.name, e.data_type, e.dims) for e in entries]


def build_config(plan: ModelPlan, options: Options):
    """The ModelConfig protobuf of one model (rendered by `render_config`)."""
    mc = model_config_pb2()
    cfg = mc.ModelConfig(name=plan.name, max_batch_size=options.max_batch_size)
    for tensors, add in ((plan.inputs, cfg.input.add), (plan.outputs, cfg.output.add)):
        for t in tensors:
            entry = add()
            entry.name = t.name
            entry.data_type = mc.DataType.Value(_DTYPES[t.dtype])
            entry.dims.extend(t.dims)
    if options.serve_versions:
        cfg.version_policy.latest.num_versions = options.serve_versions
    else:
        cfg.version_policy.all.SetInParent()

    if plan.is_ensemble:
        cfg.platform = "ensemble"
        for step in plan.steps:
            s = cfg.ensemble_scheduling.step.add()
            s.model_name = step["model"]
            s.model_version = -1
            for key, value in step["input_map"].items():
                s.input_map[key] = value
            for key, value in step["output_map"].items():
                s.output_map[key] = value
        return cfg

    if options.backend == "python":
        cfg.backend = "python"
        kind = mc.ModelInstanceGroup.KIND_CPU
        for key, value in python_parameters(options).items():
            cfg.parameters[key].string_value = value
    elif options.backend == "onnxruntime":
        cfg.backend = "onnxruntime"
        cfg.default_model_filename = "model.onnx"
        kind = mc.ModelInstanceGroup.KIND_GPU
        accelerator = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add()
        accelerator.name = "tensorrt"
        accelerator.parameters["precision_mode"] = options.precision
        accelerator.parameters["max_workspace_size_bytes"] = str(options.trt_workspace_mib << 20)
    else:
        cfg.platform = "tensorrt_plan"
        cfg.default_model_filename = "model.plan"
        kind = mc.ModelInstanceGroup.KIND_GPU

    cfg.dynamic_batching.preferred_batch_size.extend(options.preferred)
    cfg.dynamic_batching.max_queue_delay_microseconds = options.queue_delay_us
    group = cfg.instance_group.add()
    group.count = options.instances
    group.kind = kind

    if options.warmup:
        # CPU: the preferred sizes too, the batch sizes the dynamic batcher forms: OpenVINO (dynamic
        # shapes) prepares its kernels on the first call at a new shape, which cost ~1-2 s at
        # paper64 (BENCHMARKS.md, session 10); warming moves it from the first requests to start-up.
        sizes = sorted({1, *options.preferred} if options.target == "cpu" else {1, options.max_batch_size})
        for size in sizes:
            warm = cfg.model_warmup.add()
            warm.name = f"{plan.name}_warmup_batch{size}"
            warm.batch_size = size
            for t in plan.inputs:
                entry = warm.inputs[t.name]
                entry.data_type = mc.DataType.Value(_DTYPES[t.dtype])
                entry.dims.extend(t.dims)
                if t.name == "label":
                    entry.input_data_file = "label"   # <model>/warmup/label: a one-hot row
                else:
                    entry.zero_data = True
    return cfg


def warmup_files(plan: ModelPlan, options: Options) -> dict[str, bytes]:
    if plan.is_ensemble or not options.warmup:
        return {}
    out = {}
    for t in plan.inputs:
        if t.name == "label":
            row = np.zeros(t.dims, np.float32)
            row[0] = 1.0
            out["label"] = row.astype("<f4").tobytes()
    return out


def render_config(cfg, name: str) -> str:
    from google.protobuf import text_format

    header = (f"# {name}: written by `python -m export` (videogan). Do not edit by hand: the sha256 of this\n"
              f"# file is in {MANIFEST}, which `python -m export.check` verifies.\n")
    return header + text_format.MessageToString(cfg, as_utf8=True)


# --- existing models --------------------------------------------------------------------------

@dataclass
class Existing:
    name: str
    path: Path
    versions: list[int]
    config: object | None
    manifest: dict | None


def read_existing(repository: Path, names: list[str]) -> dict[str, Existing]:
    out = {}
    if not repository.is_dir():
        return out
    for name in names:
        path = repository / name
        if not path.exists():
            continue
        if not path.is_dir():
            raise RepositoryError(f"{path} exists and is not a model folder")
        config = manifest = None
        if (path / CONFIG).is_file():
            try:
                config = parse_config((path / CONFIG).read_text())
            except Exception as error:
                raise RepositoryError(f"{path / CONFIG} does not parse: {error}") from error
        if (path / MANIFEST).is_file():
            try:
                manifest = json.loads((path / MANIFEST).read_text())
            except Exception as error:
                raise RepositoryError(f"{path / MANIFEST} does not parse: {error}") from error
        out[name] = Existing(name, path, version_folders(path), config, manifest)
    return out


def _backend_of(cfg) -> str:
    if cfg.platform == "ensemble":
        return "ensemble"
    if cfg.platform == "tensorrt_plan" or cfg.backend == "tensorrt":
        return "tensorrt_plan"
    if cfg.platform == "onnxruntime_onnx":
        return "onnxruntime"
    return cfg.backend or cfg.platform


@dataclass(frozen=True)
class Conflict:
    """One reason the export cannot add a version to an existing model. `what` is one of
    CONFLICT_KINDS; `tensors` conflicts are only known once the graphs are traced."""

    model: str
    what: str
    message: str

    def __str__(self) -> str:
        return self.message


CONFLICT_KINDS = ("graph", "config", "manifest", "backend", "tensors", "engine_batch")


def conflicts(existing: dict[str, Existing], plans: list[ModelPlan], all_names: list[str],
              options: Options) -> list[Conflict]:
    """Why the export cannot add a version to the existing NAME_* models (empty: it can)."""
    problems = []
    planned = {p.name: p for p in plans}
    for name, old in existing.items():
        if name not in planned:
            problems.append(Conflict(name, "graph",
                                     f"{name} exists but this checkpoint has no {name.rsplit('_', 1)[-1]} graph"))
            continue
        plan = planned[name]
        if old.config is None:
            problems.append(Conflict(name, "config", f"{name} has no {CONFIG}"))
            continue
        if old.manifest is None:
            problems.append(Conflict(name, "manifest", f"{name} has no {MANIFEST} (not written by this exporter)"))
        want_backend = "ensemble" if plan.is_ensemble else options.backend
        if _backend_of(old.config) != want_backend:
            problems.append(Conflict(name, "backend", f"{name} is served by {_backend_of(old.config)}, "
                                                      f"this export writes {want_backend}"))
        for what, have, want in (("inputs", config_tensors(old.config.input), plan.inputs),
                                 ("outputs", config_tensors(old.config.output), plan.outputs)):
            if sorted(have, key=lambda t: t.name) != sorted(want, key=lambda t: t.name):
                problems.append(Conflict(name, "tensors", f"{name} {what} are {_fmt(have)}, this export has {_fmt(want)}"))
        if want_backend == "tensorrt_plan" and old.config.max_batch_size != options.max_batch_size:
            problems.append(Conflict(name, "engine_batch",
                                     f"{name} engines were built for max_batch_size {old.config.max_batch_size}, "
                                     f"this export uses {options.max_batch_size}"))
    return problems


def _fmt(tensors) -> str:
    return "[" + ", ".join(f"{t.name} {t.dtype} {list(t.dims)}" for t in tensors) + "]"


def next_version(existing: dict[str, Existing]) -> int:
    versions = [v for e in existing.values() for v in e.versions]
    for e in existing.values():
        versions += [int(v) for v in (e.manifest or {}).get("versions", {})]
    return max(versions, default=0) + 1


# --- writing ----------------------------------------------------------------------------------

def _probe_writable(folder: Path) -> None:
    tmp = tempfile.mkdtemp(prefix=".videogan-write-test-", dir=folder)
    os.rmdir(tmp)


def staging_parent(repository: Path) -> Path:
    """Where to build the new model folders: the repository's parent when a rename from there
    into the repository works (same file system, writable), else a hidden folder inside it.
    Raises RepositoryError when the repository cannot be written."""
    repository = Path(os.path.abspath(repository))
    parent = repository.parent
    if repository.exists():
        if not repository.is_dir():
            raise RepositoryError(f"model repository {repository} exists and is not a folder")
        try:
            _probe_writable(repository)
        except OSError as error:
            raise RepositoryError(f"model repository {repository} is not writable: {error.strerror or error}") from error
        try:
            if os.stat(parent).st_dev == os.stat(repository).st_dev:
                _probe_writable(parent)
                return parent
        except OSError:
            pass
        return repository
    if not parent.is_dir():
        raise RepositoryError(f"cannot create model repository {repository}: {parent} is not an existing folder")
    try:
        _probe_writable(parent)
    except OSError as error:
        raise RepositoryError(f"cannot create model repository {repository}: {parent} is not writable: "
                              f"{error.strerror or error}") from error
    return parent


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: file system or kernel without it
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def write_models(repository: str | os.PathLike, plans: list[ModelPlan], *, export_name: str,
                 all_names: list[str], version: int, options: Options, common: dict,
                 validate=None) -> dict[str, Path]:
    """Stage every model folder of `plans` with its new `version`, validate, swap into place.

    `common` goes into every manifest entry (family, preset, checkpoint, export options);
    `validate(staged_repository_view)` may raise to abort before anything is swapped.
    Returns {model name: final folder}.
    """
    repository = Path(os.path.abspath(repository))
    existing = read_existing(repository, all_names)
    parent = staging_parent(repository)
    staging = Path(tempfile.mkdtemp(prefix=f".videogan-export-{export_name}-", dir=parent))
    try:
        # the staged view: a folder holding the new model folders (and, for a new repository,
        # becoming the repository itself)
        view = staging / "repository"
        view.mkdir()
        written_at = now_utc()
        for plan in plans:
            folder = view / plan.name
            folder.mkdir()
            old = existing.get(plan.name)
            old_versions = {}
            if old is not None and not options.replace:
                for item in old.path.iterdir():
                    if item.name in (CONFIG, MANIFEST, "warmup", "__pycache__"):
                        continue
                    if item.is_dir():
                        shutil.copytree(item, folder / item.name, copy_function=_link_or_copy, symlinks=True)
                    else:
                        _link_or_copy(item, folder / item.name)
                old_versions = dict((old.manifest or {}).get("versions", {}))
            vdir = folder / str(version)
            vdir.mkdir()
            for rel, data in plan.files.items():
                (vdir / rel).parent.mkdir(parents=True, exist_ok=True)
                (vdir / rel).write_bytes(data)
            cfg = build_config(plan, options)
            (folder / CONFIG).write_text(render_config(cfg, plan.name))
            model_files = {}
            for rel, data in warmup_files(plan, options).items():
                (folder / "warmup").mkdir(exist_ok=True)
                (folder / "warmup" / rel).write_bytes(data)
            for rel, info in file_hashes(folder / "warmup").items():
                model_files[f"warmup/{rel}"] = info
            model_files[CONFIG] = {"sha256": sha256_file(folder / CONFIG), "bytes": (folder / CONFIG).stat().st_size}
            entry = {**common, **plan.entry, "exported_at": written_at, "files": file_hashes(vdir)}
            versions = {**old_versions, str(version): entry}
            manifest = {
                "format": MANIFEST_FORMAT,
                "model": plan.name,
                "export_name": export_name,
                "kind": plan.kind,
                "target": options.target,
                "backend": "ensemble" if plan.is_ensemble else options.backend,
                "max_batch_size": options.max_batch_size,
                "inputs": [t.to_json() for t in plan.inputs],
                "outputs": [t.to_json() for t in plan.outputs],
                "latest_version": version,
                "version_policy": (f"latest {options.serve_versions}" if options.serve_versions else "all"),
                "model_files": model_files,
                "versions": dict(sorted(versions.items(), key=lambda kv: int(kv[0]))),
            }
            (folder / MANIFEST).write_text(to_json(manifest))
        if validate is not None:
            validate(view, existing)
        _fsync_tree(view)
        return _commit(repository, view, staging, plans, existing, all_names, options)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _commit(repository: Path, view: Path, staging: Path, plans, existing, all_names, options) -> dict[str, Path]:
    names = [p.name for p in plans]
    if not repository.exists():
        os.rename(view, repository)       # one rename creates the whole repository
        return {n: repository / n for n in names}
    trash = staging / "replaced"
    trash.mkdir()
    done: list[tuple[str, str]] = []      # (name, how) for rollback
    try:
        for name in names:
            src, dst = view / name, repository / name
            if dst.exists():
                if exchange(src, dst):
                    done.append((name, "exchanged"))
                else:
                    os.rename(dst, trash / name)
                    os.rename(src, dst)
                    done.append((name, "moved"))
            else:
                os.rename(src, dst)
                done.append((name, "new"))
        if options.replace:  # NAME_* models this export no longer has
            for name in all_names:
                if name not in names and (repository / name).exists():
                    os.rename(repository / name, trash / name)
                    done.append((name, "removed"))
    except BaseException:
        for name, how in reversed(done):
            try:
                if how == "exchanged":
                    exchange(view / name, repository / name)
                elif how == "moved":
                    os.rename(repository / name, view / name)
                    os.rename(trash / name, repository / name)
                elif how == "new":
                    os.rename(repository / name, view / name)
                elif how == "removed":
                    os.rename(trash / name, repository / name)
            except OSError:
                pass
        raise
    return {n: repository / n for n in names}


def python_parameters(options: Options) -> dict[str, str]:
    """config.pbtxt parameters model.py reads: threads, shards and the compile cache of the runtime
    (how fast it runs; what it computes is fixed per version by runtime.json)."""
    if options.runtime == "onnxruntime":
        params = {"ORT_INTRA_OP_THREADS": options.ort_intra_threads, "ORT_INTER_OP_THREADS": options.ort_inter_threads,
                  "ORT_BATCH_SHARDS": options.ort_batch_shards}
    else:
        params = {"OV_THREADS": options.ov_threads, "OV_BATCH_SHARDS": options.ov_batch_shards,
                  "OV_CACHE_DIR": options.ov_cache_dir}
    return {**{k: str(v) for k, v in params.items()}, "ONNX_FILE": "model.onnx"}


def python_backend_files(onnx_bytes: bytes, options: Options) -> dict[str, bytes]:
    """model.onnx, the served model.py, and runtime.json: the runtime and precision the version was gated for."""
    runtime = {"runtime": options.runtime, "precision": options.precision.lower()}
    return {"model.onnx": onnx_bytes, "model.py": TEMPLATE.read_bytes(),
            RUNTIME_FILE: (json.dumps(runtime, indent=1) + "\n").encode()}
