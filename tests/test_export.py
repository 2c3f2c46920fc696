"""Export: ONNX graphs of the wire contract, the parity gate (OpenVINO and ONNX Runtime, FP32 and
BF16), the Triton repository, export.check, the served model.py and its sessions.

Untrained `tiny` checkpoints (made with train.checkpoint.save_checkpoint) stand in for trained
ones. Real OpenVINO and ONNX Runtime everywhere; the last test runs the real embedded Triton
server. Parity runs on batches 1 and 3 here to keep the suite light (the CLI default is 1, 3, 8).

BF16: the machine the suite runs on may have no AVX512-BF16 / AMX (the development machine is an
AVX2 AMD EPYC today). There, the bf16 export is tested through its refusal and through
simulated CPU flags (`train.runtime.cpu_flags`, what the exporter reads): OpenVINO then
compiles the bf16 request in f32 (it says so: the manifest records the compiled precision), so
the BF16 gate's bounds are tested on graphs whose weights are rounded to bf16 and coarser.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from export import repository as repo_mod
from export.__main__ import main as export_main
from export.check import check_repository
from export.check import main as check_main
from export.onnx_export import (RECONSTRUCT_OUTPUT, ExportError, GraphSpec, Tensor, export_onnx, graph_specs,
                                uint8_to_float_video)
from export.parity import BF16_TOLERANCE, ParityError, Runtime, Tolerance, check_parity
from export.repository import parse_config
from train.checkpoint import save_checkpoint
from train.models import build_model

torch.set_num_threads(1)
BATCHES = "1,3"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for family in ("g3an", "encgan3", "avlae"):
        torch.manual_seed(0)
        out[family] = folder / f"{family}.pt"
        save_checkpoint(out[family], build_model(family, "tiny"), step=7,
                        data={"name": "untrained test checkpoint", "clips": 0}, metrics={"fvd": None})
    return out


def export(checkpoint, repository, *extra, name=None, target="cpu"):
    argv = ["--checkpoint", str(checkpoint), "--repository", str(repository), "--target", target,
            "--parity-batches", BATCHES, "--threads", "1", *extra]
    if name:
        argv += ["--name", name]
    return export_main(argv)


def tree_digest(folder: Path) -> dict:
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def config(repository: Path, model: str):
    return parse_config((repository / model / "config.pbtxt").read_text())


def tensors(cfg):
    return [(t.name, t.data_type, list(t.dims)) for t in cfg.input], \
           [(t.name, t.data_type, list(t.dims)) for t in cfg.output]


# --- the whole export, both targets, every family -------------------------------------------------

@pytest.mark.parametrize("family", ["g3an", "encgan3", "avlae"])
def test_export_cpu_and_gpu_repositories_pass_check(family, checkpoints, tmp_path, capsys):
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    assert export(checkpoints[family], cpu, "--family", family, name=family) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert export(checkpoints[family], gpu, name=family, target="gpu") == 0

    kinds = ["sample"] + (["encode", "decode", "reconstruct"] if family != "g3an" else [])
    models = sorted(f"{family}_{k}" for k in kinds)
    for repository in (cpu, gpu):
        problems, found = check_repository(repository)
        assert problems == [] and found == models
        assert check_main([str(repository)]) == 0
    assert summary["version"] == 1 and sorted(summary["models"]) == models

    for model in models:
        c_cfg, g_cfg = config(cpu, model), config(gpu, model)
        assert tensors(c_cfg) == tensors(g_cfg)            # same names, dtypes, shapes on both targets
        assert c_cfg.max_batch_size == g_cfg.max_batch_size == 8
        manifest = json.loads((cpu / model / "manifest.json").read_text())
        entry = manifest["versions"]["1"]
        assert entry["family"] == family and entry["preset"] == "tiny"
        assert entry["checkpoint"]["step"] == 7 and entry["checkpoint"]["data"]["name"] == "untrained test checkpoint"
        assert entry["metrics"] == {"fvd": None}
        assert entry["parity"]["passed"] and entry["parity"]["batches"] == [1, 3]
        assert manifest["model_files"]["config.pbtxt"]["sha256"]
        if model.endswith("_reconstruct"):
            assert c_cfg.platform == g_cfg.platform == "ensemble"
            assert [o.name for o in c_cfg.output] == [RECONSTRUCT_OUTPUT]
            assert entry["parity"]["tensors"]["video"]["max_levels"] <= 1
            continue
        assert set(entry["files"]) == {"model.onnx", "model.py", "runtime.json"}
        assert json.loads((cpu / model / "1" / "runtime.json").read_text()) == {"runtime": "openvino",
                                                                                 "precision": "fp32"}
        assert entry["runtime"] == {"name": "openvino", "precision": "fp32"}
        assert entry["parity"]["runtime"].startswith("openvino") and "compiled: f32" in entry["parity"]["runtime"]
        assert entry["parity"]["tolerance"]["precision"] == "fp32"
        assert all(len(f["sha256"]) == 64 for f in entry["files"].values())
        for tensor, figures in entry["parity"]["tensors"].items():
            if figures["dtype"] == "UINT8":
                assert figures["max_levels"] <= 1
            else:
                assert figures["max_abs"] <= 1e-4 + 1e-5 * figures["max_ref"]
        if model.endswith(("_sample", "_decode")):
            assert entry["parity"]["tensors"]["video_float"]["max_abs"] <= 1e-4  # float before quantisation
        # cpu: python backend with OpenVINO threads, shards and compile cache configurable;
        # gpu: onnxruntime + TensorRT FP16 accelerator
        assert c_cfg.backend == "python" and c_cfg.instance_group[0].kind == c_cfg.instance_group[0].KIND_CPU
        assert {k: v.string_value for k, v in c_cfg.parameters.items()} == {
            "OV_THREADS": "0", "OV_BATCH_SHARDS": "0", "OV_CACHE_DIR": "auto", "ONNX_FILE": "model.onnx"}
        assert g_cfg.backend == "onnxruntime" and g_cfg.instance_group[0].kind == g_cfg.instance_group[0].KIND_GPU
        accelerator = g_cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
        assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
        assert list(c_cfg.dynamic_batching.preferred_batch_size) == [4, 8]
        assert c_cfg.version_policy.latest.num_versions == 2
        assert [w.batch_size for w in c_cfg.model_warmup] == [1, 4, 8]   # the batch sizes the batcher forms
        assert (cpu / model / "1" / "model.onnx").read_bytes() == (gpu / model / "1" / "model.onnx").read_bytes()
        graph = onnx.load(str(cpu / model / "1" / "model.onnx"))
        onnx.checker.check_model(graph)
        assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
        assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch axis
        assert not {n.op_type for n in graph.graph.node} & {"RandomNormal", "RandomNormalLike", "RandomUniform",
                                                            "RandomUniformLike", "Dropout"}


def test_exported_sample_matches_pytorch_and_quantises_in_graph(checkpoints, tmp_path):
    import onnxruntime as ort

    from train.checkpoint import load_for_inference

    assert export(checkpoints["encgan3"], tmp_path / "r") == 0
    model, _ = load_for_inference(checkpoints["encgan3"])
    session = ort.InferenceSession(str(tmp_path / "r" / "encgan3_sample" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    z_a, z_m = rng.standard_normal((2, 128), dtype=np.float32), rng.standard_normal((2, 10), dtype=np.float32)
    video = session.run(None, {"z_a": z_a, "z_m": z_m})[0]
    with torch.no_grad():
        x = model.sample(torch.from_numpy(z_a), torch.from_numpy(z_m))
    expected = torch.clamp(torch.round((x + 1) * 127.5), 0, 255).to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()
    assert video.dtype == np.uint8 and video.shape == (2, 16, 64, 64, 3)
    assert np.abs(video.astype(int) - expected.astype(int)).max() <= 1
    # encode takes uint8 frames-last and converts to [-1, 1] NCTHW inside the graph
    enc = ort.InferenceSession(str(tmp_path / "r" / "encgan3_encode" / "1" / "model.onnx"),
                               providers=["CPUExecutionProvider"])
    clip = rng.integers(0, 256, (2, 16, 64, 64, 3), dtype=np.uint8)
    z_a_mean = enc.run(["z_a_mean"], {"video": clip})[0]
    with torch.no_grad():
        ref = model.encode(uint8_to_float_video(torch.from_numpy(clip)))["z_a_mean"].numpy()
    assert np.abs(z_a_mean - ref).max() < 1e-4


# --- parity gate ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def g3an_sample_graph():
    torch.manual_seed(0)
    model = build_model("g3an", "tiny").for_inference()
    spec = graph_specs(model)[0]
    return spec, export_onnx(spec)


def _tampered_weights(proto: onnx.ModelProto) -> onnx.ModelProto:
    bad = onnx.ModelProto()
    bad.CopyFrom(proto)
    biggest = max(bad.graph.initializer, key=lambda t: np.prod(t.dims))
    array = onnx.numpy_helper.to_array(biggest).copy()
    array += 0.05
    biggest.CopyFrom(onnx.numpy_helper.from_array(array, biggest.name))
    return bad


def _tampered_quantisation(proto: onnx.ModelProto) -> onnx.ModelProto:
    """127.5 -> 120 in (x + 1) * 127.5: the float output is untouched, the uint8 video is off."""
    bad = onnx.ModelProto()
    bad.CopyFrom(proto)
    for node in bad.graph.node:
        if node.op_type == "Constant":
            value = onnx.numpy_helper.to_array(node.attribute[0].t)
            if value.size == 1 and float(value.reshape(-1)[0]) == 127.5:
                node.attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(np.array(120.0, value.dtype)))
                return bad
    for init in bad.graph.initializer:
        value = onnx.numpy_helper.to_array(init)
        if value.size == 1 and float(value.reshape(-1)[0]) == 127.5:
            init.CopyFrom(onnx.numpy_helper.from_array(np.array(120.0, value.dtype).reshape(value.shape), init.name))
            return bad
    raise AssertionError("no 127.5 constant in the graph")


def test_parity_gate_passes_the_real_graph(g3an_sample_graph):
    spec, proto = g3an_sample_graph
    report = check_parity(proto.SerializeToString(), spec, batches=(1, 3))
    assert report["passed"] and report["tensors"]["video"]["max_levels"] <= 1
    assert report["tensors"]["video_float"]["max_abs"] < 1e-4


def test_parity_gate_refuses_perturbed_weights(g3an_sample_graph):
    spec, proto = g3an_sample_graph
    with pytest.raises(ParityError, match=r"refused .*video_float.*max abs difference") as info:
        check_parity(_tampered_weights(proto).SerializeToString(), spec, batches=(1, 3))
    assert info.value.report["passed"] is False
    assert info.value.report["tensors"]["video_float"]["max_abs"] > 1e-4


def test_parity_gate_checks_uint8_levels_separately(g3an_sample_graph):
    spec, proto = g3an_sample_graph
    with pytest.raises(ParityError, match=r"uint8 values differ by more than 1 level") as info:
        check_parity(_tampered_quantisation(proto), spec, batches=(1,))
    tensors_ = info.value.report["tensors"]
    assert tensors_["video_float"]["max_abs"] < 1e-4 and tensors_["video"]["max_levels"] > 1
    # a looser, explicitly stated tolerance is honoured
    check_parity(_tampered_quantisation(proto), spec, batches=(1,),
                 tolerance=Tolerance(max_uint8_levels=255))


def test_parity_gate_refuses_garbage_bytes(g3an_sample_graph):
    spec, _ = g3an_sample_graph
    with pytest.raises(ParityError, match="refused"):
        check_parity(b"this is not an onnx graph", spec, batches=(1,))


# --- the gate runs the serving runtime: OpenVINO, FP32 and BF16 ------------------------------------

OPENVINO = Runtime("openvino", "fp32", 1)
OPENVINO_BF16 = Runtime("openvino", "bf16", 1)
AMX_FLAGS = frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})


@pytest.fixture(scope="module")
def encgan3_encode_graph():
    torch.manual_seed(0)
    spec = next(s for s in graph_specs(build_model("encgan3", "tiny").for_inference()) if s.kind == "encode")
    return spec, export_onnx(spec)


def _rounded_weights(proto: onnx.ModelProto, bits: int) -> onnx.ModelProto:
    """Every float weight rounded (to nearest, ties to even) to `bits` mantissa bits: 7 is bf16."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    drop = 23 - bits
    for init in out.graph.initializer:
        array = onnx.numpy_helper.to_array(init)
        if array.dtype != np.float32 or array.size < 2:
            continue
        u = array.view(np.uint32).astype(np.uint64)
        u = ((u + (1 << (drop - 1)) - 1 + ((u >> drop) & 1)) >> drop) << drop
        init.CopyFrom(onnx.numpy_helper.from_array(u.astype(np.uint32).view(np.float32), init.name))
    return out


def test_openvino_parity_gate_passes_the_real_graph_and_refuses_perturbed_weights(g3an_sample_graph):
    spec, proto = g3an_sample_graph
    report = check_parity(proto.SerializeToString(), spec, batches=(1, 3), runtime=Runtime("openvino", "fp32", 2))
    assert report["passed"] and report["runtime"].startswith("openvino") and "2 shard(s)" in report["runtime"]
    assert report["tensors"]["video"]["max_levels"] <= 1 and report["tensors"]["video_float"]["max_abs"] < 1e-4
    with pytest.raises(ParityError, match=r"refused — OpenVINO FP32 and PyTorch disagree: .*video_float"):
        check_parity(_tampered_weights(proto), spec, batches=(1,), runtime=OPENVINO)


def test_bf16_gate_accepts_bf16_rounding_that_the_fp32_gate_refuses(encgan3_encode_graph, g3an_sample_graph):
    for spec, proto in (encgan3_encode_graph, g3an_sample_graph):
        rounded = _rounded_weights(proto, 7)
        with pytest.raises(ParityError, match="max abs difference"):
            check_parity(rounded, spec, batches=(1,), runtime=OPENVINO)
        report = check_parity(rounded, spec, batches=(1,), tolerance=BF16_TOLERANCE, runtime=OPENVINO_BF16)
        assert report["passed"] and report["tolerance"]["precision"] == "bf16"
        assert "INFERENCE_PRECISION_HINT bf16" in report["runtime"]
        for figures in report["tensors"].values():
            assert (figures.get("psnr_db") or figures.get("snr_db")) > 45


def test_bf16_gate_refuses_what_is_outside_its_tolerance(encgan3_encode_graph, g3an_sample_graph):
    spec, proto = encgan3_encode_graph        # weights with 3 mantissa bits: latents ~30 dB
    with pytest.raises(ParityError, match=r"OpenVINO BF16 and PyTorch disagree: .*'z_a_mean': SNR \d+\.\d dB "
                                          r"\(needs >= 40\)") as info:
        check_parity(_rounded_weights(proto, 3), spec, batches=(1,), tolerance=BF16_TOLERANCE, runtime=OPENVINO_BF16)
    assert info.value.report["tensors"]["z_a_mean"]["snr_db"] < 40
    spec, proto = g3an_sample_graph           # the video quantised with 120 instead of 127.5
    with pytest.raises(ParityError, match=r"'video': PSNR \d+\.\d dB \(needs >= 40\), \d+\.\d+ % of values "
                                          r"within 2 levels") as info:
        check_parity(_tampered_quantisation(proto), spec, batches=(1,), tolerance=BF16_TOLERANCE,
                     runtime=OPENVINO_BF16)
    # the float video is right: exact where bf16 is emulated (OpenVINO then runs f32), bf16-rounded
    # where the CPU computes bf16 (88 dB on a Zen 4 EPYC with AVX512-BF16): inside the gate either way
    assert info.value.report["tensors"]["video_float"]["psnr_db"] > 45


def test_bf16_export_on_a_simulated_amx_cpu_states_its_tolerance(checkpoints, tmp_path, monkeypatch, capsys):
    import train.runtime

    monkeypatch.setattr(train.runtime, "cpu_flags", lambda: AMX_FLAGS)
    repository = tmp_path / "repo"
    assert export(checkpoints["g3an"], repository, "--precision", "bf16", name="b") == 0
    assert check_repository(repository)[0] == []
    assert json.loads((repository / "b_sample" / "1" / "runtime.json").read_text()) == {"runtime": "openvino",
                                                                                         "precision": "bf16"}
    entry = json.loads((repository / "b_sample" / "manifest.json").read_text())["versions"]["1"]
    parity = entry["parity"]
    assert parity["passed"] and parity["tolerance"] == BF16_TOLERANCE.to_json()
    assert "INFERENCE_PRECISION_HINT bf16" in parity["runtime"]
    assert parity["tensors"]["video"]["within_fraction"] >= 0.999 and "psnr_db" in parity["tensors"]["video"]
    assert entry["runtime"] == {"name": "openvino", "precision": "bf16"}
    assert entry["export_options"]["precision"] == "BF16"
    assert "PSNR" in capsys.readouterr().err


def test_bf16_export_is_refused_on_a_cpu_without_bf16(checkpoints, tmp_path, monkeypatch, capsys):
    import train.runtime

    monkeypatch.setattr(train.runtime, "cpu_flags", lambda: frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f"}))
    repository = tmp_path / "repo"
    assert export(checkpoints["g3an"], repository, "--precision", "bf16") == 1
    err = capsys.readouterr().err
    assert ("--precision bf16 refused: this CPU has neither avx512_bf16 nor amx_bf16 (widest ISA: AVX-512)" in err
            and "--precision fp32" in err)
    assert export(checkpoints["g3an"], repository, "--precision", "bf16", "--runtime", "onnxruntime") == 1
    assert "served by OpenVINO only" in capsys.readouterr().err
    assert export(checkpoints["g3an"], repository, "--precision", "fp16") == 1
    assert "--precision fp16 is not offered for --target cpu" in capsys.readouterr().err
    assert not repository.exists()


def test_export_refuses_a_broken_graph_and_writes_nothing(checkpoints, tmp_path, monkeypatch, capsys):
    import export.onnx_export as onnx_export

    real = onnx_export.export_onnx

    def broken(spec, *args, **kwargs):
        return _tampered_weights(real(spec, *args, **kwargs))

    monkeypatch.setattr(onnx_export, "export_onnx", broken)
    repository = tmp_path / "repo"
    assert export(checkpoints["g3an"], repository) == 1
    err = capsys.readouterr().err
    assert "parity gate: g3an_sample refused" in err and "Nothing was written" in err
    assert not repository.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".videogan-")]


def test_graph_with_random_ops_or_old_opset_is_refused():
    class Noisy(torch.nn.Module):
        def forward(self, z):
            return z + torch.randn_like(z)

    spec = GraphSpec("sample", [Tensor("z", "FP32", (4,))], [Tensor("out", "FP32", (4,))], Noisy().eval(),
                     lambda b, rng: {"z": rng.standard_normal((b, 4), dtype=np.float32)})
    with pytest.raises(ExportError, match="random numbers"):
        export_onnx(spec)
    with pytest.raises(ExportError, match="opset 16"):
        export_onnx(spec, opset=16)


# --- repository: versions, conflicts, atomic writes, bad input -----------------------------------

def test_second_export_adds_a_version_and_keeps_the_first(checkpoints, tmp_path):
    repository = tmp_path / "repo"
    assert export(checkpoints["g3an"], repository, name="g") == 0
    first = tree_digest(repository / "g_sample" / "1")
    assert export(checkpoints["g3an"], repository, "--serve-versions", "0", "--runtime", "onnxruntime", name="g") == 0
    assert sorted(p.name for p in (repository / "g_sample").iterdir() if p.is_dir()) == ["1", "2"]
    assert tree_digest(repository / "g_sample" / "1") == first
    # the runtime is per version: version 1 stays as it was gated (OpenVINO), version 2 runs ONNX Runtime
    runtimes = [json.loads((repository / "g_sample" / v / "runtime.json").read_text())["runtime"] for v in "12"]
    assert runtimes == ["openvino", "onnxruntime"]
    assert {k: v.string_value for k, v in config(repository, "g_sample").parameters.items()} == {
        "ORT_INTRA_OP_THREADS": "0", "ORT_INTER_OP_THREADS": "1", "ORT_BATCH_SHARDS": "0", "ONNX_FILE": "model.onnx"}
    manifest = json.loads((repository / "g_sample" / "manifest.json").read_text())
    assert sorted(manifest["versions"]) == ["1", "2"] and manifest["latest_version"] == 2
    assert config(repository, "g_sample").version_policy.HasField("all")
    assert check_repository(repository)[0] == []


def test_incompatible_export_is_refused_unless_replace(checkpoints, tmp_path, capsys):
    repository = tmp_path / "repo"
    assert export(checkpoints["g3an"], repository, name="m") == 0
    before = tree_digest(repository)
    assert export(checkpoints["avlae"], repository, name="m") == 1           # z_m is 128-d, not 10-d
    assert "m_sample inputs are" in capsys.readouterr().err
    assert export(checkpoints["g3an"], repository, name="m", target="gpu") == 1  # python -> onnxruntime
    assert "served by python" in capsys.readouterr().err
    assert tree_digest(repository) == before
    assert export(checkpoints["avlae"], repository, "--replace", name="m") == 0
    assert sorted(p.name for p in (repository / "m_sample").iterdir() if p.is_dir()) == ["2"]
    assert check_repository(repository)[0] == []


def test_failure_while_staging_leaves_the_repository_untouched(checkpoints, tmp_path, monkeypatch, capsys):
    repository = tmp_path / "repo"
    assert export(checkpoints["g3an"], repository, name="g") == 0
    before = tree_digest(repository)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(repo_mod, "_fsync_tree", fail)
    assert export(checkpoints["g3an"], repository, name="g") == 1
    assert "No space left on device (simulated)" in capsys.readouterr().err
    assert tree_digest(repository) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".videogan-")]


def test_bad_inputs_get_clear_errors_and_nothing_is_written(checkpoints, tmp_path, capsys, monkeypatch):
    repository = tmp_path / "repo"

    assert export(tmp_path / "missing.pt", repository) == 1
    assert "checkpoint not found" in capsys.readouterr().err

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    assert export(junk, repository) == 1
    assert "is truncated or not a checkpoint" in capsys.readouterr().err

    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    assert export(other, repository) == 1
    assert "is not a videogan checkpoint" in capsys.readouterr().err

    assert export(checkpoints["g3an"], repository, "--family", "encgan3") == 1
    assert "holds a g3an model, not encgan3" in capsys.readouterr().err

    assert export(checkpoints["g3an"], repository, name="bad name/..") == 1
    assert "not a valid model name" in capsys.readouterr().err

    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert export(checkpoints["g3an"], a_file) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert export(checkpoints["g3an"], tmp_path / "no" / "such" / "parent") == 1
    assert "is not an existing folder" in capsys.readouterr().err

    def read_only(folder):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(repo_mod, "_probe_writable", read_only)
    assert export(checkpoints["g3an"], repository) == 1
    assert "is not writable" in capsys.readouterr().err
    monkeypatch.undo()
    assert not repository.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".videogan-")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_unwritable_repository_is_refused(checkpoints, tmp_path, capsys):
    repository = tmp_path / "repo"
    repository.mkdir()
    repository.chmod(0o555)
    try:
        assert export(checkpoints["g3an"], repository) == 1
        assert "not writable" in capsys.readouterr().err
        assert list(repository.iterdir()) == []
    finally:
        repository.chmod(0o755)


# --- export.check catches what is wrong -----------------------------------------------------------

@pytest.fixture(scope="module")
def good_repository(checkpoints, tmp_path_factory):
    repository = tmp_path_factory.mktemp("good") / "repo"
    assert export(checkpoints["encgan3"], repository, name="e") == 0
    return repository


def _broken_copy(good, tmp_path, edit):
    repository = tmp_path / "repo"
    shutil.copytree(good, repository)
    edit(repository)
    return check_repository(repository)[0]


def test_check_accepts_the_export(good_repository, capsys):
    assert check_main([str(good_repository)]) == 0
    assert "OK (4 models" in capsys.readouterr().out


def test_repository_survives_git_clone(good_repository, tmp_path):
    """The committed demo repository is used from fresh clones: git keeps no empty folder, so
    every version folder (ensembles too) must hold a file, and the clone must pass the check."""
    work = tmp_path / "work"
    shutil.copytree(good_repository, work / "repo")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "repo"]):
        subprocess.run(git + args, cwd=work, check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", str(work), str(tmp_path / "clone")], check=True, capture_output=True)
    assert (tmp_path / "clone" / "repo" / "e_reconstruct" / "1" / ".gitkeep").is_file()
    assert check_main([str(tmp_path / "clone" / "repo")]) == 0


def test_check_reports_changed_files(good_repository, tmp_path):
    def edit(r):
        with open(r / "e_sample" / "1" / "model.onnx", "ab") as fh:
            fh.write(b"\0")
    problems = _broken_copy(good_repository, tmp_path, edit)
    assert any("e_sample/1/model.onnx: sha256" in p for p in problems)


def test_check_reports_tensors_that_do_not_match_the_graph(good_repository, tmp_path):
    def edit(r):
        path = r / "e_decode" / "config.pbtxt"
        path.write_text(path.read_text().replace("dims: 128", "dims: 127", 1))
    problems = _broken_copy(good_repository, tmp_path, edit)
    assert any("e_decode/1: model.onnx and config.pbtxt disagree" in p and "z_a" in p for p in problems)
    assert any("e_decode: sha256 of config.pbtxt does not match" in p for p in problems)
    assert any("e_reconstruct: step 1" in p and "is FP32 [128] but e_decode input 'z_a' is FP32 [127]" in p
               for p in problems)


def test_check_reports_broken_ensembles(good_repository, tmp_path):
    problems = _broken_copy(good_repository, tmp_path, lambda r: shutil.rmtree(r / "e_decode"))
    assert any("e_reconstruct: step 1 (e_decode): model 'e_decode' is not in the repository" in p for p in problems)

    def loop(r):
        path = r / "e_reconstruct" / "config.pbtxt"
        path.write_text(path.read_text().replace(f'"{RECONSTRUCT_OUTPUT}"', '"video"'))
    problems = _broken_copy(good_repository, tmp_path / "b", loop)
    assert any("named like an ensemble input" in p for p in problems)


def test_check_reports_an_unknown_runtime(good_repository, tmp_path):
    def edit(r):
        (r / "e_sample" / "1" / "runtime.json").write_text('{"runtime": "onnxruntime", "precision": "bf16"}')
    problems = _broken_copy(good_repository, tmp_path, edit)
    assert any(p.startswith("e_sample/1: ") and "precision 'bf16' is not one of" in p for p in problems)


def test_check_reports_unlisted_versions_and_exits_non_zero(good_repository, tmp_path, capsys):
    def edit(r):
        shutil.copytree(r / "e_sample" / "1", r / "e_sample" / "5")
    _broken_copy(good_repository, tmp_path, edit)
    assert check_main([str(tmp_path / "repo")]) == 1
    err = capsys.readouterr().err
    assert "e_sample: version folder(s) [5] are not in manifest.json" in err
    assert check_main([str(tmp_path / "nothing")]) == 2


# --- model.py: request validation and batching (fake pb_utils; the real server is tested below) ---

class _FakePbUtils(types.ModuleType):
    class TritonError:
        INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

        def __init__(self, message, code=None):
            self.message, self.code = message, code

    class TritonModelException(Exception):
        pass

    class Tensor:
        def __init__(self, name, array):
            self.name, self.array = name, array

        def as_numpy(self):
            return self.array

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return request.get(name)

    @staticmethod
    def triton_string_to_numpy(name):
        return {"TYPE_FP32": np.float32, "TYPE_UINT8": np.uint8}[name]


def test_model_py_validates_and_batches_requests(good_repository, monkeypatch, tmp_path):
    from google.protobuf import json_format

    monkeypatch.setenv("VIDEOGAN_OV_CACHE_DIR", str(tmp_path / "ov-cache"))    # OV_CACHE_DIR "auto"
    fake = _FakePbUtils("triton_python_backend_utils")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake)
    spec = importlib.util.spec_from_file_location("videogan_model_py", good_repository / "e_sample" / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = json_format.MessageToDict(config(good_repository, "e_sample"), preserving_proto_field_name=True)
    model = module.TritonPythonModel()
    model.initialize({"model_name": "e_sample", "model_config": json.dumps(cfg),
                      "model_repository": str(good_repository / "e_sample"), "model_version": "1"})
    assert model.runtime == "openvino" and "openvino" in model.session.description
    assert list((tmp_path / "ov-cache").glob("*/*.blob"))            # compiled into the cache of "auto"
    calls = []
    real_run = model.session.run
    model.session = types.SimpleNamespace(run=lambda names, feed: calls.append(feed["z_a"].shape) or real_run(names, feed))

    rng = np.random.default_rng(0)

    def request(n, da=128, dtype=np.float32):
        return {"z_a": fake.Tensor("z_a", rng.standard_normal((n, da)).astype(dtype)),
                "z_m": fake.Tensor("z_m", rng.standard_normal((n, 10)).astype(np.float32))}

    nan = request(1)
    nan["z_m"].array[0, 3] = np.inf
    requests = [request(2), nan, request(1, da=127), request(1, dtype=np.float64), request(3), {}]
    responses = model.execute(requests)
    assert calls == [(5, 128)]                      # the valid requests ran as ONE batch
    assert [r.error is None for r in responses] == [True, False, False, False, True, False]
    assert [r.output_tensors[0].array.shape[0] for r in responses if r.error is None] == [2, 3]
    assert all(r.output_tensors[0].array.dtype == np.uint8 for r in responses if r.error is None)
    messages = [r.error.message for r in responses if r.error is not None]
    assert "input 'z_m' has 1 non-finite value(s)" in messages[0]
    assert "shape [1, 127], expected [batch, 128]" in messages[1]
    assert "dtype float64" in messages[2] and "missing input 'z_a'" in messages[3]
    assert all(r.error.code == "INVALID_ARG" for r in responses if r.error is not None)
    # same output as ONNX Runtime on each request alone
    alone = real_run(["video"], {"z_a": requests[4]["z_a"].array, "z_m": requests[4]["z_m"].array})[0]
    assert np.array_equal(alone, responses[4].output_tensors[0].array)

    # the runtime failing is an error response, not an exception out of execute()
    model.session = types.SimpleNamespace(run=lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    (response,) = model.execute([request(1)])
    assert "OpenVINO failed on a batch of 1: boom" in response.error.message


def _served_module(good_repository, monkeypatch):
    """The model.py an export wrote, imported as Triton's stub imports it (fake pb_utils)."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _FakePbUtils("triton_python_backend_utils"))
    spec = importlib.util.spec_from_file_location("videogan_model_py", good_repository / "e_sample" / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _count_shards(session, sizes):
    """Record the batch size of every shard the session runs."""
    if hasattr(session, "requests"):          # OpenVINO: one infer request per shard
        real = session._infer

        def record(request, names, feed):
            if any(request is r for r in session.requests):
                sizes.append(len(feed["z_a"]))
            return real(request, names, feed)
        session._infer = record
    else:
        real = session.narrow.run
        session.narrow = types.SimpleNamespace(run=lambda names, feed: sizes.append(len(feed["z_a"])) or real(names, feed))


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_sharded_session_equals_one_session(good_repository, monkeypatch, runtime):
    """model.py splits a batch into one shard per core run side by side; the videos must be the
    ones a single run over the whole batch gives, for any batch size and shard count (and
    OpenVINO's within a level of ONNX Runtime's)."""
    module = _served_module(good_repository, monkeypatch)
    path = str(good_repository / "e_sample" / "1" / "model.onnx")
    one = module.open_session(path, runtime=runtime, shards=1, threads=1)
    reference = module.ShardedSession(path, shards=1, intra=1)
    rng = np.random.default_rng(0)
    for shards in (2, 3):
        sharded = module.open_session(path, runtime=runtime, shards=shards, threads=shards)
        shard_sizes = []
        _count_shards(sharded, shard_sizes)
        for batch in (1, 2, 5):
            feed = {"z_a": rng.standard_normal((batch, 128)).astype(np.float32),
                    "z_m": rng.standard_normal((batch, 10)).astype(np.float32)}
            (video,) = sharded.run(["video"], feed)
            assert np.array_equal(video, one.run(["video"], feed)[0])
            assert np.abs(video.astype(int) - reference.run(["video"], feed)[0].astype(int)).max() <= 1
        # batch 1 ran whole; 2 and 5 were cut into min(shards, batch) nearly equal shards
        assert sorted(shard_sizes) == sorted([1, 1] + ([2, 3] if shards == 2 else [1, 2, 2]))
        sharded.close()


def test_openvino_compile_cache_is_keyed_by_the_graph_contents(good_repository, monkeypatch, tmp_path, capsys):
    """OpenVINO keys a cached blob of a graph file by its path: a new graph at the same path would
    load the old blob. The cache folder is per sha256 of the graph, so it never does."""
    module = _served_module(good_repository, monkeypatch)
    graph = tmp_path / "model.onnx"
    shutil.copy(good_repository / "e_encode" / "1" / "model.onnx", graph)
    clip = np.random.default_rng(0).integers(0, 256, (2, 16, 64, 64, 3), dtype=np.uint8)

    def session():
        folder = module.model_cache_dir(str(tmp_path / "cache"), str(graph))
        return folder, module.OpenVINOSession(str(graph), shards=2, threads=1, cache_dir=folder)

    folder, first = session()
    assert not first.from_cache and list(Path(folder).glob("*.blob"))
    assert Path(folder).stat().st_mode & 0o777 == 0o700
    folder_again, second = session()
    assert folder_again == folder and second.from_cache and "loaded from the compile cache" in second.description
    assert np.array_equal(first.run(["z_a_mean"], {"video": clip})[0], second.run(["z_a_mean"], {"video": clip})[0])

    onnx.save(_tampered_weights(onnx.load(str(graph))), str(graph))     # another graph, same path
    other_folder, third = session()
    assert other_folder != folder and not third.from_cache
    assert not np.array_equal(first.run(["z_a_mean"], {"video": clip})[0], third.run(["z_a_mean"], {"video": clip})[0])

    (tmp_path / "not-a-folder").write_text("x")              # an unusable cache: logged, compiled without
    assert module.model_cache_dir(str(tmp_path / "not-a-folder"), str(graph)) is None
    assert "compiling without a cache" in capsys.readouterr().out


def test_openvino_sessions_freed_in_another_thread_leave_signals_working(good_repository):
    """OpenVINO's CPU plugin gives a compiling thread an alternate signal stack and frees it with
    the plugin. A session (then with its own Core) freed by another thread left the main thread's
    signal stack dangling: the next signal handled there (SIGCHLD of a `git` run, in the full
    suite) killed the process with SIGSEGV. One Core per process now, also across copies of
    model.py imported by file path (as the stub and the tests import it); checked in a child process."""
    script = (
        "import gc, importlib.util, os, signal, sys, threading, time\n"
        "from export.templates.model import OpenVINOSession\n"
        "spec = importlib.util.spec_from_file_location('copy_of_model_py', sys.argv[2])\n"
        "copy = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(copy)\n"
        "box = [OpenVINOSession(sys.argv[1], shards=2), copy.OpenVINOSession(sys.argv[1]), copy]\n"
        "del copy, spec\n"
        "def free():\n    box.clear()\n    gc.collect()\n"
        "thread = threading.Thread(target=free)\nthread.start()\nthread.join()\n"
        "junk = [bytearray(1 << 20) for _ in range(200)]\ndel junk\n"
        "signal.signal(signal.SIGUSR2, lambda *a: print('handled', flush=True))\n"
        "os.kill(os.getpid(), signal.SIGUSR2)\ntime.sleep(0.2)\n")
    version = good_repository / "e_encode" / "1"
    done = subprocess.run([sys.executable, "-c", script, str(version / "model.onnx"), str(version / "model.py")],
                          cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "handled" in done.stdout, (done.returncode, done.stderr[-2000:])


# --- TensorRT: complete code, exercised where TensorRT and a GPU exist ----------------------------

def _tensorrt_ready() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_tensorrt_missing_is_a_clear_error(checkpoints, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # import tensorrt -> ImportError
    repository = tmp_path / "repo"
    assert export(checkpoints["g3an"], repository, "--tensorrt", target="gpu") == 1
    err = capsys.readouterr().err
    assert "TensorRT is not installed here" in err and "trtexec" in err
    assert not repository.exists()
    assert export(checkpoints["g3an"], repository, "--tensorrt") == 1      # --tensorrt needs --target gpu
    assert "--target gpu" in capsys.readouterr().err


def test_trtexec_builder_command_line_and_plan_repository(checkpoints, tmp_path, monkeypatch):
    """Plumbing only: a stand-in `trtexec` records its arguments and writes a dummy file where the
    engine goes. The real build runs on a GPU host (test_tensorrt_engines); this dummy is never served."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "trtexec"
    fake.write_text("#!/bin/sh\n"
                    f"echo \"$@\" >> {calls}\n"
                    "for a in \"$@\"; do case $a in --saveEngine=*) printf engine > \"${a#--saveEngine=}\";; esac; done\n")
    fake.chmod(0o755)
    repository = tmp_path / "repo"
    assert export(checkpoints["g3an"], repository, "--tensorrt", "--trt-builder", "trtexec", "--trtexec", str(fake),
                  target="gpu") == 0
    args = calls.read_text().split()
    assert "--minShapes=z_a:1x128,z_m:1x10" in args and "--maxShapes=z_a:8x128,z_m:8x10" in args
    assert "--optShapes=z_a:8x128,z_m:8x10" in args and "--fp16" in args
    cfg = config(repository, "g3an_sample")
    assert cfg.platform == "tensorrt_plan" and cfg.default_model_filename == "model.plan"
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_GPU
    assert sorted(w.batch_size for w in cfg.model_warmup) == [1, 8]
    assert sorted(p.name for p in (repository / "g3an_sample" / "1").iterdir()) == ["model.onnx", "model.plan"]
    entry = json.loads((repository / "g3an_sample" / "manifest.json").read_text())["versions"]["1"]
    assert entry["tensorrt_engine"]["parity"]["passed"] is None and "trtexec" in entry["tensorrt_engine"]["parity"]["skipped"]
    assert check_repository(repository)[0] == []


@pytest.mark.gpu
@pytest.mark.skipif(not _tensorrt_ready(), reason="needs TensorRT and a CUDA GPU")
@pytest.mark.parametrize("precision", ["FP32", "FP16"])
def test_tensorrt_engines(checkpoints, tmp_path, precision):
    from export import tensorrt as trt_support

    repository = tmp_path / "repo"
    assert export(checkpoints["encgan3"], repository, "--tensorrt", "--precision", precision, target="gpu") == 0
    assert check_repository(repository)[0] == []
    cfg = config(repository, "encgan3_sample")
    assert cfg.platform == "tensorrt_plan" and cfg.default_model_filename == "model.plan"
    engine = (repository / "encgan3_sample" / "1" / "model.plan").read_bytes()
    io = trt_support.engine_io(engine)
    assert io["video"]["dtype"] == "UINT8" and io["video"]["shape"][1:] == [16, 64, 64, 3]
    entry = json.loads((repository / "encgan3_sample" / "manifest.json").read_text())["versions"]["1"]
    assert entry["tensorrt_engine"]["parity"]["passed"]
    assert entry["tensorrt_engine"]["profile"] == {"min": 1, "opt": 8, "max": 8}


# --- the real embedded Triton server ---------------------------------------------------------------

@pytest.mark.slow
def test_cpu_repository_serves_in_embedded_triton(checkpoints, tmp_path, monkeypatch):
    """g3an served by OpenVINO, encgan3 by ONNX Runtime, in one real server; a restart loads the
    OpenVINO graphs from the compile cache the first start filled."""
    try:
        from serving.server import TritonServer
    except ImportError as error:
        pytest.skip(f"serving.server is not importable yet: {error}")
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from train.checkpoint import load_for_inference

    repository = tmp_path / "repo"
    assert export(checkpoints["g3an"], repository) == 0
    assert export(checkpoints["encgan3"], repository, "--runtime", "onnxruntime") == 0
    monkeypatch.setenv("VIDEOGAN_OV_CACHE_DIR", str(tmp_path / "ov-cache"))   # the server inherits it

    def to_uint8(x):
        return torch.clamp(torch.round((x + 1) * 127.5), 0, 255).to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()

    def inp(name, array):
        t = grpcclient.InferInput(name, list(array.shape), "UINT8" if array.dtype == np.uint8 else "FP32")
        t.set_data_from_numpy(array)
        return t

    rng = np.random.default_rng(3)
    z_a, z_m = rng.standard_normal((3, 128), dtype=np.float32), rng.standard_normal((3, 10), dtype=np.float32)
    clip = rng.integers(0, 256, (2, 16, 64, 64, 3), dtype=np.uint8)
    g3an, _ = load_for_inference(checkpoints["g3an"])
    encgan3, _ = load_for_inference(checkpoints["encgan3"])
    with torch.no_grad():
        want_sample = to_uint8(g3an.sample(torch.from_numpy(z_a), torch.from_numpy(z_m)))
        latents = encgan3.encode(uint8_to_float_video(torch.from_numpy(clip)))
        want_recon = to_uint8(encgan3.decode(z_a=latents["z_a_mean"], z_m=latents["z_m_mean"]))

    with TritonServer(repository, log_file=tmp_path / "triton.log") as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        video = client.infer("g3an_sample", [inp("z_a", z_a), inp("z_m", z_m)], client_timeout=120).as_numpy("video")
        assert video.shape == (3, 16, 64, 64, 3) and video.dtype == np.uint8
        assert np.abs(video.astype(int) - want_sample.astype(int)).max() <= 1
        recon = client.infer("encgan3_reconstruct", [inp("video", clip)], client_timeout=120).as_numpy(RECONSTRUCT_OUTPUT)
        assert recon.shape == (2, 16, 64, 64, 3)
        assert np.abs(recon.astype(int) - want_recon.astype(int)).max() <= 1

        bad = z_a[:1].copy()
        bad[0, 0] = np.nan
        with pytest.raises(InferenceServerException, match="non-finite") as info:
            client.infer("g3an_sample", [inp("z_a", bad), inp("z_m", z_m[:1])], client_timeout=60)
        assert "INVALID_ARG" in str(info.value.status())
        again = client.infer("g3an_sample", [inp("z_a", z_a[:1]), inp("z_m", z_m[:1])], client_timeout=120)
        assert np.array_equal(again.as_numpy("video"), video[:1])   # the server is still up and unchanged

        assert list((tmp_path / "ov-cache").glob("*/*.blob"))
        log = (tmp_path / "triton.log").read_text()
        assert "g3an_sample: openvino" in log and "encgan3_sample: onnxruntime" in log
        assert "loaded from the compile cache" not in log
        server.restart()
        client = grpcclient.InferenceServerClient(server.grpc_url)
        after = (tmp_path / "triton.log").read_text()[len(log):]
        assert "g3an_sample: openvino" in after and "loaded from the compile cache" in after
        again = client.infer("g3an_sample", [inp("z_a", z_a), inp("z_m", z_m)], client_timeout=120)
        assert np.array_equal(again.as_numpy("video"), video)
