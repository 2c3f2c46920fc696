"""The fast parts of ``python -m bench.reliability`` against a real ``python -m serving up --http``.

The fuzz matrix runs against the committed demo repository (its model.py refuses non-one-hot
labels); the kill -9 and disk-full faults against the tiny fixture repository. The soak and
the 1000-video fault run from the command only (RELIABILITY.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT
from bench.reliability import (ServingUp, answers_valid_request, pick_sample_model, render_fuzz, run_disk_full,
                                 run_fuzz, run_kill9, running, sample_inputs)
from clients.triton import Connection

pytestmark = pytest.mark.slow

ISSUE_REQUEST = '{"inputs":[{"name":"z_a","shape":[100000000,128],"datatype":"FP32","data":[1.0]}]}'


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    with ServingUp(REPO_ROOT / "model_repository", tmp_path_factory.mktemp("demo") / "tritonserver.log") as up:
        yield up


def test_fuzz_matrix_every_request_refused_specifically_and_server_alive(demo_server):
    fuzz = run_fuzz(demo_server)
    rows = fuzz["cases"]
    assert len(rows) >= 25
    assert {r["protocol"] for r in rows} == {"gRPC", "HTTP/JSON", "HTTP binary"}
    failed = [r for r in rows if not (r["specific_error"] and r["alive_after"] and r["same_process"])]
    assert not failed, json.dumps(failed, indent=1)
    table = render_fuzz(fuzz)
    assert table.count("| yes | yes |") == len(rows)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_issue_request_sent_with_curl_gets_an_error_and_the_server_answers(demo_server):
    model = pick_sample_model(demo_server.models)
    done = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-H", "Content-Type: application/json", "-d",
                           ISSUE_REQUEST, f"http://{demo_server.http_url}/v2/models/{model}/infer"],
                          capture_output=True, text=True, timeout=60)
    body, _, status = done.stdout.rpartition("\n")
    assert status == "400" and "max_batch_size" in json.loads(body)["error"], done.stdout
    with Connection(demo_server.grpc_url) as connection:
        valid = sample_inputs(connection.model_info(model))
    assert running(demo_server.pid) and answers_valid_request(demo_server.grpc_url, model, valid)


def test_kill9_of_tritonserver_during_a_job_restart_and_exactly_its_files(tiny_repository, tmp_path):
    with ServingUp(tiny_repository, tmp_path / "tritonserver.log") as up:
        result = run_kill9(up, "tiny_sample", 300, tmp_path)
        assert up.stop() == 0
    log = "\n".join(result["supervisor_log"])
    assert f"tritonserver (pid {result['killed_pid']}) exited unexpectedly: killed by signal 9 (SIGKILL)" in log
    assert "restarted: ready in" in log
    assert result["job_exit"] == 0, result
    assert result["written_when_killed"] < 300  # the kill came during the job
    output = result["output"]
    assert (output["files"], output["missing"], output["manifest_entries"]) == (300, 0, 300)
    assert not (output["unexpected_names"] or output["undecodable"] or output["temporaries"])
    assert output["identical_contents"] == 0
    assert result["killed_server_leftovers"] == {"processes_alive": [], "group_members": [], "shm_regions_left": []}


def test_full_output_disk_clear_error_consistent_manifest_and_rerun_completes(tiny_repository, tmp_path):
    with ServingUp(tiny_repository, tmp_path / "tritonserver.log") as up:
        result = run_disk_full(up, "tiny_sample", 60, tmp_path, video_bytes=2048)
    if "skipped" in result:
        pytest.skip(result["skipped"])
    assert result["first_exit"] == 1 and not result["first_traceback"]
    assert result["first_error"].startswith("error: ") and "No space left on device" in result["first_error"]
    full = result["after_full"]
    assert full["files"] < 60 and not (full["undecodable"] or full["temporaries"] or full["manifest_entries_without_file"])
    assert result["rerun_exit"] == 0
    rerun = result["after_rerun"]
    assert (rerun["files"], rerun["manifest_entries"], rerun["temporaries"], rerun["undecodable"]) == (60, 60, [], [])
