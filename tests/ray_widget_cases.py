"""The dock widget trains on a running Ray cluster through its Cluster and Workers fields.

Not collected by the suite (the name does not start with ``test_``): run only by
``tests/ray_cluster_scenarios.py``, inside a loopback-only network namespace in which it has
started a Ray head node, as ``pytest tests/ray_widget_cases.py`` with the head's address in
``SSSEG_RAY_ADDRESS`` (pytest-xvfb gives it an X server on a unix socket). What it saw goes as
JSON to ``SSSEG_RAY_WIDGET_REPORT``; the assertions are here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from napari_ssseg.settings.values import merged
from tests.test_widget import REVEALED, TINY, reveal_liver

ADDRESS = os.environ.get("SSSEG_RAY_ADDRESS")
REPORT = os.environ.get("SSSEG_RAY_WIDGET_REPORT")

pytestmark = [
    pytest.mark.skipif(ADDRESS is None, reason="run by tests/ray_cluster_scenarios.py only"),
    pytest.mark.gui,
    pytest.mark.slow,
]


@pytest.fixture
def cluster_widget(make_napari_viewer, tmp_path, qtbot):
    """The CT sample in a shown viewer, the dock with the cluster's address and 2 workers."""
    from napari_ssseg.runner import LocalRunner
    from napari_ssseg.widgets.dock import SsSegWidget

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-ssseg", "ct")
    local = LocalRunner(work_root=tmp_path / "runs", prewarm=False)
    widget = SsSegWidget(viewer, runner=local)
    viewer.window.add_dock_widget(widget, name="napari-ssseg")
    widget.image_combo.setCurrentText("example_ct_sm")
    widget.project_edit.setText(str(tmp_path / "project"))
    widget.config_overrides = merged(TINY, {"budget": {"max_iters": 20}})
    widget.cluster_edit.setText(ADDRESS)
    widget.workers_spin.setValue(2)
    yield viewer, widget
    widget.shutdown()
    local.close()


def test_the_dock_trains_on_the_cluster_shows_results_and_cancels(
    cluster_widget, qtbot, monkeypatch
):
    from qtpy.QtCore import Qt, QTimer

    from napari_ssseg.runner.ray_runner import RayRunner
    from napari_ssseg.widgets import dock

    errors: list[str] = []
    monkeypatch.setattr(dock, "show_error", errors.append)
    viewer, widget = cluster_widget
    labels = reveal_liver(viewer, widget)
    kept = labels.data.copy()
    statuses: list[str] = []
    progress: list[tuple[str, int]] = []
    finished: list[str] = []
    widget.monitor.status_changed.connect(lambda event: statuses.append(event.status.value))
    widget.monitor.progressed.connect(lambda event: progress.append((event.stage, event.iteration)))
    widget.monitor.finished.connect(lambda event: finished.append(event.status.value))
    ticks: list[float] = []  # the Qt event loop keeps turning while Ray connects and trains
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)

    start = time.monotonic()
    qtbot.mouseClick(widget.train_button, Qt.MouseButton.LeftButton)
    connecting = widget.status_label.text()
    qtbot.waitUntil(lambda: bool(finished or errors), timeout=400_000)
    trained_s = time.monotonic() - start
    assert not errors, errors
    assert finished == ["done"], widget.status_label.text()
    assert isinstance(widget.runner, RayRunner) and widget.runner.workers == 2
    assert connecting.startswith("connecting to the Ray cluster at 127.0.0.1")
    assert statuses[:2] == ["pending", "running"] and statuses[-1] == "done"
    steps = [iteration for stage, iteration in progress if stage == "train"]
    assert steps and max(steps) == 20, progress
    assert any(stage == "predict" for stage, _ in progress)
    assert widget.loss_plot.losses  # the loss curve was drawn from the workers' reports
    assert widget.status_label.text().startswith("done: 20 steps")
    pseudo = viewer.layers["pseudo-labels"]
    assert pseudo.data.shape == viewer.layers["example_ct_sm"].data.shape
    assert "uncertainty" in viewer.layers
    for z in REVEALED:  # the user's labels are kept exactly on annotated slices
        assert np.array_equal(pseudo.data[z], labels.data[z])
    assert np.array_equal(labels.data, kept)  # training never writes the user's layer
    gap = float(np.max(np.diff(ticks))) if len(ticks) > 1 else 0.0

    # Cancel a long run once the workers report training progress.
    shown = pseudo.data.copy()
    finished.clear()
    progress.clear()
    widget.config_overrides = merged(TINY, {"budget": {"max_iters": 1_000_000}})
    widget.budget_spin.setValue(600)
    qtbot.mouseClick(widget.train_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: errors or any(stage == "train" for stage, _ in progress), timeout=400_000
    )
    assert not errors, errors
    asked = time.monotonic()
    qtbot.mouseClick(widget.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(finished), timeout=60_000)
    cancel_s = time.monotonic() - asked
    timer.stop()
    assert finished == ["stopped"], widget.status_label.text()
    assert "stopped" in widget.status_label.text()
    assert widget.train_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert np.array_equal(viewer.layers["pseudo-labels"].data, shown)  # no new results
    assert np.array_equal(labels.data, kept)
    assert cancel_s < 10.0, cancel_s

    if REPORT:
        Path(REPORT).write_text(
            json.dumps(
                {
                    "train_seconds": round(trained_s, 1),
                    "cancel_seconds": round(cancel_s, 2),
                    "largest_event_loop_gap_ms": round(1000 * gap),
                    "train_steps_reported": steps,
                }
            )
        )
    # Connecting and training happen off the Qt thread (a second-long stall would mean not).
    assert gap < 3.0, f"the event loop stalled for {gap:.2f} s"
