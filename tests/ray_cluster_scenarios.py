"""Scenarios against a Ray head node started on its own, run by ``tests/test_ray.py`` inside a
loopback-only network namespace.

``python tests/ray_cluster_scenarios.py OUT.json`` starts ``ray start --head --block`` (2 CPUs,
no dashboard, the Ray Client server on, its files in a private temporary folder, ended by its
process id at the end), then

- ``widget``: runs ``tests/ray_widget_cases.py`` under pytest (pytest-qt, pytest-xvfb): the
  dock trains with the head's address and 2 workers, shows the results, and cancels a run;
- ``client``: the command line trains ``sc-sam`` on 2 workers through Ray Client
  (``--ray-address ray://127.0.0.1:PORT``);

both with ``RAY_AUTH_MODE=token``, as any process connecting to a given address of a cluster
with token authentication (Ray's default) needs (see ``docs/cluster.md``);

and writes what each observed into OUT.json. Run it only inside ``unshare -n``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from tests.ray_namespace import interfaces, listening_addresses  # noqa: E402

GCS_PORT = 6379  # the namespace is private: fixed ports cannot collide with anything
CLIENT_PORT = 10001
HEAD_START_TIMEOUT_S = 120
HEAD_ATTEMPTS = 3
"""``ray start`` gives its raylet a fixed 30 s to register, too little on a loaded machine."""
STEP_TIMEOUT_S = 480
"""Each step took 60 to 90 s on the idle 2-core machine; a step still running after 5 times
that is taken to hang."""
SLOW_MACHINE_ENV = {
    "RAY_worker_register_timeout_seconds": "600",
    "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "600",
}
"""On a loaded machine a Ray worker, or the Ray Client server started for a client, can take
more than Ray's defaults (60 s, 30 s) to start."""


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class Head:
    """``ray start --head --block`` as a child process; :meth:`stop` ends it by its pid (the
    blocking ``ray start`` then ends every process of its node)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self.log = folder / "head.log"
        self.temp = folder / "ray"
        command = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            f"--port={GCS_PORT}",
            f"--ray-client-server-port={CLIENT_PORT}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=false",
            f"--object-store-memory={200 * 1024 * 1024}",
            "--disable-usage-stats",
            # Its own folder: nothing in /tmp/ray (ray_current_cluster) for other clusters.
            f"--temp-dir={self.temp}",
        ]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=os.environ | SLOW_MACHINE_ENV
            )

    def wait_ready(self) -> float:
        """Seconds until the head reports its runtime started (raises if it does not)."""
        start = time.monotonic()
        while time.monotonic() - start < HEAD_START_TIMEOUT_S:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start ended: {tail(self.log.read_text())}")
            if "Ray runtime started" in self.log.read_text():
                return time.monotonic() - start
            time.sleep(0.5)
        raise RuntimeError(f"ray start did not finish: {tail(self.log.read_text())}")

    def server_logs(self, lines: int = 25) -> dict[str, str]:
        """The last lines of the head's Ray Client server and raylet logs, by file name: what
        a failed client step needs to be understood (the client sees one line of it)."""
        logs = self.temp / "session_latest" / "logs"
        patterns = ("ray_client_server*", "raylet.err", "raylet.out", "python-core-driver-*")
        found = sorted({path for pattern in patterns for path in logs.glob(pattern)})
        return {path.name: tail(path.read_text(errors="replace"), lines) for path in found}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_head(folder: Path) -> tuple[Head, float]:
    """A ready head node and the seconds its start took (the last of up to 3 attempts)."""
    for attempt in range(HEAD_ATTEMPTS):
        head = Head(folder / f"h{attempt}")  # short: Ray's socket paths must stay short
        try:
            return head, head.wait_ready()
        except RuntimeError:
            head.stop()
            if attempt == HEAD_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def run_logged(command: list[str], log: Path, env: dict, cwd: Path) -> int | str:
    """Run ``command`` with its output in ``log``; its exit status, or "timeout"."""
    with log.open("w") as out:
        try:
            done = subprocess.run(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                timeout=STEP_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return "timeout"
    return done.returncode


def scenario_widget(folder: Path, env: dict) -> dict:
    report, log = folder / "widget.json", folder / "widget.log"
    start = time.monotonic()
    status = run_logged(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s", "-rs"]
        + [str(ROOT / "tests" / "ray_widget_cases.py")],
        log,
        env
        | {
            "SSSEG_RAY_ADDRESS": f"127.0.0.1:{GCS_PORT}",
            "SSSEG_RAY_WIDGET_REPORT": str(report),
        },
        ROOT,
    )
    seen = json.loads(report.read_text()) if report.is_file() else {}
    return seen | {
        "returncode": status,
        "output": tail(log.read_text(), 60),
        "seconds": round(time.monotonic() - start, 1),
    }


def scenario_client(folder: Path, env: dict) -> dict:
    """``napari-ssseg train --method sc-sam --workers 2 --ray-address ray://...``."""
    import numpy as np

    from napari_ssseg.settings.values import merged
    from tests.conftest import TINY_TRAINING, synthetic_case, write_nifti

    image, labels = synthetic_case()
    write_nifti(folder / "case.nii.gz", image)
    write_nifti(folder / "case_labels.nii.gz", labels.astype(np.uint8))
    settings = merged(
        TINY_TRAINING,
        {
            "sam": {"slices": 2, "refresh": 3},
            # The foundation teacher from the first of 6 steps.
            "budget": {"teacher_start": 0.0, "gate_dice": 0.0},
            # Never the user's cache folder.
            "foundation": {"embedding_cache": str(folder / "embeddings")},
        },
    )
    (folder / "settings.json").write_text(json.dumps(settings))
    command = [sys.executable, "-m", "napari_ssseg.cli", "train", str(folder / "case.nii.gz")]
    command += ["--labels", str(folder / "case_labels.nii.gz"), "--annotated-slices", "4,8,12"]
    command += ["--out", str(folder / "model"), "--config", str(folder / "settings.json")]
    command += ["--method", "sc-sam", "--max-iters", "6", "--threads", "1", "--workers", "2"]
    command += ["--ray-address", f"ray://127.0.0.1:{CLIENT_PORT}"]
    start = time.monotonic()
    log = folder / "client.log"
    status = run_logged(command, log, env, folder)
    settings_file = folder / "model" / "model.json"
    written = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
    return {
        "returncode": status,
        "output": tail(log.read_text(), 30),
        "iterations": written.get("summary", {}).get("iterations"),
        "method": written.get("config", {}).get("method"),
        "seconds": round(time.monotonic() - start, 1),
    }


SCENARIOS = {"widget": scenario_widget, "client": scenario_client}


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    names = argv[1:] or list(SCENARIOS)
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",  # the head's token is ~/.ray/auth_token (made if missing)
    }
    report: dict = {"interfaces": interfaces()}
    with tempfile.TemporaryDirectory(prefix="ssseg-head-") as tmp:
        head = None
        try:
            head, seconds = start_head(Path(tmp))
            report["head_start_seconds"] = round(seconds, 1)
            report["listening_with_ray"] = listening_addresses()
            for name in names:
                folder = Path(tmp) / name
                folder.mkdir()
                try:
                    report[name] = SCENARIOS[name](folder, env)
                except Exception:
                    report[name] = {"crashed": traceback.format_exc()}
                if report[name].get("returncode", 0) != 0:
                    report[name]["head_logs"] = head.server_logs()
                print(f"{name}: {report[name]}", file=sys.stderr, flush=True)
        except Exception:
            report["head_failed"] = traceback.format_exc()
        finally:
            if head is not None:
                head.stop()
    out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
