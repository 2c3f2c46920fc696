"""bench: the peaks per ISA (real and simulated CPU flags), comparisons, the report, the stage
boundaries, and one real end-to-end run at the tiny preset.

The end-to-end run uses AVLAE tiny (sample, encode and reconstruct, no F-SA: the fastest
graphs) at batch 1 with one timed call per cell: it goes through the real exporter (as a
library call, ONNX Runtime and OpenVINO variants), both in-process runtimes, `python -m serving
up` with Triton's statistics, the start-up measurement with an empty and a filled OpenVINO
compile cache, the sweep, both profile parsers, one training step and the markdown renderer.
BF16 paths are recorded as refused on a CPU without native bf16 (the development machine is an
AVX2 AMD EPYC); the BF16 peak arithmetic is tested on simulated AMX / AVX512-BF16 flags.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from bench import machine, measure, paths, report
from bench.__main__ import main as bench_main
from bench.host import parse_cpuinfo

ROOT = Path(__file__).resolve().parents[1]
CPUINFO = "\n\n".join(
    f"processor\t: {i}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n"
    f"cpu MHz\t\t: 2445.428\nphysical id\t: 0\ncore id\t\t: {i}\n"
    "flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 hypervisor" for i in range(2)) + "\n"
AMX = frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})


def test_peaks_from_cpuinfo_and_flags():
    cpu = parse_cpuinfo(CPUINFO)
    assert cpu["physical_cores"] == 2 and cpu["logical_cpus"] == 2 and cpu["mhz"] == pytest.approx(2445.428)
    per_cycle, how = machine.fp32_flops_per_cycle(cpu["flags"])
    assert per_cycle == 32 and "FMA" in how
    assert machine.peak(2, cpu["mhz"], per_cycle, how, "FP32")["gflops_per_s"] == pytest.approx(156.5, abs=0.1)
    assert machine.fp32_flops_per_cycle({"avx512f", "avx2", "fma"})[0] == 64
    assert machine.fp32_flops_per_cycle(AMX)[0] == 64
    assert machine.fp32_flops_per_cycle({"avx"})[0] == 16
    # BF16: AMX tiles, or AVX512-BF16 dot products; none where bf16 would be emulated
    assert machine.bf16_flops_per_cycle(AMX)[0] == 1024
    assert machine.bf16_flops_per_cycle({"avx512f", "avx512_bf16"})[0] == 128
    # Zen 4 (AMD family 25 with AVX-512) runs 512-bit instructions as two halves; Zen 3 has no AVX-512
    zen4 = {"vendor": "AuthenticAMD", "family": "25"}
    assert machine.fp32_flops_per_cycle({"avx512f", "avx2", "fma"}, zen4)[0] == 32
    assert machine.bf16_flops_per_cycle({"avx512f", "avx512_bf16"}, zen4)[0] == 64
    assert machine.fp32_flops_per_cycle(cpu["flags"], cpu)[0] == 32     # the Zen 3 of CPUINFO: AVX2
    assert machine.fp32_flops_per_cycle({"avx512f"}, {"vendor": "GenuineIntel", "family": "6"})[0] == 64
    per_cycle, why = machine.bf16_flops_per_cycle(cpu["flags"])
    assert per_cycle is None and "neither avx512_bf16 nor amx_bf16" in why
    assert machine.peak(2, 2100.0, None, why, "BF16")["flops_per_s"] is None
    # SMT siblings share a core: two logical CPUs, one physical core
    smt = CPUINFO.replace("core id\t\t: 1", "core id\t\t: 0")
    assert parse_cpuinfo(smt)["physical_cores"] == 1


def test_machine_info_on_simulated_amx_flags():
    info = machine.machine_info(flags=AMX)
    assert info["cpu"]["isa"] == "AMX"
    cores, mhz = info["cpu"]["cores_used_for_peak"], info["cpu"]["mhz"]
    assert info["peak_fp32"]["flops_per_s"] == pytest.approx(cores * mhz * 1e6 * 64)
    assert info["peak_bf16"]["flops_per_s"] == pytest.approx(cores * mhz * 1e6 * 1024)
    assert "TMUL" in info["peak_bf16"]["derivation"]


def test_outputs_are_compared_with_the_tolerance_of_their_precision():
    s = measure.summarize([1.0, 2.0, 3.0])
    assert s["p50"] == 2.0 and 2.9 < s["p99"] <= 3.0
    ref = {"video": np.full((1, 64, 64), 100, np.uint8), "z": np.ones(8, np.float32)}
    near = {"video": ref["video"].copy(), "z": ref["z"] + 1e-4}
    near["video"][0, 0, :2] = 102                                     # 2 of 4096 values 2 levels off
    figures, ok = paths.vs_eager("ov", ref, near)
    assert not ok and figures["video"]["max_levels"] == 2            # FP32: at most 1 level
    figures, ok = paths.vs_eager("ov-bf16", ref, near)
    assert ok and figures["video"]["psnr_db"] > 40 and figures["z"]["snr_db"] > 40
    assert paths.vs_eager("ort", ref, ref)[1]
    assert paths.served_variant("triton-ov-bf16") == "ov-bf16" and paths.served_variant("eager") is None
    assert measure.baselines("triton-ov") == ("eager", "ov")


def test_markdown_section_keeps_hand_written_text(tmp_path):
    path = tmp_path / "B.md"
    path.write_text(f"# Benchmarks\n\nnotes before\n{report.OLD_MARKS[0]}\nold\n{report.OLD_MARKS[1]}\n")
    report.write_markdown(path, f"{report.BEGIN_MARK}\nfirst\n{report.END_MARK}\n")   # replaces serving.bench's
    path.write_text(path.read_text() + "\nnotes after\n")
    report.write_markdown(path, f"{report.BEGIN_MARK}\nsecond\n{report.END_MARK}\n")
    text = path.read_text()
    assert "notes before" in text and "notes after" in text and "second" in text
    assert "first" not in text and "old" not in text


def test_result_files_of_serving_bench_still_render():
    files = sorted((ROOT / "bench_results").glob("*.json"))
    if not files:
        pytest.skip("no committed bench_results")
    text = report.render_markdown([json.loads(f.read_text()) for f in files[:2]])
    assert text.startswith(report.BEGIN_MARK) and "FP32 peak" in text


def test_rendered_section_describes_each_machine_where_it_changes():
    amx = [ROOT / "bench_results" / f for f in ("amx-demo-mnist_g3an.json", "amx-demo-mnist_encgan3.json")]
    zen3 = ROOT / "bench_results" / "zen3-g3an-paper64-b8.json"
    if not all(f.exists() for f in (*amx, zen3)):
        pytest.skip("the committed AMX and Zen 3 result files are not there")
    load = lambda f: json.loads(f.read_text())  # noqa: E731
    assert report.render_markdown([load(f) for f in amx]).count("### Machine") == 1
    text = report.render_markdown([load(amx[0]), load(zen3), load(amx[1])])
    sections = text.split("### Machine")[1:]
    assert len(sections) == 3
    assert ["GenuineIntel" in s for s in sections] == [True, False, True] and "AuthenticAMD" in sections[1]


def _imports(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def test_stages_import_only_what_is_left_of_them():
    for stage in ("train", "export", "serving", "clients"):
        assert "bench" not in _imports(ROOT / stage), f"{stage}/ imports bench"
    assert "train" not in _imports(ROOT / "serving") and "train" not in _imports(ROOT / "clients")
    # the served model.py runs inside Triton's python stub: numpy, openvino, onnxruntime only
    template = _imports(ROOT / "export" / "templates") - {"hashlib", "json", "os", "threading", "concurrent"}
    assert template <= {"numpy", "openvino", "onnxruntime", "triton_python_backend_utils"}


@pytest.mark.slow
def test_bench_end_to_end_tiny(tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "B.md"
    code = bench_main(["--family", "avlae", "--preset", "tiny", "--batches", "1", "--repeats", "1",
                       "--min-repeats", "1", "--warmup", "0", "--concurrency", "2",
                       "--paths", "eager,eager-bf16,ort,ov,ov-bf16,triton-ov,tensorrt",
                       "--sweep", "served,no_spin", "--sweep-batches", "1", "--sweep-repeats", "1",
                       "--profile-batch", "1", "--train-families", "avlae", "--train-repeats", "1",
                       "--train-warmup", "0", "--train-precisions", "fp32", "--out", str(out), "--markdown", str(md)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["format"] == "videogan-bench/2" and result["complete"]
    assert result["machine"]["peak_fp32"]["flops_per_s"] > 0 and result["machine"]["cpu"]["isa"]
    native_bf16 = result["machine"]["peak_bf16"]["flops_per_s"] is not None
    cells = {(c["path"], c["kind"], c["batch"]): c for c in result["inference"]}
    measured = ["eager", "ort", "ov", "triton-ov"] + (["eager-bf16", "ov-bf16"] if native_bf16 else [])
    for path in measured:
        for kind in ("sample", "encode", "reconstruct"):
            cell = cells[(path, kind, 1)]
            assert cell["videos_per_s"] > 0 and cell["latency_s"]["p50"] > 0
            assert len(cell["loadavg_before"]) == 3 and len(cell["loadavg_after"]) == 3
            if path != "eager":
                assert cell["matches_eager"], cell["vs_eager"]
    if not native_bf16:
        assert {r["path"] for r in result["refused"]} == {"eager-bf16", "ov-bf16"}
    assert cells[("triton-ov", "sample", 1)]["concurrency"] == 2
    assert set(result["export"]) == {"ort", "ov"} | ({"ov-bf16"} if native_bf16 else set())
    assert all(e["parity"] for e in result["export"].values())
    assert result["flops"]["sample"]["per_video"] > 0
    triton = result["triton"]
    assert [(s["variant"], s["cache"]) for s in triton["startup"]] == [("ov", "empty"), ("ov", "filled")]
    assert triton["memory_after_load"]["rss_mib"] > 0
    assert any(p["name"].startswith("tritonserver") for p in triton["memory_after_bench"]["processes"])
    where = {s["kind"]: s for s in triton["statistics"]}
    assert where["sample"]["models"]["bench_avlae_ov_sample"]["requests"] >= 2
    assert set(where["reconstruct"]["models"]) == {f"bench_avlae_ov_{k}" for k in ("encode", "decode", "reconstruct")}
    assert where["sample"]["cpu_ms_per_request"]["python stubs"] >= 0
    assert "skipped" in result["tensorrt"] or result["tensorrt"]["cells"]
    assert result["ort_sweep"][0]["rows"][1]["matches_first"]
    assert result["ort_profile"]["sample"]["by_op_type"]
    ov = result["ov_profile"]["sample"]
    assert ov["by_op_type"] and ov["by_kernel"] and ov["compiled_precision"] == "f32"
    assert any(row["gflops_per_s"] for row in ov["by_op_type"])      # FLOPs from the runtime model's shapes
    assert result["training"][0]["steps_per_s"] > 0
    assert result["ratios"]["sample/b1"]["triton-ov/ov"] > 0 and result["ratios"]["sample/b1"]["ov/eager"] > 0
    text = md.read_text()
    assert report.BEGIN_MARK in text and "avlae / tiny" in text and "BF16 peak" in text
    assert "Where a Triton request's time goes" in text and "compile cache" in text
