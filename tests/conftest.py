"""Shared test fixtures: a tiny model repository written by the real export, and a real embedded
Triton server over it.

``build_tiny_repository`` trains nothing: it builds the toy family of tests/toy_family.py
(registered for the duration, like any fourth system would be), saves two checkpoints and runs
the product export (``export.__main__.export_checkpoint``: tracing, parity gate, the template
``model.py`` with OpenVINO, generated ``config.pbtxt``, manifests, ``export.check``) into one
repository that follows the wire contract in DESIGN.md:

- ``tiny_sample``     z_a FP32 [-1, 6], z_m FP32 [-1, 5]          -> video UINT8 [-1, 4, 8, 8, 3]
- ``tinycond_sample`` z_a, z_m, label FP32 one-hot [-1, 3]         -> video UINT8 [-1, 4, 8, 8, 3]
- ``tiny_encode``     video UINT8 [-1, 4, 8, 8, 3] -> z_a_mean, z_a_logvar [-1, 6], z_m_mean, z_m_logvar [-1, 5]
- ``tiny_decode``     z_a, z_m -> video (the same generator as tiny_sample)
- ``tiny_reconstruct`` Triton ensemble: video -> tiny_encode (means) -> tiny_decode -> ``reconstruction``

The weights are seeded, so outputs are deterministic; the served model.py refuses non-finite
float inputs with a clear error, as in production.

``triton_server`` (session scope) runs the real bundled ``tritonserver`` over that
repository; ``free_port`` picks a free TCP port.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from export.contract import RECONSTRUCT_OUTPUT  # noqa: F401 (the tests import it from here)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

TINY = {"Da": 6, "Dm": 5, "K": 3, "T": 4, "H": 8, "W": 8, "max_batch_size": 8}


def build_tiny_repository(root: str | os.PathLike) -> pathlib.Path:
    """Export the toy family's two checkpoints (tiny: with encoder; tinycond: conditional,
    sample only) into the repository ``root`` with the product export, and return its path."""
    import torch

    from export.__main__ import export_checkpoint
    from train.checkpoint import save_checkpoint
    from train.families import register, unregister
    from train.models import build_model
    from toy_family import TOY

    root = pathlib.Path(root)
    checkpoints = root.parent / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    config = dict(z_a_dim=TINY["Da"], z_m_dim=TINY["Dm"], frames=TINY["T"], resolution=TINY["H"])
    register(TOY)
    threads = torch.get_num_threads()
    try:
        for name, seed, extra in (("tiny", 0, {}), ("tinycond", 1, {"num_classes": TINY["K"], "encoder": False})):
            torch.manual_seed(seed)
            path = checkpoints / f"{name}.pt"
            save_checkpoint(path, build_model(TOY.name, "tiny", **config, **extra), step=1,
                            data={"name": "untrained test checkpoint", "clips": 0})
            export_checkpoint(path, root, name=name, max_batch_size=TINY["max_batch_size"],
                              parity_batches=(1, 2), threads=1)
    finally:
        unregister(TOY.name)
        torch.set_num_threads(threads)
    return root


@pytest.fixture(scope="session")
def tiny_repository(tmp_path_factory) -> pathlib.Path:
    """The fixture repository (built once per test session)."""
    return build_tiny_repository(tmp_path_factory.mktemp("repo") / "model_repository")


@pytest.fixture(scope="session")
def triton_server(tiny_repository, tmp_path_factory):
    """A real embedded Triton server over ``tiny_repository`` on free ports (session scope)."""
    from serving.server import TritonServer

    log = tmp_path_factory.mktemp("triton-log") / "tritonserver.log"
    with TritonServer(tiny_repository, log_file=log) as server:
        yield server


@pytest.fixture()
def free_port():
    from serving.server import find_free_port

    return find_free_port()
