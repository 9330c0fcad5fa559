"""What every runner offers: the interface the widget, the CLI and scripts program against.

:class:`~napari_ssseg.runner.local.LocalRunner` (a background process on this machine, the
default) and :class:`~napari_ssseg.runner.ray_runner.RayRunner` (a Ray cluster) both
satisfy it; the protocol is structural, so neither needs to inherit from it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol, runtime_checkable

from napari_ssseg.runner.events import ProgressEvent, RunEvent, RunStatus
from napari_ssseg.runner.job import TrainingJob
from napari_ssseg.runner.results import RunResult, read_results
from napari_ssseg.runner.worker import RESULTS_DIR


@runtime_checkable
class Runner(Protocol):
    """Runs one :class:`TrainingJob` at a time and is followed by polling.

    Attributes:
        status: ``pending`` / ``running`` until one of ``done``, ``error``, ``stopped``.
        message: why it failed, or where the results are.
        last_progress: the latest progress snapshot, if any.
    """

    status: RunStatus
    message: str
    last_progress: ProgressEvent | None

    @property
    def running(self) -> bool:
        """True from :meth:`start` until a finished status has been seen."""
        ...

    def start(self, job: TrainingJob) -> None:
        """Start ``job``; cheap-check failures end it at once with ``error``."""
        ...

    def poll(self) -> list[RunEvent]:
        """Events since the last call, oldest first; never blocks for long."""
        ...

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> RunStatus:
        """Poll until the run finishes or ``timeout`` seconds pass."""
        ...

    def result(self) -> RunResult:
        """The results of a run that ended ``done``."""
        ...

    def cancel(self) -> None:
        """Ask the run to stop; :meth:`poll` then reports ``stopped`` within seconds."""
        ...

    def close(self) -> None:
        """Stop any run and release what the runner holds."""
        ...


class PolledRunner:
    """What both runners share once ``poll`` and ``status`` exist: waiting for the end and
    reading a finished run's results from its work folder."""

    status: RunStatus
    _work_dir: Path | None

    def poll(self) -> list[RunEvent]:  # pragma: no cover - provided by the runner
        raise NotImplementedError

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> RunStatus:
        """Poll until the run finishes or ``timeout`` seconds pass; returns the status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.poll()
            if self.status.finished or (deadline is not None and time.monotonic() > deadline):
                return self.status
            time.sleep(interval)

    def result(self) -> RunResult:
        """The results of a run that ended ``done``."""
        if self.status is not RunStatus.DONE or self._work_dir is None:
            raise RuntimeError(f"no results: the run is {self.status.value}")
        return read_results(self._work_dir / RESULTS_DIR)
