"""Follows a :class:`LocalRunner` from Qt's event loop: a timer polls it, signals report."""

from __future__ import annotations

from napari.utils import progress
from qtpy.QtCore import QObject, QTimer, Signal

from napari_ssseg.runner import LocalRunner, ProgressEvent, RunStatus, TrainingJob

TRAIN_SHARE = 90
"""Percent of the progress bar given to training; prediction fills the rest."""


def percent(event: ProgressEvent) -> int:
    """Overall progress of a run in percent from one progress event."""
    if event.stage in ("embed", "pretrain"):  # an embedding job's stages, each a full bar
        return int(100 * min(event.fraction, 1.0))
    if event.stage == "train":
        return int(TRAIN_SHARE * min(event.fraction, 1.0))
    return TRAIN_SHARE + int((100 - TRAIN_SHARE) * min(event.fraction, 1.0))


class RunMonitor(QObject):
    """Starts jobs on ``runner`` and polls it every ``interval_ms`` without blocking.

    Signals: ``progressed(ProgressEvent)``, ``status_changed(StatusEvent)`` for every status,
    ``finished(StatusEvent)`` once per run with its final status.
    """

    progressed = Signal(object)
    status_changed = Signal(object)
    finished = Signal(object)

    def __init__(
        self,
        runner: LocalRunner,
        interval_ms: int = 100,
        parent=None,
        description: str = "napari-ssseg: training",
    ) -> None:
        super().__init__(parent)
        self.runner = runner
        self.description = description
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._bar: progress | None = None
        self._shown = 0

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    def start(self, job: TrainingJob) -> None:
        """Start ``job``; its events arrive through the signals."""
        self.runner.start(job)
        self._shown = 0
        self._bar = progress(total=100, desc=self.description)
        self._timer.start()

    def cancel(self) -> None:
        self.runner.cancel()

    def _tick(self) -> None:
        for event in self.runner.poll():
            if isinstance(event, ProgressEvent):
                self._advance(percent(event))
                self.progressed.emit(event)
                continue
            self.status_changed.emit(event)
            if event.status.finished:
                self._stop()
                if event.status is RunStatus.DONE:
                    self._advance(100)
                self.finished.emit(event)
                return

    def _advance(self, value: int) -> None:
        if self._bar is not None and value > self._shown:
            self._bar.update(value - self._shown)
            self._shown = value

    def _stop(self) -> None:
        self._timer.stop()
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def shutdown(self, close_runner: bool = True) -> None:
        """Stop polling and any run (used when the widget goes away); ``close_runner``
        also ends the runner's spare process and work folder."""
        self._stop()
        if close_runner:
            self.runner.close()
        elif self.runner.running:
            self.runner.cancel()
            self.runner.wait(timeout=3.0)
