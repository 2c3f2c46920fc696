"""Validate a Triton model repository written by `python -m export`.

    python -m export.check model_repository [--json] [--skip-onnx-checker]

Exits 0 when every model passes, 1 with one precise line per problem otherwise (2 when the
path is not a folder). Checks, per model folder:

- `config.pbtxt` parses (tritonclient's ModelConfig protobuf), its name is the folder's name,
  max_batch_size > 0, preferred batch sizes <= max_batch_size, an instance_group (non-ensembles);
- numeric version folders exist; each holds the files its backend needs (python: model.py +
  model.onnx, and a runtime.json naming a known runtime and precision where there is one;
  onnxruntime: model.onnx; tensorrt_plan: model.plan) and the ONNX graph passes
  onnx.checker and has exactly the config's inputs/outputs (names, dtypes, dims, dynamic batch);
  a TensorRT engine's tensors are compared too where `tensorrt` is importable;
- model_warmup inputs are the config's inputs and their data files exist with the right size;
- `manifest.json`: one entry per version folder and no other, the sha256 of every file of every
  version, of config.pbtxt and of the warmup files match, the parity gate passed for every version;
- ensembles: every step's model exists in the repository with that version, each input_map /
  output_map names a real tensor of the step model, every input of a step is fed, each
  ensemble tensor is fed by an ensemble input or an earlier step with the same dtype and dims,
  every ensemble output is produced and every ensemble input used.
Leftover staging folders (`.videogan-export-*`) are reported too.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .contract import ensemble_loops
from .onnx_export import Tensor, compare_io
from .repository import (CONFIG, MANIFEST, MANIFEST_FORMAT, _backend_of, config_tensor, config_tensors, file_hashes,
                         parse_config, sha256_file)
from .templates.model import read_runtime

_SIZES = {"FP32": 4, "UINT8": 1, "TYPE_FP32": 4, "TYPE_UINT8": 1, "FP16": 2, "INT32": 4, "INT64": 8}


def _load_models(repository: Path, problems: list[str]) -> dict[str, tuple[Path, object]]:
    models = {}
    for folder in sorted(p for p in repository.iterdir() if p.is_dir()):
        if folder.name.startswith("."):
            if folder.name.startswith(".videogan-"):
                problems.append(f"{folder.name}: leftover staging folder of an interrupted export; delete it")
            continue
        cfg_path = folder / CONFIG
        if not cfg_path.is_file():
            problems.append(f"{folder.name}: no {CONFIG} (every folder of a repository is a model)")
            continue
        try:
            cfg = parse_config(cfg_path.read_text())
        except Exception as error:
            problems.append(f"{folder.name}/{CONFIG} does not parse: {error}")
            continue
        if cfg.name and cfg.name != folder.name:
            problems.append(f"{folder.name}/{CONFIG}: name is {cfg.name!r}, the folder is {folder.name!r}")
        models[folder.name] = (folder, cfg)
    return models


def _check_onnx(where: str, path: Path, inputs, outputs, problems, run_checker: bool) -> None:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:
        problems.append(f"{where}: cannot read {path.name}: {error}")
        return
    if run_checker:
        try:
            onnx.checker.check_model(str(path))
        except Exception as error:
            problems.append(f"{where}: onnx.checker rejects {path.name}: {str(error).splitlines()[0]}")
    for problem in compare_io(model, inputs, outputs):
        problems.append(f"{where}: {path.name} and {CONFIG} disagree: {problem}")


def _check_engine(where: str, path: Path, inputs, outputs, problems) -> None:
    from . import tensorrt as trt_support

    try:
        io = trt_support.engine_io(path.read_bytes())
    except trt_support.TensorRTUnavailable:
        return  # engine tensors are checked on a host with TensorRT; model.onnx beside it still is
    except Exception as error:
        problems.append(f"{where}: TensorRT cannot deserialize {path.name}: {error}")
        return
    for t in list(inputs) + list(outputs):
        got = io.get(t.name)
        if got is None:
            problems.append(f"{where}: engine has no tensor '{t.name}' (it has {sorted(io)})")
        elif got["dtype"] != t.dtype or list(got["shape"][1:]) != list(t.dims):
            problems.append(f"{where}: engine tensor '{t.name}' is {got['dtype']} {got['shape']}, "
                            f"config says {t.dtype} [-1, {', '.join(map(str, t.dims))}]")


def _check_model(name: str, folder: Path, cfg, models: dict, problems: list[str], run_checker: bool) -> None:
    # Long on purpose: a flat list of independent checks of one model folder, each appending its
    # problem; the ensemble, graph and manifest checks are functions of their own.
    backend = _backend_of(cfg)
    inputs, outputs = config_tensors(cfg.input), config_tensors(cfg.output)
    if cfg.max_batch_size <= 0:
        problems.append(f"{name}: max_batch_size must be > 0 (the wire contract batches on dim 0)")
    if not inputs or not outputs:
        problems.append(f"{name}: {CONFIG} declares no inputs or no outputs")
    for t in inputs + outputs:
        if any(d <= 0 for d in t.dims):
            problems.append(f"{name}: tensor '{t.name}' has non-positive dims {list(t.dims)}")
    if backend != "ensemble":
        if not cfg.instance_group:
            problems.append(f"{name}: no instance_group")
        if not cfg.HasField("dynamic_batching"):
            problems.append(f"{name}: no dynamic_batching")
        big = [b for b in cfg.dynamic_batching.preferred_batch_size if not 1 <= b <= cfg.max_batch_size]
        if big:
            problems.append(f"{name}: preferred_batch_size {big} outside 1..max_batch_size {cfg.max_batch_size}")
    versions = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        problems.append(f"{name}: no version folder")

    # --- version files
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    for v in versions:
        vdir, where = folder / str(v), f"{name}/{v}"
        if backend == "python":
            if not (vdir / "model.py").is_file():
                problems.append(f"{where}: no model.py (python backend)")
            try:
                read_runtime(str(vdir))
            except (OSError, ValueError) as error:
                problems.append(f"{where}: {error}")
            _check_onnx_file(where, vdir / params.get("ONNX_FILE", "model.onnx"), "for model.py to run",
                             inputs, outputs, problems, run_checker)
        elif backend == "onnxruntime":
            _check_onnx_file(where, vdir / (cfg.default_model_filename or "model.onnx"), "(onnxruntime backend)",
                             inputs, outputs, problems, run_checker)
        elif backend == "tensorrt_plan":
            plan = vdir / (cfg.default_model_filename or "model.plan")
            if not plan.is_file():
                problems.append(f"{where}: no {plan.name} (tensorrt_plan)")
            else:
                _check_engine(where, plan, inputs, outputs, problems)
            if (vdir / "model.onnx").is_file():
                _check_onnx(where, vdir / "model.onnx", inputs, outputs, problems, run_checker)
        elif backend == "ensemble":
            pass
        else:
            problems.append(f"{name}: unknown backend/platform {backend!r}")

    # --- warmup
    by_name = {t.name: t for t in inputs}
    for warm in cfg.model_warmup:
        if warm.batch_size < 1 or warm.batch_size > max(cfg.max_batch_size, 1):
            problems.append(f"{name}: warmup {warm.name!r} batch_size {warm.batch_size} outside 1..max_batch_size")
        if sorted(warm.inputs) != sorted(by_name):
            problems.append(f"{name}: warmup {warm.name!r} inputs {sorted(warm.inputs)} != config inputs {sorted(by_name)}")
        for key, entry in warm.inputs.items():
            t = by_name.get(key)
            if t is None:
                continue
            w = config_tensor(key, entry.data_type, entry.dims)
            if (w.dtype, w.dims) != (t.dtype, t.dims):
                problems.append(f"{name}: warmup input '{key}' is {w.dtype} {list(w.dims)}, "
                                f"config has {t.dtype} {list(t.dims)}")
            if entry.input_data_file:
                data = folder / "warmup" / entry.input_data_file
                want = int(np.prod(t.dims)) * _SIZES.get(t.dtype, 1)
                if not data.is_file():
                    problems.append(f"{name}: warmup data file warmup/{entry.input_data_file} is missing")
                elif data.stat().st_size != want:
                    problems.append(f"{name}: warmup/{entry.input_data_file} has {data.stat().st_size} bytes, "
                                    f"expected {want}")

    # --- ensemble wiring
    if backend == "ensemble":
        _check_ensemble(name, cfg, inputs, outputs, models, problems)

    # --- manifest
    _check_manifest(name, folder, versions, backend, problems)


def _check_onnx_file(where: str, onnx_file: Path, missing_note: str, inputs, outputs, problems: list[str],
                     run_checker: bool) -> None:
    if not onnx_file.is_file():
        problems.append(f"{where}: no {onnx_file.name} {missing_note}")
    else:
        _check_onnx(where, onnx_file, inputs, outputs, problems, run_checker)


def _check_ensemble(name, cfg, inputs, outputs, models, problems) -> None:
    steps = cfg.ensemble_scheduling.step
    if not steps:
        problems.append(f"{name}: ensemble without ensemble_scheduling steps")
        return
    looped = ensemble_loops((t.name for t in inputs), (t.name for t in outputs))
    if looped:
        problems.append(f"{name}: ensemble output(s) {looped} are named like an ensemble input: both names "
                        "denote one tensor, so the steps form a cycle and requests never complete "
                        "(Triton 2.51 loads such a config, loops and then crashes)")
    available = {t.name: t for t in inputs}     # ensemble tensor -> Tensor
    produced: dict[str, Tensor] = {}             # written by a step's output_map
    used = set()
    for index, step in enumerate(steps):
        where = f"{name}: step {index} ({step.model_name})"
        member = models.get(step.model_name)
        if member is None:
            problems.append(f"{where}: model {step.model_name!r} is not in the repository")
            continue
        m_folder, m_cfg = member
        if step.model_version not in (-1, 0):
            if not (m_folder / str(step.model_version)).is_dir():
                problems.append(f"{where}: version {step.model_version} does not exist")
        if m_cfg.max_batch_size < cfg.max_batch_size:
            problems.append(f"{where}: member max_batch_size {m_cfg.max_batch_size} < ensemble's {cfg.max_batch_size}")
        m_in = {t.name: t for t in config_tensors(m_cfg.input)}
        m_out = {t.name: t for t in config_tensors(m_cfg.output)}
        optional = {e.name for e in m_cfg.input if e.optional}
        for key, value in step.input_map.items():
            if key not in m_in:
                problems.append(f"{where}: input_map key {key!r} is not an input of {step.model_name} "
                                f"(its inputs: {sorted(m_in)})")
                continue
            if value not in available:
                problems.append(f"{where}: input {key!r} reads {value!r}, which no ensemble input or earlier step provides")
                continue
            used.add(value)
            src, dst = available[value], m_in[key]
            if (src.dtype, src.dims) != (dst.dtype, dst.dims):
                problems.append(f"{where}: {value!r} is {src.dtype} {list(src.dims)} but {step.model_name} input "
                                f"{key!r} is {dst.dtype} {list(dst.dims)}")
        unfed = sorted(set(m_in) - set(step.input_map) - optional)
        if unfed:
            problems.append(f"{where}: input(s) {unfed} of {step.model_name} are not fed")
        for key, value in step.output_map.items():
            if key not in m_out:
                problems.append(f"{where}: output_map key {key!r} is not an output of {step.model_name} "
                                f"(its outputs: {sorted(m_out)})")
                continue
            if value in produced or value in {t.name for t in inputs}:
                problems.append(f"{where}: ensemble tensor {value!r} is already an ensemble input or written by an "
                                "earlier step (a cycle)")
            produced[value] = available[value] = Tensor(value, m_out[key].dtype, m_out[key].dims)
    for t in outputs:
        got = produced.get(t.name)
        if got is None:
            problems.append(f"{name}: ensemble output {t.name!r} is produced by no step")
        elif (got.dtype, got.dims) != (t.dtype, t.dims):
            problems.append(f"{name}: ensemble output {t.name!r} is declared {t.dtype} {list(t.dims)} but the "
                            f"step produces {got.dtype} {list(got.dims)}")
    unused = sorted({t.name for t in inputs} - used)
    if unused:
        problems.append(f"{name}: ensemble input(s) {unused} are used by no step")


def _check_manifest(name, folder, versions, backend, problems) -> None:
    path = folder / MANIFEST
    if not path.is_file():
        problems.append(f"{name}: no {MANIFEST}")
        return
    try:
        manifest = json.loads(path.read_text())
    except Exception as error:
        problems.append(f"{name}/{MANIFEST} does not parse: {error}")
        return
    if manifest.get("format") != MANIFEST_FORMAT:
        problems.append(f"{name}/{MANIFEST}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    if manifest.get("model") != name:
        problems.append(f"{name}/{MANIFEST}: describes model {manifest.get('model')!r}")
    if manifest.get("backend") and manifest["backend"] != backend:
        problems.append(f"{name}/{MANIFEST}: backend {manifest['backend']!r}, {CONFIG} says {backend!r}")
    for rel, info in (manifest.get("model_files") or {}).items():
        target = folder / rel
        if not target.is_file():
            problems.append(f"{name}: {rel} is listed in {MANIFEST} but missing")
        elif sha256_file(target) != info.get("sha256"):
            problems.append(f"{name}: sha256 of {rel} does not match {MANIFEST} (edited after export?)")
    if CONFIG not in (manifest.get("model_files") or {}):
        problems.append(f"{name}/{MANIFEST}: no sha256 for {CONFIG}")
    warm = folder / "warmup"
    for rel in file_hashes(warm):
        if f"warmup/{rel}" not in (manifest.get("model_files") or {}):
            problems.append(f"{name}: warmup/{rel} is not listed in {MANIFEST}")
    listed = manifest.get("versions") or {}
    listed_ints = sorted(int(v) for v in listed if str(v).isdigit())
    if listed_ints != versions:
        missing = sorted(set(versions) - set(listed_ints))
        gone = sorted(set(listed_ints) - set(versions))
        if missing:
            problems.append(f"{name}: version folder(s) {missing} are not in {MANIFEST}")
        if gone:
            problems.append(f"{name}: {MANIFEST} lists version(s) {gone} that have no folder")
    if versions and manifest.get("latest_version") != max(versions):
        problems.append(f"{name}/{MANIFEST}: latest_version {manifest.get('latest_version')} but the newest "
                        f"folder is {max(versions)}")
    for v in versions:
        entry = listed.get(str(v))
        if entry is None:
            continue
        files = entry.get("files") or {}
        actual = file_hashes(folder / str(v))
        for rel in sorted(set(actual) - set(files)):
            problems.append(f"{name}/{v}/{rel} is not listed in {MANIFEST}")
        for rel in sorted(set(files) - set(actual)):
            problems.append(f"{name}/{v}/{rel} is listed in {MANIFEST} but missing")
        for rel in sorted(set(files) & set(actual)):
            if files[rel].get("sha256") != actual[rel]["sha256"]:
                problems.append(f"{name}/{v}/{rel}: sha256 {actual[rel]['sha256'][:12]}… does not match "
                                f"{MANIFEST} ({str(files[rel].get('sha256'))[:12]}…)")
        parity = entry.get("parity")
        if not parity:
            problems.append(f"{name}/{MANIFEST}: version {v} has no parity figures")
        elif not parity.get("passed"):
            problems.append(f"{name}/{MANIFEST}: version {v} did not pass the parity gate")
        for key in ("family", "preset", "checkpoint", "exported_at"):
            if key not in entry:
                problems.append(f"{name}/{MANIFEST}: version {v} has no {key!r}")


def check_repository(repository: str | Path, run_checker: bool = True) -> tuple[list[str], list[str]]:
    """(problems, model names). No problems: the repository is valid."""
    repository = Path(repository)
    problems: list[str] = []
    if not repository.is_dir():
        return [f"{repository} is not a folder"], []
    models = _load_models(repository, problems)
    if not models and not problems:
        problems.append(f"{repository} holds no model (no */{CONFIG})")
    for name, (folder, cfg) in models.items():
        _check_model(name, folder, cfg, models, problems, run_checker)
    return problems, sorted(models)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repository", help="model repository folder (e.g. model_repository)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument("--skip-onnx-checker", action="store_true",
                        help="compare tensors but do not run onnx.checker (faster on large graphs)")
    parser.add_argument("--quality", nargs="*", metavar="MODEL",
                        help="also print the measured quality each manifest carries (export --quality), "
                             "for these models (default: all)")
    args = parser.parse_args(argv)
    repository = Path(args.repository)
    if not repository.is_dir():
        print(f"export.check: {repository} is not a folder", file=sys.stderr)
        return 2
    problems, models = check_repository(repository, run_checker=not args.skip_onnx_checker)
    if args.json:
        print(json.dumps({"repository": str(repository), "ok": not problems, "models": models, "problems": problems}))
    elif problems:
        print(f"export.check: {repository}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
    else:
        print(f"export.check: {repository}: OK ({len(models)} models: {', '.join(models)})")
    if args.quality is not None:
        for name in args.quality or models:
            print(quality_summary(repository / name))
    return 1 if problems else 0


def quality_summary(folder: Path) -> str:
    """One paragraph on what a served model's manifest says about its measured quality."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return f"{folder.name}: no readable {MANIFEST}"
    versions = manifest.get("versions") or {}
    latest = versions.get(str(manifest.get("latest_version")), {}) if isinstance(versions, dict) else {}
    entries = latest.get("quality") or []
    step = (latest.get("checkpoint") or {}).get("step")
    if not entries:
        return f"{folder.name} (step {step}): no quality figures in its manifest"
    lines = [f"{folder.name} (trained {step} steps):"]
    for e in entries:
        if "fvd_floor" in e:
            lines.append(f"  real-vs-real FVD floor {e['fvd_floor']:.1f} (N = {e['num_videos']})")
            continue
        parts = [f"FVD {e['fvd']:.1f} (N = {e['num_videos']}, vs held-out)"]
        digits = (e.get("digits") or {}).get("requested_digit_found")
        if digits is not None:
            parts.append(f"requested digit found in {100 * digits:.0f} % of videos")
        rec = e.get("reconstruction")
        if rec:
            parts.append(f"reconstruction {rec['reconstruction']['psnr_db']:.1f} dB PSNR / SSIM "
                         f"{rec['reconstruction']['ssim']:.3f} ({rec['clips']} held-out clips; baselines: black "
                         f"{rec['black']['psnr_db']:.1f} dB, mean frame {rec['mean_frame']['psnr_db']:.1f} dB)")
        lines.append("  " + "; ".join(parts))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
