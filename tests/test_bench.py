"""serving.bench: the FP32 peak arithmetic, and one real end-to-end run at the tiny preset.

The end-to-end run uses AVLAE tiny (sample, encode and reconstruct, no F-SA: the fastest
graphs) at batch 1 with one timed call per cell: it goes through the real exporter, ONNX
Runtime, the embedded Triton server, the sweep, the profile parser, one training step and
the markdown renderer, in well under a minute.
"""
from __future__ import annotations

import json

import pytest

from serving import bench

CPUINFO = "\n\n".join(
    f"processor\t: {i}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n"
    f"cpu MHz\t\t: 2445.428\nphysical id\t: 0\ncore id\t\t: {i}\n"
    "flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 hypervisor" for i in range(2)) + "\n"


def test_peak_from_cpuinfo():
    cpu = bench.parse_cpuinfo(CPUINFO)
    assert cpu["physical_cores"] == 2 and cpu["logical_cpus"] == 2 and cpu["mhz"] == pytest.approx(2445.428)
    per_cycle, how = bench.simd_flops_per_cycle(cpu["flags"])
    assert per_cycle == 32 and "FMA" in how
    assert 2 * cpu["mhz"] * 1e6 * per_cycle / 1e9 == pytest.approx(156.5, abs=0.1)
    assert bench.simd_flops_per_cycle({"avx512f", "avx2", "fma"})[0] == 64
    assert bench.simd_flops_per_cycle({"avx"})[0] == 16
    # SMT siblings share a core: two logical CPUs, one physical core
    smt = CPUINFO.replace("core id\t\t: 1", "core id\t\t: 0")
    assert bench.parse_cpuinfo(smt)["physical_cores"] == 1


def test_summaries_and_comparison():
    s = bench.summarize([1.0, 2.0, 3.0])
    assert s["p50"] == 2.0 and 2.9 < s["p99"] <= 3.0
    import numpy as np
    a = {"video": np.zeros((1, 2), np.uint8), "z": np.zeros(3, np.float32)}
    b = {"video": np.array([[0, 2]], np.uint8), "z": np.full(3, 1e-4, np.float32)}
    diff = bench.compare(a, b)
    assert diff["video"] == {"max_levels": 2, "values_off": 1}
    assert not bench.within_tolerance(diff)
    assert bench.within_tolerance(bench.compare(a, a))


def test_markdown_section_keeps_hand_written_text(tmp_path):
    path = tmp_path / "B.md"
    path.write_text("# Benchmarks\n\nnotes before\n")
    bench.write_markdown(path, f"{bench.BEGIN_MARK}\nfirst\n{bench.END_MARK}\n")
    path.write_text(path.read_text() + "\nnotes after\n")
    bench.write_markdown(path, f"{bench.BEGIN_MARK}\nsecond\n{bench.END_MARK}\n")
    text = path.read_text()
    assert "notes before" in text and "notes after" in text and "second" in text and "first" not in text


@pytest.mark.slow
def test_bench_end_to_end_tiny(tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "B.md"
    code = bench.main(["--family", "avlae", "--preset", "tiny", "--batches", "1", "--repeats", "1",
                       "--min-repeats", "1", "--warmup", "0", "--concurrency", "2",
                       "--sweep", "served,no_spin", "--sweep-batches", "1", "--sweep-repeats", "1",
                       "--profile-batch", "1", "--train-families", "avlae", "--train-repeats", "1",
                       "--train-warmup", "0", "--out", str(out), "--markdown", str(md)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["format"] == bench.FORMAT
    assert result["machine"]["peak_fp32"]["flops_per_s"] > 0
    cells = {(c["path"], c["kind"], c["batch"]): c for c in result["inference"]}
    for path in ("eager", "ort", "triton"):
        for kind in ("sample", "encode", "reconstruct"):
            cell = cells[(path, kind, 1)]
            assert cell["videos_per_s"] > 0 and cell["latency_s"]["p50"] > 0
            assert len(cell["loadavg_before"]) == 3 and len(cell["loadavg_after"]) == 3
            if path != "eager":
                assert cell["matches_eager"], cell["vs_eager"]
    assert cells[("triton", "sample", 1)]["concurrency"] == 2
    assert result["flops"]["sample"]["per_video"] > 0
    assert result["triton"]["memory_after_load"]["rss_mib"] > 0
    assert any(p["name"].startswith("tritonserver") for p in result["triton"]["memory_after_bench"]["processes"])
    assert "skipped" in result["tensorrt"] or result["tensorrt"]["cells"]
    assert result["ort_sweep"][0]["rows"][1]["matches_first"]
    assert result["ort_profile"]["sample"]["by_op_type"]
    assert result["training"][0]["steps_per_s"] > 0
    assert result["ratios"]["sample/b1"]["ort/eager"] > 0
    text = md.read_text()
    assert bench.BEGIN_MARK in text and "avlae / tiny" in text and "FP32 peak" in text
