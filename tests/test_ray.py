"""The Ray back-end on a private 2-CPU Ray cluster inside a loopback-only network namespace.

Every scenario runs in one subprocess (``tests/ray_scenarios.py``) started under
``unshare -n``: its only network interface is loopback, so Ray cannot reach any other
address (outside such a namespace Ray also talks over the machine's own address). Skipped
with the reason when Ray is not installed or ``unshare -n`` is not permitted.
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

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "tests" / "ray_scenarios.py"
LOOPBACK = {
    "127.0.0.1",
    "0000:0000:0000:0000:0000:ffff:7f00:0001",  # 127.0.0.1 as an IPv6-mapped address
    "0000:0000:0000:0000:0000:0000:0000:0001",  # ::1
}
SCENARIO_TIMEOUT_S = 1200

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


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """Run every scenario once in the namespace; their observations, by scenario."""
    unshare, reason = _namespace()
    if unshare is None:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("ray") / "report.json"
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    command = f"exec {sys.executable} {SCENARIOS} {out}"
    start = time.monotonic()
    done = subprocess.run(
        loopback_namespace_command(command, unshare),
        capture_output=True,
        text=True,
        env=env,
        timeout=SCENARIO_TIMEOUT_S,
        cwd=ROOT,
    )
    print(f"ray scenarios took {time.monotonic() - start:.0f} s")
    assert done.returncode == 0 and out.is_file(), done.stderr[-3000:]
    return json.loads(out.read_text())


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
    assert message.startswith("the model to warm-start from has channels"), message
    assert "\n" not in message and "Traceback" not in message
    assert not seen["model_written"]


def test_a_folder_is_predicted_by_parallel_tasks_and_a_bad_file_is_named(report):
    seen = scenario(report, "predict_folder")
    kinds = ("seg.nii.gz", "uncertainty.nii.gz", "slices.csv")
    expected = sorted(f"vol_{i}_{kind}" for i in range(3) for kind in kinds)
    assert seen["written"] == expected
    assert seen["reported"] == ["vol_0", "vol_1", "vol_2"]
    assert "broken.nii.gz" in seen["error"] and "\n" not in seen["error"]
