"""Checkpoints: written atomically, loaded for resuming or for inference.

A checkpoint is one `torch.save` file holding the family, preset and full model config (so it
rebuilds without flags), every network's weights, the optimizers, the step, all RNG states and
the training data's provenance. It is written to a temporary file in the same folder, flushed
and fsynced, then renamed over the old one, so a crash never leaves a half-written checkpoint.

Reading never runs code from the file: ``torch.load(weights_only=True)`` takes tensors and
plain data only (what a checkpoint holds: RNG states are tensors, metadata is JSON-like), and
refuses a pickled callable. A run that averages its weights (train/ema.py) also keeps the average
under "ema"; inference (sampling, evaluation, export) uses the average wherever it exists. Its archive is checked first (CRC-32 of every part), because
torch.load reads damaged tensor bytes without a word. Every failure is one ValueError line.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from common.atomic import atomic_path
from .models import VideoGAN, build_from_config, make_config

FORMAT_VERSION = 1


def atomic_torch_save(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def _check_archive(path: Path) -> None:
    """torch.save writes a zip: refuse one cut short (no central directory) or with a damaged part."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path} is truncated or not a checkpoint ({error}); it was not used") from error
    if damaged is not None:
        raise ValueError(f"{path} is corrupt: its part {damaged} fails the CRC-32 check (a damaged copy or disk); "
                         "it was not used")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's dict, loaded without running code from it; ValueError (one line) if it cannot be."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    _check_archive(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # weights_only refused a pickled object (or the pickle is broken)
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f"a pickled {found.group(1)}" if found else f"a pickle torch will not load safely ({_first_line(error)})"
        raise ValueError(f"{path} was refused: it holds {what}, which could run code when loaded; a videogan "
                         "checkpoint holds only tensors and plain data") from error
    except Exception as error:
        raise ValueError(f"{path} is not a readable videogan checkpoint: {_first_line(error)}") from error
    if not isinstance(state, dict) or state.get("family") not in _family_names() or "model" not in state:
        raise ValueError(f"{path} is not a videogan checkpoint (no family/model entries)")
    return state


def _family_names() -> tuple[str, ...]:
    from .families import family_names
    return family_names()


def model_from_checkpoint(state: dict, averaged: bool = False) -> VideoGAN:
    """The live networks (for resuming), or with averaged=True the weight average where the
    checkpoint has one (for inference)."""
    config = make_config(state["family"], state["preset"], **state["config"])
    model = build_from_config(state["family"], state["preset"], config)
    model.load_state_dict(state["ema"]["weights"] if averaged and state.get("ema") else state["model"])
    return model


def load_for_inference(path: str | Path) -> tuple[VideoGAN, dict]:
    """→ (model in eval mode with spectral norm baked in, metadata without the weights).
    The weights are the run's average where it kept one; meta["weights"] says which."""
    state = read_checkpoint(path)
    model = model_from_checkpoint(state, averaged=True).for_inference()
    meta = {k: v for k, v in state.items() if k not in ("model", "optimizers", "rng", "ema")}
    ema = state.get("ema")
    meta["weights"] = (f"average (decay {ema['decay']}, since step {ema['start_step']})" if ema else "live")
    return model, meta


def checkpoint_state(model: VideoGAN, step: int = 0, optimizers: dict | None = None, rng: dict | None = None,
                     data: dict | None = None, **extra) -> dict:
    """Everything needed to resume training or to export: config, weights, optimizers, RNG."""
    from dataclasses import asdict
    return {
        "format_version": FORMAT_VERSION,
        "family": model.family,
        "preset": model.preset,
        "config": asdict(model.config),
        "model": model.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in (optimizers or {}).items()},
        "step": step,
        "rng": rng or {},
        "data": data or {},
        **extra,
    }


def save_checkpoint(path: str | Path, model: VideoGAN, **kwargs) -> None:
    atomic_torch_save(checkpoint_state(model, **kwargs), path)
