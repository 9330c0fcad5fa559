"""Foundation-model embeddings made in the background while the user labels.

On a CPU the foundation model's encoder takes seconds per slice: a training run of a method
with the foundation model (or a refined prediction) would spend much of its budget there.
micro-sam embeds an image when it is opened; here, once a volume is picked and the settings
need the foundation model, an embedding job (:data:`~napari_ssseg.runner.job.TASKS`) runs in a
process of its own and fills the on-disk embedding cache, which the training run then reads.
Training takes precedence: :meth:`EmbeddingPreparer.pause` stops the job (what was embedded
stays cached) and the dock asks again once the run has ended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal

from napari_ssseg.runner import LocalRunner, ProgressEvent, RunStatus, StatusEvent
from napari_ssseg.settings import TrainConfig
from napari_ssseg.tasks.embeddings import needs_embeddings, needs_source_slices
from napari_ssseg.widgets.run_monitor import RunMonitor
from napari_ssseg.widgets.session import AnnotationSession


class EmbeddingPreparer(QObject):
    """Runs embedding jobs on a runner of its own; ``changed(str)`` says where they stand.

    ``runner`` is for tests; by default a :class:`LocalRunner` (no spare process: an
    embedding job is started at most once per volume and settings).
    """

    changed = Signal(str)

    def __init__(self, runner: LocalRunner | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner if runner is not None else LocalRunner()
        self.monitor = RunMonitor(
            self.runner, parent=self, description="napari-ssseg: embedding slices"
        )
        self.monitor.progressed.connect(self._on_progress)
        self.monitor.finished.connect(self._on_finished)
        # Per volume and model settings: the kinds of embeddings made (slices, squares).
        self._done: dict[tuple[Any, ...], set[str]] = {}
        self._job: tuple[tuple[Any, ...], set[str]] | None = None

    @property
    def running(self) -> bool:
        return self.monitor.running

    def prepare(self, session: AnnotationSession, config: TrainConfig, model_dir: Path) -> bool:
        """Start embedding ``session``'s volume for ``config`` unless it is not needed, done
        already for this volume and foundation model, or running; returns whether it started.
        """
        num_classes = len(session.class_names)
        if not needs_embeddings(config, num_classes) or self.running:
            return False
        # What the embeddings' keys depend on besides the volume's voxels.
        volume = (
            session.image.name,
            repr(config.foundation),
            repr(config.student.intensity),
            config.student.image_size,
        )
        # Slices at source resolution and/or the network's squares (tasks/embeddings.py).
        kinds = {"slices"} if needs_source_slices(config, num_classes) else set()
        kinds |= {"squares"} if config.uses_feature_terms else set()
        # The student pretrained on the label-free bank's squares: it depends on more
        # settings, and on the classes.
        if config.features.pretrain_steps > 0:
            from napari_ssseg.training.student_store import StudentStore

            shaping = json.dumps(StudentStore.shaping(config), sort_keys=True, default=str)
            kinds |= {f"student of {len(session.class_names)} classes, {shaping}"}
        if kinds <= self._done.get(volume, set()):
            return False
        self._job = (volume, kinds)
        self.monitor.start(session.embedding_job(config, model_dir))
        self.changed.emit("foundation model: embedding the slices while you label...")
        return True

    def pause(self) -> None:
        """Stop a running job (training is about to start); its embeddings stay cached."""
        if self.running:
            self.monitor.cancel()

    def close(self) -> None:
        self.monitor.shutdown(close_runner=True)

    def _on_progress(self, event: ProgressEvent) -> None:
        done = event.iteration
        if event.stage == "pretrain":
            self.changed.emit(
                f"foundation model: pretraining the network, step {done} ({event.elapsed:.0f} s)"
            )
            return
        self.changed.emit(
            f"foundation model: {done} slice{'' if done == 1 else 's'} embedded"
            f" ({event.elapsed:.0f} s)"
        )

    def _on_finished(self, event: StatusEvent) -> None:
        if event.status is RunStatus.DONE:
            volume, kinds = self._job
            self._done.setdefault(volume, set()).update(kinds)
            self.changed.emit(event.message)
        elif event.status is RunStatus.STOPPED:
            self.changed.emit("foundation model: embedding paused for training")
        else:
            self.changed.emit(f"foundation model: could not embed the slices ({event.message})")
