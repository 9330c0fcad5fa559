"""Run training jobs in a separate process and follow them by polling (MONAI Label style).

The caller (napari's event loop, a test, a script) starts a job, then calls :meth:`poll`
from time to time; nothing blocks. The child is a ``spawn`` process, so it shares no
state with the caller and frees all its memory, GPU memory included, when it ends.

With ``prewarm=True`` a spare child is started ahead of time; it imports torch and MONAI
(several seconds) while the user is still annotating, then waits for its job.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_ssseg.errors import SsSegError
from napari_ssseg.model_store import recover_model_dir
from napari_ssseg.runner.base import PolledRunner
from napari_ssseg.runner.events import ProgressEvent, RunEvent, RunStatus, StatusEvent
from napari_ssseg.runner.job import TrainingJob
from napari_ssseg.runner.worker import serve

CANCEL_GRACE_S = 1.0
"""How long a cancelled child may take to stop by itself before it is terminated."""


def default_threads() -> int:
    """Torch threads for the child: all cores but one, which stays with the caller's GUI."""
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass
class _Child:
    """One child process and its channels: job folders in, events out, a stop flag."""

    process: Any
    jobs: Any
    events: Any
    stop: Any
    ready: Any


class LocalRunner(PolledRunner):
    """Runs one :class:`TrainingJob` at a time in a child process.

    Typical use: ``runner.start(job)``, then ``runner.poll()`` until ``runner.status`` is
    finished, then ``runner.result()`` when it is ``done``.
    """

    def __init__(
        self,
        work_root: str | Path | None = None,
        prewarm: bool = False,
        cancel_grace: float = CANCEL_GRACE_S,
    ) -> None:
        self._context = mp.get_context("spawn")
        self._work_root = Path(work_root) if work_root is not None else None
        self._prewarm = prewarm
        self._grace = cancel_grace
        self._spare: _Child | None = None
        self._child: _Child | None = None
        self._work_dir: Path | None = None
        self._model_dir: Path | None = None
        self._cancelled = False
        self.status = RunStatus.DONE
        self.message = ""
        self.started_at: float | None = None
        self.last_progress: ProgressEvent | None = None
        self._pending_events: list[RunEvent] = []
        if prewarm:
            self._spare = self._spawn()

    # -- starting -------------------------------------------------------------------------

    def _spawn(self) -> _Child:
        context = self._context
        jobs, events = context.Queue(), context.Queue()
        stop, ready = context.Event(), context.Event()
        process = context.Process(
            target=serve, args=(jobs, events, stop, ready), name="ssseg-training", daemon=True
        )
        process.start()
        return _Child(process, jobs, events, stop, ready)

    @property
    def warm(self) -> bool:
        """Whether a spare child has finished its imports and waits for a job."""
        spare = self._spare
        return spare is not None and spare.ready.is_set() and spare.process.is_alive()

    @property
    def child_pid(self) -> int | None:
        """Process id of the child running the current job, or None between runs."""
        child = self._child
        return None if child is None else child.process.pid

    @property
    def running(self) -> bool:
        """True from :meth:`start` until a finished status has been seen."""
        return not self.status.finished

    def start(self, job: TrainingJob) -> None:
        """Start ``job``; a job that fails the cheap checks ends at once with ``error``.

        Raises :class:`RuntimeError` if a run is still in progress.
        """
        if self.running:
            raise RuntimeError("a training run is already in progress")
        self._discard_work_dir()
        self._cancelled = False
        self.last_progress = None
        self.started_at = time.monotonic()
        try:
            job.check()
        except SsSegError as error:
            self.status, self.message = RunStatus.ERROR, str(error)
            self._pending_events = [StatusEvent(RunStatus.ERROR, str(error))]
            return
        if job.threads is None:
            job.threads = default_threads()
        try:
            self._write_job(job)
        except OSError as error:
            where = self._work_dir or self._work_root or Path(tempfile.gettempdir())
            message = (
                f"{where}: could not write the training job there ({error.strerror or error}); "
                "free some disk space and try again"
            )
            self._discard_work_dir()
            self.status, self.message = RunStatus.ERROR, message
            self._pending_events = [StatusEvent(RunStatus.ERROR, message)]
            return
        # Leftovers of a save killed mid-way (a previous run's child) are repaired first.
        self._model_dir = Path(job.model_dir)
        recover_model_dir(self._model_dir)
        child = self._spare if self._spare is not None and self._spare.process.is_alive() else None
        self._spare = None
        self._child = child or self._spawn()
        self._child.jobs.put(str(self._work_dir))
        self.status, self.message = RunStatus.PENDING, ""
        self._pending_events = [StatusEvent(RunStatus.PENDING)]

    def _write_job(self, job: TrainingJob) -> None:
        root = self._work_root
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        self._work_dir = Path(tempfile.mkdtemp(prefix="ssseg-run-", dir=root))
        job.write(self._work_dir)

    # -- following ------------------------------------------------------------------------

    def poll(self) -> list[RunEvent]:
        """Events since the last call, oldest first; updates :attr:`status`. Never blocks
        for long (a dead child's last events are waited for at most 0.1 s)."""
        found: list[RunEvent] = self._pending_events
        self._pending_events = []
        child = self._child
        if child is None:
            return found
        found.extend(_drain(child.events))
        if not _has_final(found) and not child.process.is_alive():
            found.extend(_drain(child.events, wait=0.1))
            if not _has_final(found):
                found.append(self._death_event(child))
                # It may have died inside a save: put the last good model back.
                if self._model_dir is not None:
                    recover_model_dir(self._model_dir)
        for event in found:
            if isinstance(event, StatusEvent):
                self.status, self.message = event.status, event.message
            else:
                self.last_progress = event
        if self.status.finished:
            self._finish(child)
        return found

    def _death_event(self, child: _Child) -> StatusEvent:
        if self._cancelled:
            return StatusEvent(RunStatus.STOPPED, "training was cancelled; no model was saved")
        code = child.process.exitcode
        kept = "your labels and the last model are unchanged"
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            reason = f"was killed by {name} (exit code {code})"
            if -code == signal.SIGKILL:
                reason += ", most often by the system when memory runs out"
        else:
            reason = f"ended unexpectedly (exit code {code}); it may have run out of memory"
        return StatusEvent(RunStatus.ERROR, f"the training process {reason}; {kept}")

    def _finish(self, child: _Child) -> None:
        # The child exits by itself once its last event is out; the reaper only makes sure.
        threading.Thread(target=_reap, args=(child.process, 5.0), daemon=True).start()
        self._child = None
        if self._prewarm and self._spare is None:
            self._spare = self._spawn()

    # -- stopping -------------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the child to stop; terminate it if it has not stopped after the grace period.

        Returns at once; :meth:`poll` then reports ``stopped``.
        """
        child = self._child
        if child is None or not self.running:
            return
        self._cancelled = True
        child.stop.set()
        threading.Thread(target=_reap, args=(child.process, self._grace), daemon=True).start()

    def close(self) -> None:
        """Stop any child (running or spare) and delete the work folder."""
        for child in (self._child, self._spare):
            if child is None:
                continue
            child.stop.set()
            child.jobs.put(None)
            _reap(child.process, self._grace)
        was_running = self._child is not None
        self._child = self._spare = None
        if was_running and self._model_dir is not None:
            recover_model_dir(self._model_dir)  # it may have been stopped inside a save
        if self.running:
            self.status, self.message = RunStatus.STOPPED, "the runner was closed"
        self._discard_work_dir()

    def _discard_work_dir(self) -> None:
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None


def _has_final(events: list[RunEvent]) -> bool:
    return any(isinstance(e, StatusEvent) and e.status.finished for e in events)


def _drain(events: Any, wait: float = 0.0) -> list[RunEvent]:
    """Everything on ``events`` now (waiting up to ``wait`` s for the first item)."""
    found: list[RunEvent] = []
    try:
        if wait:
            found.append(events.get(timeout=wait))
        while True:
            found.append(events.get_nowait())
    except queue.Empty:
        pass
    return found


def _reap(process: Any, grace: float) -> None:
    """Wait ``grace`` s for ``process`` to end, then terminate it, then kill it."""
    process.join(timeout=grace)
    if process.is_alive():
        process.terminate()
        process.join(timeout=0.5)
    if process.is_alive():
        process.kill()
        process.join(timeout=0.5)
