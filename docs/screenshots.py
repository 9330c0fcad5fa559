"""Screenshots of the napari-ssseg widget on the bundled CT, and the click-to-result time.

Run under an X server, e.g. ``xvfb-run -a python docs/screenshots.py`` (add ``--budget 20``
for a quicker run). It opens napari, loads the CT sample, "paints" the liver and spleen on
four slices from the sample's reference labels, trains in the background with the widget's
default settings and the given time budget, accepts one slice from the review queue, and
writes into ``docs/``:

- ``widget_annotate.png``: the revealed slices and the widget before training,
- ``widget_training.png``: during training (progress bar, loss plot),
- ``widget_uncertainty.png``: pseudo-labels and the uncertainty overlay on slice 15,
  between two annotated slices,
- ``widget_review.png``: the review queue after accepting a slice.

The project folder is a temporary one, so nothing is written beside the sample.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REVEALED = (6, 12, 18, 24)
CLASSES = {5: 1, 1: 2}  # sample id -> our class: liver -> 1, spleen -> 2


def wait(app, condition, timeout: float) -> None:
    """Run the Qt event loop until ``condition()`` holds (or raise after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the widget did not reach the expected state in time")
        app.processEvents()
        time.sleep(0.01)


def grab(viewer, app, name: str) -> Path:
    for _ in range(20):  # let the canvas and widgets repaint
        app.processEvents()
        time.sleep(0.01)
    path = DOCS / name
    viewer.window._qt_window.grab().save(str(path))
    print(f"wrote {path}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="training time budget (s)")
    args = parser.parse_args()

    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    app = QApplication.instance()
    viewer.open_sample("napari-ssseg", "ct")
    _, widget = viewer.window.add_plugin_dock_widget("napari-ssseg", "Few-slice segmentation")
    widget.image_combo.setCurrentText("example_ct_sm")
    project = Path(tempfile.mkdtemp(prefix="ssseg-screenshots-"))
    widget.project_edit.setText(str(project))
    widget.budget_spin.setValue(args.budget)

    reference = viewer.layers["example_ct_sm reference labels"]
    reference.visible = False
    labels = widget.new_labels_layer()
    for z in REVEALED:
        for sample_id, ours in CLASSES.items():
            labels.data[z][reference.data[z] == sample_id] = ours
    labels.events.paint()
    widget.class_edit.setText("liver, spleen")
    widget.go_to_slice(REVEALED[1])
    for _ in range(10):
        app.processEvents()
    viewer.reset_view()
    grab(viewer, app, "widget_annotate.png")

    # A user annotates for longer than the spare process takes to import torch and MONAI.
    wait(app, lambda: widget.runner.warm, 120)
    clicked = time.monotonic()
    widget.train_button.click()
    wait(app, lambda: widget.progress_bar.value() >= 40, args.budget + 120)
    grab(viewer, app, "widget_training.png")
    wait(app, lambda: not widget.monitor.running, args.budget + 120)
    if widget.last_click_to_result is None:
        raise SystemExit(f"training did not finish: {widget.status_label.text()}")
    print(
        f"click to result layers: {widget.last_click_to_result:.1f} s "
        f"(budget {args.budget:.0f} s; {time.monotonic() - clicked:.1f} s until idle)"
    )
    print(f"status: {widget.status_label.text()}")

    # A slice between two annotated ones shows pseudo-labels and where the model hesitates.
    widget.go_to_slice(15)
    grab(viewer, app, "widget_uncertainty.png")

    most_uncertain = widget.review_queue()[0]
    widget.go_to_slice(most_uncertain)
    accepted = widget.accept_current()
    print(f"accepted slice {accepted}; next in view: {widget.current_slice()}")
    viewer.layers["uncertainty"].visible = False
    grab(viewer, app, "widget_review.png")
    assert np.array_equal(labels.data[accepted], viewer.layers["pseudo-labels"].data[accepted])

    widget.shutdown()
    viewer.close()


if __name__ == "__main__":
    main()
