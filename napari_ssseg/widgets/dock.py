"""The napari dock widget: annotate a few slices, train in the background, review, export.

Thin by design: the session state lives in :class:`AnnotationSession`, runs in
:class:`LocalRunner` (followed by :class:`RunMonitor`), files in ``project_store`` and
``io.outputs``. This module only wires napari layers and Qt controls to them.

Shortcuts on the viewer: Shift+N goes to the next slice of the review queue, Shift+A accepts
the pseudo-labels of the slice in view.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_ssseg.errors import SsSegError
from napari_ssseg.folder_reader import labels_layer_name
from napari_ssseg.project_store import MODEL_DIR, autosave_time, default_project_dir
from napari_ssseg.runner import LocalRunner, ProgressEvent, RunStatus, StatusEvent
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.values import merged
from napari_ssseg.tasks.outputs import write_prediction
from napari_ssseg.widgets.cluster import ClusterConnection
from napari_ssseg.widgets.embedding_prep import EmbeddingPreparer
from napari_ssseg.widgets.layers import (
    PSEUDO_LABELS,
    UNCERTAINTY,
    current_slice,
    grid_kwargs,
    layer_axis,
    same_grid,
    show_result_layers,
    volume_from_layer,
    world_position,
)
from napari_ssseg.widgets.loss_plot import LossPlot
from napari_ssseg.widgets.project_volumes import ProjectVolumes, VolumeEntry
from napari_ssseg.widgets.review_list import ReviewList
from napari_ssseg.widgets.run_monitor import RunMonitor, percent
from napari_ssseg.widgets.session import AnnotationSession, parse_class_names
from napari_ssseg.widgets.training_settings import TrainingSettings
from napari_ssseg.widgets.volume_list import VolumeList

NEXT_KEY = "Shift-N"
ACCEPT_KEY = "Shift-A"


def _unbind_keys(viewer: Any) -> None:
    for key in (NEXT_KEY, ACCEPT_KEY):
        viewer.bind_key(key, None)


class SsSegWidget(QWidget):
    """Dock widget of napari-ssseg.

    ``config_overrides`` (training settings, JSON values by section) is written over the
    settings chosen in the widget; tests and scripts use it for tiny runs.
    """

    def __init__(self, napari_viewer: Any, runner: LocalRunner | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        # A runner passed in belongs to the caller (it may serve several widgets).
        self._owns_runner = runner is None
        self.runner = runner if runner is not None else LocalRunner(prewarm=True)
        self._local_runner = self.runner
        self._cluster: ClusterConnection | None = None
        self.monitor = RunMonitor(self.runner, parent=self)
        self.embeddings = EmbeddingPreparer(parent=self)
        self.session: AnnotationSession | None = None
        self.volumes = ProjectVolumes(napari_viewer)
        self._run_sessions: list[AnnotationSession] = []
        self.config_overrides: dict[str, Any] = {}
        self.last_click_to_result: float | None = None
        self.warm_started = False
        self._session_layers: tuple[Any, Any] | None = None
        self._watched: set[int] = set()
        self._clicked_at = 0.0
        self._default_export: str | None = None
        self._build()
        self._connect()
        self._refresh_layer_choices()
        self.viewer.bind_key(NEXT_KEY, lambda _viewer: self.next_review(), overwrite=True)
        self.viewer.bind_key(ACCEPT_KEY, lambda _viewer: self.accept_current(), overwrite=True)
        self.destroyed.connect(partial(_unbind_keys, self.viewer))
        if self._owns_runner:
            self.destroyed.connect(self.runner.close)
        self.destroyed.connect(self.embeddings.runner.close)

    # -- layout -----------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)

        data = QGroupBox("Image and labels")
        form = QFormLayout(data)
        self.image_combo = QComboBox()
        self.labels_combo = QComboBox()
        self.new_labels_button = QPushButton("New")
        self.new_labels_button.setToolTip("Add an empty labels layer on the image's grid")
        labels_row = QHBoxLayout()
        labels_row.addWidget(self.labels_combo, 1)
        labels_row.addWidget(self.new_labels_button)
        self.class_edit = QLineEdit()
        self.class_edit.setPlaceholderText("class names for labels 1, 2, ...: liver, spleen")
        self.project_edit = QLineEdit()
        self.project_edit.setToolTip("Autosave folder (default: <image name>.ssseg beside it)")
        self.restore_button = QPushButton("Restore autosave")
        self.restore_button.setEnabled(False)
        self.autosave_label = QLabel("")
        self.autosave_label.setWordWrap(True)
        self.volume_list = VolumeList()
        form.addRow("Image", self.image_combo)
        form.addRow("Labels", labels_row)
        form.addRow("Volumes", self.volume_list)
        form.addRow("Classes", self.class_edit)
        form.addRow("Project", self.project_edit)
        form.addRow(self.restore_button, self.autosave_label)
        layout.addWidget(data)

        slices = QGroupBox("Annotated slices")
        column = QVBoxLayout(slices)
        self.annotated_label = QLabel("0 annotated")
        self.annotated_label.setWordWrap(True)
        self.mark_button = QPushButton("Mark current slice annotated (empty) / unmark")
        column.addWidget(self.annotated_label)
        column.addWidget(self.mark_button)
        layout.addWidget(slices)

        training = QGroupBox("Training")
        form = QFormLayout(training)
        self.settings = TrainingSettings()
        # Shortcuts used by scripts and tests.
        self.method_combo = self.settings.method_combo
        self.budget_spin = self.settings.budget_spin
        self.device_combo = self.settings.device_combo
        self.foundation_combo = self.settings.foundation_combo
        self.checkpoint_edit = self.settings.checkpoint_edit
        self.refine_combo = self.settings.refine_combo
        self.pretrain_check = self.settings.pretrain_check
        self.distill_check = self.settings.distill_check
        self.cluster_edit = self.settings.cluster_edit
        self.workers_spin = self.settings.workers_spin
        self.train_button = QPushButton("Train")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.loss_plot = LossPlot()
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.embedding_label = QLabel("")
        self.embedding_label.setWordWrap(True)
        form.addRow(self.settings)
        form.addRow(buttons)
        form.addRow(self.progress_bar)
        form.addRow(self.loss_plot)
        form.addRow(self.status_label)
        form.addRow(self.embedding_label)
        layout.addWidget(training)

        review = QGroupBox("Review (most uncertain first)")
        column = QVBoxLayout(review)
        self.review_list = ReviewList()
        self.next_button = QPushButton("Next (Shift+N)")
        self.accept_button = QPushButton("Accept slice (Shift+A)")
        buttons = QHBoxLayout()
        buttons.addWidget(self.next_button)
        buttons.addWidget(self.accept_button)
        self.agreement_label = QLabel("")
        self.agreement_label.setWordWrap(True)
        column.addWidget(self.review_list)
        column.addLayout(buttons)
        column.addWidget(self.agreement_label)
        layout.addWidget(review)

        export = QGroupBox("Export")
        row = QHBoxLayout(export)
        self.export_edit = QLineEdit()
        self.export_edit.setPlaceholderText("output folder")
        self.export_button = QPushButton("Export")
        row.addWidget(self.export_edit, 1)
        row.addWidget(self.export_button)
        layout.addWidget(export)
        layout.addStretch(1)

    def _connect(self) -> None:
        layers = self.viewer.layers
        for event in (layers.events.inserted, layers.events.removed, layers.events.moved):
            event.connect(self._refresh_layer_choices)
        self.image_combo.currentTextChanged.connect(self._on_image_changed)
        self.project_edit.textChanged.connect(self._on_project_changed)
        self.labels_combo.currentTextChanged.connect(self._on_labels_changed)
        self.new_labels_button.clicked.connect(self.new_labels_layer)
        self.restore_button.clicked.connect(self.restore)
        self.mark_button.clicked.connect(self.toggle_current_mark)
        self.train_button.clicked.connect(self.train)
        self.cancel_button.clicked.connect(self.cancel)
        self.review_list.picked.connect(self.go_to_slice)
        self.volume_list.picked.connect(self._on_volume_picked)
        self.volume_list.toggled.connect(self.volumes.set_in_project)
        self.next_button.clicked.connect(self.next_review)
        self.accept_button.clicked.connect(self.accept_current)
        self.export_button.clicked.connect(self.export)
        self.monitor.progressed.connect(self._on_progress)
        self.monitor.status_changed.connect(self._on_status)
        self.monitor.finished.connect(self._on_finished)
        # Settings that change what the foundation model must embed; a short wait lets
        # several changes (a restored project) start one job.
        self._embed_soon = QTimer(self)
        self._embed_soon.setSingleShot(True)
        self._embed_soon.setInterval(500)
        self._embed_soon.timeout.connect(self.prepare_embeddings)
        self.embeddings.changed.connect(self.embedding_label.setText)
        for combo in (self.method_combo, self.foundation_combo, self.refine_combo):
            combo.currentTextChanged.connect(self._embed_soon.start)
        self.checkpoint_edit.editingFinished.connect(self._embed_soon.start)
        for check in (self.pretrain_check, self.distill_check):
            check.toggled.connect(lambda _on: self._embed_soon.start())
        # Painting fires many events; recount the annotated slices once it settles.
        self._recount = QTimer(self)
        self._recount.setSingleShot(True)
        self._recount.setInterval(150)
        self._recount.timeout.connect(self._show_annotated)

    # -- layers -----------------------------------------------------------------------------

    def _layer(self, name: str, kind: type) -> Any:
        found = [layer for layer in self.viewer.layers if layer.name == name]
        return found[0] if found and isinstance(found[0], kind) else None

    def image_layer(self) -> Image | None:
        return self._layer(self.image_combo.currentText(), Image)

    def labels_layer(self) -> Labels | None:
        return self._layer(self.labels_combo.currentText(), Labels)

    def _refresh_layer_choices(self, *_: Any) -> None:
        own = {PSEUDO_LABELS, UNCERTAINTY}
        images = [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, Image) and layer.ndim == 3 and layer.name not in own
        ]
        labels = [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, Labels) and layer.name not in own
        ]
        for combo, names in ((self.image_combo, images), (self.labels_combo, labels)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
            if combo.currentText() != current:
                combo.currentTextChanged.emit(combo.currentText())
        self.volumes.forget_removed()
        self._show_volumes()

    def new_labels_layer(self) -> Labels | None:
        """Add an empty labels layer on the chosen image's grid and pick it."""
        image = self.image_layer()
        if image is None:
            show_error("napari-ssseg: pick a 3-D image layer first")
            return None
        layer = self.viewer.add_labels(
            np.zeros(image.data.shape, np.uint8),
            name=labels_layer_name(image.name),
            **grid_kwargs(image),
        )
        self.labels_combo.setCurrentText(layer.name)
        return layer

    def _on_image_changed(self, _name: str) -> None:
        self.session = None
        image = self.image_layer()
        if image is None:
            return
        paired = self.volumes.labels_of(image)
        if paired is not None and paired is not self.labels_layer():
            self.labels_combo.setCurrentText(paired.name)
        self.volumes.show_only(image)
        try:
            folder = default_project_dir(volume_from_layer(image))
        except SsSegError as error:
            show_error(f"napari-ssseg: {error}")
            return
        self.project_edit.setText(str(folder))
        self._show_volumes()
        if self.labels_layer() is not None:
            try:
                self.ensure_session()
            except SsSegError:
                return
            self._show_results()
            self._embed_soon.start()

    def _on_project_changed(self, text: str) -> None:
        """Follow the project folder with the export folder (until the user edits it)."""
        previous = self._default_export
        if previous is None or self.export_edit.text() in ("", previous):
            self._default_export = str(Path(text).expanduser() / "export")
            self.export_edit.setText(self._default_export)
        self._show_autosave()

    def _on_labels_changed(self, _name: str) -> None:
        self.session = None
        layer, image = self.labels_layer(), self.image_layer()
        if layer is not None and image is not None:
            self.volumes.pair(image, layer)
        if layer is not None and id(layer) not in self._watched:
            self._watched.add(id(layer))
            for event in (layer.events.paint, layer.events.data, layer.events.labels_update):
                event.connect(self._on_labels_edited)
        self._show_annotated()

    def _on_labels_edited(self, event: Any = None) -> None:
        if self.session is not None and self._session_layers is not None:
            self.volumes.session(*self._session_layers)  # follows a replaced layer array
        self._recount.start()

    # -- session ----------------------------------------------------------------------------

    def ensure_session(self) -> AnnotationSession:
        """The session for the chosen layers (made on first use); raises SsSegError."""
        image, labels = self.image_layer(), self.labels_layer()
        if image is None:
            raise SsSegError("pick a 3-D image layer")
        if labels is None:
            labels = self.new_labels_layer()
        if not same_grid(image, labels):
            raise SsSegError(
                f"labels layer {labels.name!r} is not on the grid of {image.name!r} (shape, "
                "scale and translate must match); use New to make one"
            )
        if self.session is None or self._session_layers != (image, labels):
            self.session = self.volumes.session(image, labels)
            self._session_layers = (image, labels)
        names = parse_class_names(self.class_edit.text())
        if names:
            self.session.class_names = names
        return self.session

    def _fill_class_names(self, session: AnnotationSession) -> None:
        """Without names typed in, take the labels layer's class names (a dataset's
        ``dataset.json``), else name classes ``class 1..C`` after the largest label."""
        if not session.class_names:
            largest = int(np.max(session.labels)) if session.labels.size else 0
            layer = self.labels_layer()
            known = (layer.metadata.get("ssseg_class_names") if layer is not None else None) or {}
            known = {int(k): str(v) for k, v in known.items()}
            count = max(largest, max(known, default=0), 1)
            session.class_names = [known.get(i, f"class {i}") for i in range(1, count + 1)]
            self.class_edit.setText(", ".join(session.class_names))

    # -- the project's volumes ------------------------------------------------------------

    def _show_volumes(self) -> None:
        self.volume_list.show_entries(self.volumes.entries(self.image_layer(), self.labels_layer()))

    def _on_volume_picked(self, name: str) -> None:
        if name != self.image_combo.currentText():
            self.image_combo.setCurrentText(name)

    def project_dir(self) -> Path:
        return Path(self.project_edit.text()).expanduser()

    def _show_annotated(self) -> None:
        if self.labels_layer() is None or self.image_layer() is None:
            self.annotated_label.setText("pick an image and a labels layer")
            return
        try:
            session = self.ensure_session()
        except SsSegError as error:
            self.annotated_label.setText(str(error))
            return
        slices = session.annotated_slices
        marked = sorted(session.marked_empty)
        text = f"{len(slices)} annotated: {', '.join(map(str, slices)) or 'none'}"
        if marked:
            text += f" (empty: {', '.join(map(str, marked))})"
        self.annotated_label.setText(text)
        self._show_review()
        self.volume_list.update_entry(
            VolumeEntry(self.image_combo.currentText(), len(slices), True, True)
        )

    def _show_autosave(self) -> None:
        saved = autosave_time(self.project_dir())
        self.restore_button.setEnabled(saved is not None)
        self.autosave_label.setText(f"autosave from {saved}" if saved else "no autosave yet")

    def autosave(self) -> None:
        """Save the session into the project folder (errors are shown, never raised)."""
        if self.session is None:
            return
        names = parse_class_names(self.class_edit.text())
        if names:
            self.session.class_names = names
        try:
            self.session.save(self.project_dir())
        except SsSegError as error:
            show_error(f"napari-ssseg: autosave failed: {error}")
            return
        self._show_autosave()

    def restore(self) -> None:
        """Load the autosave of the chosen image into its labels layer."""
        try:
            session = self.ensure_session()
            saved = session.restore(self.project_dir())
        except SsSegError as error:
            show_error(f"napari-ssseg: {error}")
            return
        self._session_layers[1].refresh()
        self.class_edit.setText(", ".join(saved.class_names))
        self._show_annotated()
        model = "; last model restored" if session.model_dir is not None else ""
        self.status_label.setText(f"restored the autosave from {saved.saved_at}{model}")

    def current_slice(self) -> int:
        session = self.ensure_session()
        return current_slice(self._session_layers[0], self.viewer.dims.point, session.axis)

    def go_to_slice(self, index: int) -> None:
        session = self.ensure_session()
        image = self._session_layers[0]
        self.viewer.dims.set_point(
            layer_axis(session.axis), world_position(image, session.axis, index)
        )

    def toggle_current_mark(self) -> None:
        """Mark the slice in view annotated-but-empty, or withdraw that mark."""
        try:
            session = self.ensure_session()
            session.toggle_empty_mark(self.current_slice())
        except SsSegError as error:
            show_error(f"napari-ssseg: {error}")
            return
        self._show_annotated()

    # -- training ---------------------------------------------------------------------------

    def training_config(self) -> TrainConfig:
        """The training settings of the controls with ``config_overrides`` written over them."""
        return TrainConfig.from_dict(merged(self.settings.values(), self.config_overrides))

    def train(self) -> None:
        """Autosave, then train (warm-starting from the last model) in the background."""
        if self.monitor.running:
            return
        try:
            session = self.ensure_session()
            self._fill_class_names(session)
            others = [
                self.volumes.session(image, self.volumes.labels_of(image))
                for image in self.volumes.others(self.image_layer())
            ]
            for other in others:
                other.class_names = list(session.class_names)
            session.save(self.project_dir())
            for other in others:
                if other.annotated_slices:
                    other.save(default_project_dir(other.image))
            job = session.job(self.training_config(), self.project_dir() / MODEL_DIR, others=others)
            semi_supervised = bool(job.config.active_teachers)
            warnings = job.project().warnings(semi_supervised=semi_supervised)
        except SsSegError as error:
            show_error(f"napari-ssseg: {error}")
            return
        for warning in warnings:
            show_warning(f"napari-ssseg: {warning}")
        self._run_sessions = [session, *others]
        self._show_autosave()
        self._clicked_at = time.monotonic()
        self.loss_plot.clear()
        self.progress_bar.setValue(0)
        self.warm_started = job.init_model_dir is not None
        warm = " (warm start from the last model)" if self.warm_started else ""
        self.status_label.setText(f"starting{warm}...")
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._embed_soon.stop()
        self.embeddings.pause()  # the run embeds what is still missing itself
        address, workers = self.settings.cluster()
        if address is None:
            self._use_runner(self._local_runner)
            self.monitor.start(job)
            return
        if self._cluster is None or not self._cluster.serves(address, workers):
            if self._cluster is not None:
                self._cluster.close()
            self._cluster = ClusterConnection(address, workers, parent=self)
            self._cluster.failed.connect(self._on_cluster_failed)
        self._use_runner(self._cluster.runner)
        self.status_label.setText(f"connecting to the Ray cluster at {address}...")
        self._cluster.when_connected(lambda: self.monitor.start(job))

    def prepare_embeddings(self) -> bool:
        """Embed the current volume's slices in the background when the chosen settings need
        the foundation model (not while training, nor for a cluster, whose workers keep
        caches of their own); returns whether a job started."""
        busy = self.monitor.running or self.settings.cluster()[0] is not None
        if busy or self.labels_layer() is None:  # no labels layer made behind the user's back
            return False
        try:
            session = self.ensure_session()
            config = self.training_config()
        except SsSegError:
            return False  # the Train button reports bad settings
        return self.embeddings.prepare(session, config, self.project_dir() / MODEL_DIR)

    def _use_runner(self, runner: Any) -> None:
        self.runner = runner
        self.monitor.runner = runner

    def _on_cluster_failed(self, message: str) -> None:
        self.train_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.status_label.setText("could not reach the cluster; your labels are unchanged")
        show_error(f"napari-ssseg: {message}")

    def cancel(self) -> None:
        self.monitor.cancel()
        self.status_label.setText("stopping...")

    def _on_progress(self, event: ProgressEvent) -> None:
        self.progress_bar.setValue(percent(event))
        if event.stage == "train":
            if "total" in event.losses:
                self.loss_plot.add(event.iteration, event.losses["total"])
            if "agreement" in event.losses:
                self.loss_plot.add_agreement(event.iteration, event.losses["agreement"])
            self.status_label.setText(f"training: step {event.iteration}, {event.elapsed:.0f} s")
        else:
            self.status_label.setText("predicting the whole volume...")

    def _on_status(self, event: StatusEvent) -> None:
        if event.status is RunStatus.PENDING:
            self.status_label.setText("starting the training process...")
        elif event.status is RunStatus.RUNNING:
            self.status_label.setText("training...")

    def _on_finished(self, event: StatusEvent) -> None:
        self.train_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self._embed_soon.start()  # whatever a paused embedding job left, for the next run
        if event.status is RunStatus.ERROR:
            self.status_label.setText("training failed; your labels are unchanged")
            show_error(f"napari-ssseg: {event.message}")
            return
        if event.status is RunStatus.STOPPED:
            self.status_label.setText("training stopped; no new model")
            show_info(f"napari-ssseg: {event.message}")
            return
        try:
            result = self.runner.result()
        except SsSegError as error:
            show_error(f"napari-ssseg: {error}")
            return
        for session in self._run_sessions:
            session.apply(result)
            if session is not self.session and session.annotated_slices:
                try:
                    session.save(default_project_dir(session.image))
                except SsSegError as error:
                    show_error(f"napari-ssseg: autosave of {session.image.name} failed: {error}")
        if self.session is None:  # the user picked other layers meanwhile
            return
        self._show_results()
        self.last_click_to_result = time.monotonic() - self._clicked_at
        summary = result.summary
        refined = [v.refinement for v in result.volumes if v.name == self.session.image.name]
        self.status_label.setText(
            f"done: {summary.get('iterations')} steps in {summary.get('seconds')} s; "
            f"results after {self.last_click_to_result:.0f} s"
            + (f"\n{refined[0]}" if refined and refined[0] else "")
        )
        self._show_agreement()
        self.autosave()

    def _show_results(self) -> None:
        """Show the current volume's pseudo-labels and uncertainty (remove those of another
        volume when it has none)."""
        session, (image, labels) = self.session, self._session_layers
        show_result_layers(self.viewer, image, labels, session.prediction)
        self._show_annotated()

    def _show_agreement(self) -> None:
        agreement = self.session.agreement
        if agreement is None:
            self.agreement_label.setText("")
            return
        slices = ", ".join(map(str, agreement.slices))
        if np.isnan(agreement.before) and np.isnan(agreement.after):
            self.agreement_label.setText(f"accepted slices {slices} hold no label: no Dice")
            return
        self.agreement_label.setText(
            f"accepted slices {slices}: Dice with what was accepted "
            f"{100 * agreement.before:.1f}% (previous model) -> "
            f"{100 * agreement.after:.1f}% (new model)"
        )

    # -- review -----------------------------------------------------------------------------

    def _show_review(self) -> None:
        session = self.session
        if session is None or session.prediction is None:
            self.review_list.clear()
            return
        self.review_list.show_queue(session.review_queue(), session.prediction.slice_scores)

    def review_queue(self) -> list[int]:
        return [] if self.session is None else self.session.review_queue()

    def next_review(self) -> int | None:
        """Go to the next slice of the review queue (after the one in view); returns it."""
        queue = self.review_queue()
        if not queue:
            show_info("napari-ssseg: the review queue is empty")
            return None
        current = self.current_slice()
        target = queue[(queue.index(current) + 1) % len(queue)] if current in queue else queue[0]
        self.go_to_slice(target)
        self.review_list.select(target)
        return target

    def accept_current(self) -> int | None:
        """Accept the pseudo-labels of the slice in view; autosave; go to the next one."""
        try:
            session = self.ensure_session()
            index = self.current_slice()
            queue = session.review_queue()
            session.accept(index)
        except SsSegError as error:
            show_error(f"napari-ssseg: {error}")
            return None
        self._session_layers[1].refresh()
        self._show_annotated()
        self.autosave()
        remaining = session.review_queue()
        if remaining:
            position = queue.index(index) if index in queue else 0
            target = remaining[min(position, len(remaining) - 1)]
            self.go_to_slice(target)
            self.review_list.select(target)
        return index

    # -- export -----------------------------------------------------------------------------

    def export(self) -> dict[str, Path] | None:
        """Write the final masks, uncertainty and slice table on the source grid."""
        try:
            session = self.ensure_session()
            paths = write_prediction(
                session.final_prediction(),
                session.image,
                Path(self.export_edit.text()).expanduser(),
            )
        except SsSegError as error:
            show_error(f"napari-ssseg: {error}")
            return None
        show_info(f"napari-ssseg: wrote {', '.join(str(p) for p in paths.values())}")
        return paths

    def shutdown(self) -> None:
        """Stop any run (and the runner, if this widget made it); unbind the shortcuts."""
        self.monitor.runner = self._local_runner
        self.monitor.shutdown(close_runner=self._owns_runner)
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        self._embed_soon.stop()
        self.embeddings.close()
        _unbind_keys(self.viewer)
