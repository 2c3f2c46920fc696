"""Checkpoints cannot execute code, and a damaged one is refused in one line (train/checkpoint.py)."""

from __future__ import annotations

import builtins
import zipfile

import pytest
import torch

from train.checkpoint import load_for_inference, model_from_checkpoint, read_checkpoint, save_checkpoint
from train.models import FAMILIES, build_model


def _save_trained_like(path, family: str) -> None:
    """A checkpoint with everything a training run stores: weights, Adam state, RNG, data and args."""
    torch.manual_seed(0)
    model = build_model(family, "tiny")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    sum(p.float().sum() for p in model.parameters()).backward()
    optimizer.step()
    save_checkpoint(path, model, step=3, optimizers={"all": optimizer}, rng={"torch": torch.get_rng_state()},
                    data={"name": "moving-mnist", "steps": [1, 2], "class_names": ["0", "1"], "seed": None},
                    args={"model": family, "resume": True, "lr": 1e-4, "set": ["a=b"]})


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_of_every_family_loads_with_weights_only(tmp_path, family):
    path = tmp_path / "checkpoint.pt"
    _save_trained_like(path, family)
    state = read_checkpoint(path)
    assert state["step"] == 3 and state["family"] == family
    assert isinstance(state["rng"]["torch"], torch.Tensor)
    assert state["optimizers"]["all"]["state"]  # the Adam moments came back
    model = model_from_checkpoint(state)
    assert sum(p.numel() for p in model.parameters()) > 0


class _Payload:
    """Unpickling this calls open(marker, "w"): the file appears if the pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def test_checkpoint_with_a_pickled_callable_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"family": "g3an", "preset": "tiny", "model": {}, "step": 0, "extra": _Payload(marker)}, path)
    for load in (read_checkpoint, load_for_inference):
        with pytest.raises(ValueError) as info:
            load(path)
        message = str(info.value)
        assert "\n" not in message
        assert "was refused" in message and "io.open" in message and str(path) in message
    assert not marker.exists()


def test_truncated_checkpoint_is_refused_in_one_line(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _save_trained_like(path, "g3an")
    data = path.read_bytes()
    for cut in (0, 100, len(data) // 2, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"is truncated or not a checkpoint") as info:
            read_checkpoint(path)
        assert "\n" not in str(info.value)


def test_corrupt_checkpoint_is_refused_although_torch_would_load_it(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _save_trained_like(path, "g3an")
    with zipfile.ZipFile(path) as archive:
        biggest = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    start = biggest.header_offset + 30 + len(biggest.filename.encode()) + len(biggest.extra) + 16
    data[start:start + 64] = bytes(64)  # zeros inside a tensor's bytes
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["step"] == 3  # torch alone would not notice
    with pytest.raises(ValueError, match=r"is corrupt: its part .* fails the CRC-32 check") as info:
        read_checkpoint(path)
    assert "\n" not in str(info.value)
