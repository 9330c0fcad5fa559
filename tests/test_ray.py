"""The Ray back-end on private 2-CPU Ray clusters inside loopback-only network namespaces.

The scenarios run in two subprocesses started under ``unshare -n``, whose only network
interface is loopback, so Ray cannot reach any other address (outside such a namespace Ray
also talks over the machine's own address): ``tests/ray_scenarios.py`` on a cluster the
runner starts itself, ``tests/ray_cluster_scenarios.py`` on a head node started apart
(``ray start --head``) that the dock widget and the command line (through Ray Client,
``ray://``) connect to. Skipped with the reason when Ray is not installed or ``unshare -n``
is not permitted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import ray_cluster_scenarios as cluster

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "tests" / "ray_scenarios.py"
CLUSTER_SCENARIOS = ROOT / "tests" / "ray_cluster_scenarios.py"
LOOPBACK = {
    "127.0.0.1",
    "0000:0000:0000:0000:0000:ffff:7f00:0001",  # 127.0.0.1 as an IPv6-mapped address
    "0000:0000:0000:0000:0000:0000:0000:0001",  # ::1
}
SCENARIO_TIMEOUT_S = (
    cluster.HEAD_ATTEMPTS * cluster.HEAD_START_TIMEOUT_S
    + len(cluster.SCENARIOS) * cluster.STEP_TIMEOUT_S
    + 180  # the head's stop (up to 90 s) and the scenarios' own set-up
)
"""Longer than the worst case of the cluster script's own limits, so that a step that hangs
is reported by the script, with its logs, rather than cut off here."""

pytestmark = pytest.mark.slow


UNSHARE_CHOICES = (["unshare", "-n"], ["unshare", "-r", "-n"])
"""As root a new network namespace; otherwise one inside a new user namespace (mapped root)."""


def loopback_namespace_command(command: str, unshare: list[str]) -> list[str]:
    """``command`` run by sh in a new network namespace with only ``lo``, brought up."""
    return [*unshare, "sh", "-c", f"ip link set lo up 2>/dev/null || true; {command}"]


def _namespace() -> tuple[list[str] | None, str]:
    """The unshare command that works here, or None and why none does."""
    if importlib.util.find_spec("ray") is None:
        return None, "Ray is not installed (pip install 'napari-ssseg[cluster]')"
    if shutil.which("unshare") is None:
        return None, "unshare (util-linux) is not available to make a loopback-only namespace"
    errors = []
    for unshare in UNSHARE_CHOICES:
        probe = subprocess.run(
            loopback_namespace_command("cat /proc/net/dev", unshare), capture_output=True, text=True
        )
        if probe.returncode == 0:
            return unshare, ""
        errors.append(f"{' '.join(unshare)}: {probe.stderr.strip() or probe.returncode}")
    return None, "no loopback-only network namespace is permitted here (" + "; ".join(errors) + ")"


def run_scenarios(script: Path, out: Path) -> dict:
    """Run a scenario script in a new loopback-only namespace; what it observed."""
    unshare, reason = _namespace()
    if unshare is None:
        pytest.skip(reason)
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    command = f"exec {sys.executable} {script} {out}"
    start = time.monotonic()
    done = subprocess.run(
        loopback_namespace_command(command, unshare),
        capture_output=True,
        text=True,
        env=env,
        timeout=SCENARIO_TIMEOUT_S,
        cwd=ROOT,
    )
    print(f"{script.name} took {time.monotonic() - start:.0f} s")
    assert done.returncode == 0 and out.is_file(), done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """Run every scenario once in the namespace; their observations, by scenario."""
    return run_scenarios(SCENARIOS, tmp_path_factory.mktemp("ray") / "report.json")


@pytest.fixture(scope="module")
def cluster_report(tmp_path_factory) -> dict:
    """The scenarios against a separately started head node, by scenario."""
    found = run_scenarios(CLUSTER_SCENARIOS, tmp_path_factory.mktemp("head") / "report.json")
    assert "head_failed" not in found, found["head_failed"]
    return found


def failure(seen: dict) -> str:
    """What a failed step printed, then the tails of the head's own logs."""
    logs = "".join(f"\n--- {name} ---\n{text}" for name, text in seen.get("head_logs", {}).items())
    return f"{seen.get('output', '')}{logs}"


def scenario(report: dict, name: str) -> dict:
    seen = report[name]
    assert "crashed" not in seen, seen.get("crashed")
    return seen


def test_the_namespace_has_only_loopback_and_ray_listens_only_there(report):
    # The namespace holds no interface but lo, so no other address exists to bind or reach.
    assert report["interfaces"] == ["lo"]
    assert report["listening_with_ray"], "Ray was running but nothing listened"
    assert set(report["listening_with_ray"]) <= LOOPBACK, report["listening_with_ray"]


def test_two_workers_train_and_predict_and_the_model_comes_back(report):
    seen = scenario(report, "train_predict")
    assert seen["final"] == "done", seen["message"]
    statuses = list(dict.fromkeys(seen["statuses"]))  # in order, each once
    assert statuses == ["pending", "running", "done"], seen["statuses"]
    assert seen["stages"] == ["predict", "train"]
    assert seen["model_iterations"] == 30 and max(seen["iterations"]) == 30
    assert seen["labels_shape"] == [122, 101, 30]
    assert len(seen["annotated"]) == 4
    low, high = seen["uncertainty_range"]
    assert 0.0 <= low <= high <= 1.0
    assert seen["foreground_voxels"] > 0


def test_one_worker_gives_the_local_result_for_the_same_seed(report):
    seen = scenario(report, "single_worker_matches_local")
    assert seen["final"] == "done", seen["message"]
    assert seen["same_keys"]
    assert seen["max_abs_difference"] < 1e-6


def test_cancel_ends_a_running_job_stopped_within_seconds(report):
    seen = scenario(report, "cancel")
    assert seen["trained_before_cancel"]
    assert seen["final"] == "stopped", seen["message"]
    assert seen["cancel_seconds"] < 5.0
    assert not seen["model_written"]


def test_an_error_on_a_worker_comes_back_as_one_line(report):
    seen = scenario(report, "worker_error")
    assert seen["final"] == "error"
    message = seen["message"]
    # A user's mistake found on a worker reads as it would locally (one line, no rank).
    assert message == (
        "cannot warm-start from the model: it has the classes ellipsoid, blob; this run has "
        "ellipsoid, blob, third"
    ), message
    assert "\n" not in message and "Traceback" not in message
    assert not seen["model_written"]


def test_a_folder_is_predicted_by_parallel_tasks_and_a_bad_file_is_named(report):
    seen = scenario(report, "predict_folder")
    kinds = ("seg.nii.gz", "uncertainty.nii.gz", "slices.csv")
    expected = sorted(f"vol_{i}_{kind}" for i in range(3) for kind in kinds)
    assert seen["written"] == expected
    assert seen["reported"] == ["vol_0", "vol_1", "vol_2"]
    assert "broken.nii.gz" in seen["error"] and "\n" not in seen["error"]


def test_two_sc_sam_workers_keep_embeddings_targets_and_adapters_identical(report):
    """sc-sam on 2 workers with the real LiteMedSAM, each worker with its own embedding cache
    folder (as on nodes without a shared file system)."""
    seen = scenario(report, "sc_sam")
    assert seen["model_iterations"] == 10
    assert "sam" in seen["loss_names"]  # the teacher's term reached the student
    first, second = seen["refreshes"]["0"], seen["refreshes"]["1"]
    assert [e["iteration"] for e in first] == [e["iteration"] for e in second] == [0, 4, 8]
    for mine, theirs in zip(first, second, strict=True):
        # Identical LoRA adapters and targets on both workers after every refresh.
        assert mine["adapters"] == theirs["adapters"], (mine, theirs)
        assert mine["targets"] == theirs["targets"]
        assert mine["target_slices"] == theirs["target_slices"]
    assert first[0]["target_slices"], "the teacher made no target"
    assert first[0]["adapters"] != first[0]["adapters_before"], "the adapters were not tuned"
    # Both caches hold the same embeddings, byte for byte; each slice was embedded once in
    # all, by one worker, and received by the other.
    caches = seen["cache_files"]
    assert caches["0"] == caches["1"] and len(caches["0"]) >= 3
    made = {rank: seen["refreshes"][rank][-1]["embedded"] for rank in ("0", "1")}
    received = {rank: seen["refreshes"][rank][-1]["received"] for rank in ("0", "1")}
    assert made["0"] > 0 and made["1"] > 0
    assert made["0"] + made["1"] == len(caches["0"])
    assert received["0"] == made["1"] and received["1"] == made["0"]


def test_a_separately_started_head_listens_only_on_loopback(cluster_report):
    assert cluster_report["interfaces"] == ["lo"]
    assert cluster_report["listening_with_ray"]
    assert set(cluster_report["listening_with_ray"]) <= LOOPBACK


def test_the_dock_trains_on_a_running_cluster_and_cancels(cluster_report):
    """tests/ray_widget_cases.py: Cluster address and 2 workers in the dock, progress, loss
    curve and result layers arrive, and Cancel stops a running job (its assertions)."""
    seen = scenario(cluster_report, "widget")
    assert seen["returncode"] == 0, failure(seen)
    assert "1 passed" in seen["output"], seen["output"]
    assert max(seen["train_steps_reported"]) == 20
    assert seen["cancel_seconds"] < 10.0


def test_the_command_line_trains_sc_sam_on_two_workers_through_ray_client(cluster_report):
    """``napari-ssseg train --method sc-sam --workers 2 --ray-address ray://127.0.0.1:PORT``."""
    seen = scenario(cluster_report, "client")
    assert seen["returncode"] == 0, failure(seen)
    assert seen["method"] == "sc-sam" and seen["iterations"] == 6
    assert "6 steps on 2 worker(s)" in seen["output"]
