"""Shared test fixtures: a tiny real model repository and a real embedded Triton server.

TEST FIXTURES ONLY, not product code. ``build_tiny_repository`` writes a miniature model
repository that follows the wire contract in DESIGN.md with real ONNX graphs (made with
``torch.onnx.export``) run by a python-backend ``model.py`` through ONNX Runtime:

- ``tiny_sample``     z_a FP32 [-1, 6], z_m FP32 [-1, 5]          -> video UINT8 [-1, 4, 8, 8, 3]
- ``tinycond_sample`` z_a, z_m, label FP32 one-hot [-1, 3]         -> video UINT8 [-1, 4, 8, 8, 3]
- ``tiny_encode``     video UINT8 [-1, 4, 8, 8, 3] -> z_a_mean, z_a_logvar [-1, 6], z_m_mean, z_m_logvar [-1, 5]
- ``tiny_decode``     z_a, z_m -> video (the same generator as tiny_sample)
- ``tiny_reconstruct`` Triton ensemble: video -> tiny_encode (means) -> tiny_decode -> ``reconstruction``

Each graph is a seeded linear layer + tanh + scale to uint8, so outputs are deterministic.
``model.py`` refuses non-finite float inputs with a clear ``pb_utils.TritonError``.

``triton_server`` (session scope) runs the real bundled ``tritonserver`` over that
repository; ``free_port`` picks a free TCP port.
"""

from __future__ import annotations

import os
import pathlib
import warnings

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# An ensemble's output cannot be named like its input: both names denote the same ensemble
# tensor, the graph becomes a cycle (decode's output re-triggers encode) and the request
# never completes (Triton 2.51 accepts such a config and loops; a later request then
# crashed the server). Hence "reconstruction", not "video", for the reconstruct output.
RECONSTRUCT_OUTPUT = "reconstruction"

TINY = {"Da": 6, "Dm": 5, "K": 3, "T": 4, "H": 8, "W": 8, "max_batch_size": 8}

# The python-backend model.py of the fixture repository. It loads <version>/model.onnx,
# checks every request (finite floats), batches the valid ones into one ONNX Runtime call
# and answers each request separately.
FIXTURE_MODEL_PY = r'''
"""Test fixture: run <version>/model.onnx with ONNX Runtime inside Triton's python backend."""
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.model_name = args["model_name"]
        config = json.loads(args["model_config"])
        self.inputs = [(i["name"], pb_utils.triton_string_to_numpy(i["data_type"]))
                       for i in config["input"]]
        self.outputs = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"]))
                        for o in config["output"]]
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, sess_options=options,
                                            providers=["CPUExecutionProvider"])

    def _check(self, arrays):
        for name, array in arrays.items():
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                bad = int(np.size(array) - np.isfinite(array).sum())
                return pb_utils.TritonError(
                    f"{self.model_name}: input '{name}' has {bad} non-finite value(s) (NaN or Inf); "
                    "latents must be finite",
                    pb_utils.TritonError.INVALID_ARG)
        return None

    def execute(self, requests):
        responses = [None] * len(requests)
        valid, batches = [], []
        for index, request in enumerate(requests):
            arrays = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                      for name, _ in self.inputs}
            error = self._check(arrays)
            if error is not None:
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=error)
            else:
                valid.append(index)
                batches.append(arrays)
        if valid:
            feed = {name: np.ascontiguousarray(np.concatenate([b[name] for b in batches]), dtype=dtype)
                    for name, dtype in self.inputs}
            try:
                results = self.session.run([name for name, _ in self.outputs], feed)
            except Exception as exc:  # report, never crash the stub
                error = pb_utils.TritonError(f"{self.model_name}: ONNX Runtime failed: {exc}")
                for index in valid:
                    responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=error)
                return responses
            start = 0
            for index, arrays in zip(valid, batches):
                n = next(iter(arrays.values())).shape[0]
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[start:start + n], dtype=dtype))
                           for (name, dtype), out in zip(self.outputs, results)]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += n
        return responses
'''


def _tensor_config(kind: str, name: str, dtype: str, dims) -> str:
    return f'{kind} [{{ name: "{name}" data_type: {dtype} dims: [ {", ".join(str(d) for d in dims)} ] }}]'


def _python_config(name: str, inputs, outputs, max_batch_size: int) -> str:
    lines = [f'name: "{name}"', 'backend: "python"', f"max_batch_size: {max_batch_size}"]
    for n, dt, dims in inputs:
        lines.append(_tensor_config("input", n, dt, dims))
    for n, dt, dims in outputs:
        lines.append(_tensor_config("output", n, dt, dims))
    lines.append("dynamic_batching { max_queue_delay_microseconds: 2000 }")
    lines.append("instance_group [{ count: 1 kind: KIND_CPU }]")
    return "\n".join(lines) + "\n"


def build_tiny_repository(root: str | os.PathLike, *, broken: bool = False,
                          looping_ensemble: bool = False) -> pathlib.Path:
    """Write the fixture repository under ``root`` and return its path.

    ``broken=True`` adds a model whose ``model.py`` raises at load time, and
    ``looping_ensemble=True`` names the reconstruct ensemble's output ``video`` like its input
    (a cycle), to test start-up errors.
    """
    import torch  # test-only dependency of the fixture

    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    Da, Dm, K, T, H, W = (TINY[k] for k in ("Da", "Dm", "K", "T", "H", "W"))
    mbs = TINY["max_batch_size"]
    video_dims = [T, H, W, 3]

    class Generator(torch.nn.Module):
        def __init__(self, n_in: int, seed: int):
            super().__init__()
            torch.manual_seed(seed)
            self.fc = torch.nn.Linear(n_in, T * H * W * 3)

        def forward(self, *latents):
            x = torch.tanh(self.fc(torch.cat(latents, dim=1)))
            x = torch.clamp(torch.round((x + 1.0) * 127.5), 0, 255)
            return x.to(torch.uint8).reshape(-1, T, H, W, 3)

    class Encoder(torch.nn.Module):
        def __init__(self, seed: int):
            super().__init__()
            torch.manual_seed(seed)
            self.fc = torch.nn.Linear(T * H * W * 3, 2 * (Da + Dm))

        def forward(self, video):
            x = video.to(torch.float32).reshape(video.shape[0], -1) / 127.5 - 1.0
            y = self.fc(x)
            return (y[:, :Da], y[:, Da:2 * Da], y[:, 2 * Da:2 * Da + Dm], y[:, 2 * Da + Dm:])

    def export(module, args, in_names, out_names, model_dir: pathlib.Path):
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is enough here
            _export(module, args, in_names, out_names, model_dir)
        (model_dir / "1" / "model.py").write_text(FIXTURE_MODEL_PY)

    def _export(module, args, in_names, out_names, model_dir: pathlib.Path):
        torch.onnx.export(
            module.eval(), args, str(model_dir / "1" / "model.onnx"),
            input_names=in_names, output_names=out_names,
            dynamic_axes={n: {0: "batch"} for n in in_names + out_names},
            opset_version=17, dynamo=False,
        )

    fp = "TYPE_FP32"
    z_in = [("z_a", fp, [Da]), ("z_m", fp, [Dm])]
    video_out = [("video", "TYPE_UINT8", video_dims)]
    z = (torch.zeros(2, Da), torch.zeros(2, Dm))

    for name, gen_seed in (("tiny_sample", 0), ("tiny_decode", 0)):
        d = root / name
        export(Generator(Da + Dm, gen_seed), z, ["z_a", "z_m"], ["video"], d)
        (d / "config.pbtxt").write_text(_python_config(name, z_in, video_out, mbs))

    d = root / "tinycond_sample"
    export(Generator(Da + Dm + K, 1), z + (torch.zeros(2, K),), ["z_a", "z_m", "label"], ["video"], d)
    (d / "config.pbtxt").write_text(
        _python_config("tinycond_sample", z_in + [("label", fp, [K])], video_out, mbs))

    d = root / "tiny_encode"
    enc_out = [("z_a_mean", fp, [Da]), ("z_a_logvar", fp, [Da]),
               ("z_m_mean", fp, [Dm]), ("z_m_logvar", fp, [Dm])]
    export(Encoder(2), (torch.zeros(2, T, H, W, 3, dtype=torch.uint8),), ["video"],
           [n for n, _, _ in enc_out], d)
    (d / "config.pbtxt").write_text(
        _python_config("tiny_encode", [("video", "TYPE_UINT8", video_dims)], enc_out, mbs))

    recon_output = "video" if looping_ensemble else RECONSTRUCT_OUTPUT
    d = root / "tiny_reconstruct"
    (d / "1").mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(f'''name: "tiny_reconstruct"
platform: "ensemble"
max_batch_size: {mbs}
{_tensor_config("input", "video", "TYPE_UINT8", video_dims)}
{_tensor_config("output", recon_output, "TYPE_UINT8", video_dims)}
ensemble_scheduling {{
  step [
    {{
      model_name: "tiny_encode"
      model_version: -1
      input_map {{ key: "video" value: "video" }}
      output_map {{ key: "z_a_mean" value: "za" }}
      output_map {{ key: "z_m_mean" value: "zm" }}
    }},
    {{
      model_name: "tiny_decode"
      model_version: -1
      input_map {{ key: "z_a" value: "za" }}
      input_map {{ key: "z_m" value: "zm" }}
      output_map {{ key: "video" value: "{recon_output}" }}
    }}
  ]
}}
''')

    if broken:
        d = root / "tinybroken_sample"
        (d / "1").mkdir(parents=True, exist_ok=True)
        (d / "1" / "model.py").write_text(
            "class TritonPythonModel:\n"
            "    def initialize(self, args):\n"
            "        raise RuntimeError('fixture model that never loads')\n")
        (d / "config.pbtxt").write_text(_python_config("tinybroken_sample", z_in, video_out, mbs))
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
