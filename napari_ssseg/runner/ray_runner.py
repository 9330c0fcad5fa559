"""Run training jobs on a Ray cluster, followed by polling exactly like :class:`LocalRunner`.

A job travels through Ray's object store, never through a shared file system: each volume is
one object (so a prediction task fetches only its own volume), the warm-start model another.
One driver task on the cluster (``_run_job``, no CPU reserved: it waits) trains with Ray
Train on ``workers`` data-parallel workers (:mod:`napari_ssseg.tasks.distributed`), then
predicts the volumes as parallel tasks and returns the model and the predictions, which this
process writes where :class:`LocalRunner` writes them: the model into ``job.model_dir``
(atomically), the predictions into a results folder read by :meth:`RayRunner.result`.

Progress and the stop flag go through one small actor (:class:`_RunControl`); :meth:`poll`
never blocks on it. :meth:`cancel` sets the flag (rank 0 checks it several times a second and
every worker stops at the same step); a job still running after the grace period is
cancelled by force, which ends its training workers with it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from napari_ssseg.errors import SsSegError, TrainingCancelled
from napari_ssseg.runner.base import PolledRunner
from napari_ssseg.runner.events import ProgressEvent, RunEvent, RunStatus, StatusEvent
from napari_ssseg.runner.job import TrainingJob, VolumeInput
from napari_ssseg.runner.ray_cluster import ClusterSettings, connect, first_line, import_ray
from napari_ssseg.runner.results import RunResult, VolumeResult, write_results
from napari_ssseg.runner.worker import RESULTS_DIR

CANCEL_GRACE_S = 3.0
"""How long a cancelled job may take to stop by itself before it is cancelled by force."""

STOP_CHECK_INTERVAL_S = 0.2
"""How often rank 0 asks the control actor whether to stop."""

STOPPED_MESSAGE = "training was cancelled; no model was saved"


class _RunControl:
    """The actor between the client and a running job: events out, stop flag in."""

    def __init__(self) -> None:
        self.events: list[RunEvent] = []
        self.stop_requested = False
        self.predict_fractions: dict[int, float] = {}
        self.predict_start = 0.0

    def put(self, event: RunEvent) -> None:
        self.events.append(event)

    def drain(self) -> list[RunEvent]:
        events, self.events = self.events, []
        return events

    def stop(self) -> None:
        self.stop_requested = True

    def stopped(self) -> bool:
        return self.stop_requested

    def start_prediction(self, volumes: list[int]) -> None:
        self.predict_fractions = dict.fromkeys(volumes, 0.0)
        self.predict_start = time.monotonic()

    def predicted(self, volume: int, fraction: float) -> None:
        """Volume ``volume`` is ``fraction`` done: one event with the mean over volumes."""
        self.predict_fractions[volume] = fraction
        mean = sum(self.predict_fractions.values()) / max(1, len(self.predict_fractions))
        self.events.append(ProgressEvent("predict", mean, time.monotonic() - self.predict_start))


@dataclass
class _StopFlag:
    """``should_stop`` for rank 0 and ``stop`` for prediction: asks the actor at most every
    :data:`STOP_CHECK_INTERVAL_S` seconds (picklable: it travels to the workers)."""

    control: Any
    checked_at: float = 0.0
    stopped: bool = False

    def is_set(self) -> bool:
        now = time.monotonic()
        if not self.stopped and now - self.checked_at >= STOP_CHECK_INTERVAL_S:
            import ray

            self.stopped = bool(ray.get(self.control.stopped.remote()))
            self.checked_at = now
        return self.stopped

    def __call__(self) -> bool:
        return self.is_set()


@dataclass
class _TrainProgressSender:
    """``on_progress`` for rank 0: training snapshots as :class:`ProgressEvent`."""

    control: Any

    def __call__(self, snapshot: Any) -> None:
        event = ProgressEvent(
            "train", snapshot.fraction, snapshot.elapsed, snapshot.iteration, snapshot.losses
        )
        self.control.put.remote(event)


@dataclass
class _PredictProgressSender:
    """``events`` for one prediction task: its fractions go to the actor's running mean."""

    control: Any
    volume: int

    def put(self, event: RunEvent) -> None:
        if isinstance(event, ProgressEvent):
            self.control.predicted.remote(self.volume, event.fraction)


@dataclass
class _Shipment:
    """A job in the object store: the job without its volumes, one ref per volume, the
    warm-start model's ref (or None). Refs are kept inside lists so Ray passes them on
    instead of fetching them into the driver."""

    job: TrainingJob
    volumes: list[Any]
    init: list[Any] = field(default_factory=list)


@dataclass
class _Outcome:
    """What the driver task returns."""

    status: RunStatus
    message: str = ""
    model: Any = None
    volumes: list[VolumeResult] = field(default_factory=list)


@dataclass
class _JobLoader:
    """``load`` for every training worker: fetch the job's volumes from the object store."""

    shipment: _Shipment

    def __call__(self) -> Any:
        import ray

        from napari_ssseg.tasks.distributed import TrainingInputs

        job = self.shipment.job
        volumes = ray.get(self.shipment.volumes)
        full = TrainingJob(volumes, job.class_names, job.config, job.model_dir)
        init = ray.get(self.shipment.init[0]) if self.shipment.init else None
        return TrainingInputs(full.project(), full.config, init, job.threads)


def _predict_one(
    model: Any, volume: VolumeInput, index: int, control: Any, threads: int
) -> VolumeResult:
    """A prediction task: one volume, as the local runner predicts it."""
    import torch

    from napari_ssseg.runner.worker import _predict

    torch.set_num_threads(threads)
    return _predict(
        model,
        volume,
        volume.annotation(),
        _PredictProgressSender(control, index),
        _StopFlag(control),
    )


def _run_job(
    shipment: _Shipment, control: Any, workers: int, use_gpu: bool, cpus: float
) -> _Outcome:
    """The driver task: train data-parallel, then predict every volume in parallel."""
    import ray

    from napari_ssseg.tasks.distributed import (
        WorkerFailed,
        check_data_parallel,
        train_data_parallel,
    )

    stop = _StopFlag(control)
    control.put.remote(StatusEvent(RunStatus.RUNNING))
    try:
        check_data_parallel(shipment.job.config, workers)
        model = train_data_parallel(
            _JobLoader(shipment),
            workers,
            use_gpu=use_gpu,
            cpus_per_worker=cpus,
            on_progress=_TrainProgressSender(control),
            should_stop=stop,
        )
        if stop():
            return _Outcome(RunStatus.STOPPED, STOPPED_MESSAGE)
        chosen = [i for i, v in enumerate(shipment.job.volumes) if v.predict]
        ray.get(control.start_prediction.remote(chosen))
        model_ref = ray.put(model)
        task = ray.remote(_predict_one).options(num_cpus=cpus, num_gpus=1 if use_gpu else 0)
        threads = shipment.job.threads or 1
        pending = [task.remote(model_ref, shipment.volumes[i], i, control, threads) for i in chosen]
        try:
            volumes = ray.get(pending)
        except Exception:
            if stop():
                return _Outcome(RunStatus.STOPPED, STOPPED_MESSAGE)
            raise
        if stop():
            return _Outcome(RunStatus.STOPPED, STOPPED_MESSAGE)
        return _Outcome(RunStatus.DONE, model=model, volumes=volumes)
    except TrainingCancelled:
        return _Outcome(RunStatus.STOPPED, STOPPED_MESSAGE)
    except WorkerFailed as error:
        if error.user_error:
            return _Outcome(RunStatus.ERROR, error.detail.strip().splitlines()[0])
        return _Outcome(RunStatus.ERROR, f"training failed: {error}")
    except SsSegError as error:
        return _Outcome(RunStatus.ERROR, str(error))
    except Exception as error:  # anything else still ends as one readable line
        return _Outcome(RunStatus.ERROR, f"training failed on the cluster: {first_line(error)}")


class RayRunner(PolledRunner):
    """Runs one :class:`TrainingJob` at a time on a Ray cluster; same use as
    :class:`~napari_ssseg.runner.local.LocalRunner`: ``start(job)``, ``poll()`` until
    :attr:`status` is finished, then ``result()`` when it is ``done``.

    Args:
        address: the cluster (``ray://head:10001``, ``head:6379``, ``auto``); None starts a
            private local cluster of ``workers * cpus_per_worker`` CPUs.
        workers: data-parallel training workers.
        use_gpu: one GPU per worker (NCCL) instead of CPUs (gloo); None decides per job:
            GPUs when its device is ``cuda``, or ``auto`` and the cluster has GPUs.
        cpus_per_worker: CPUs (and torch threads) per worker and per prediction task.
        work_root: where results folders are made (default: the system's temporary folder).
        cancel_grace: seconds a cancelled job may take to stop before it is cancelled by force.
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int = 1,
        use_gpu: bool | None = None,
        cpus_per_worker: float = 1.0,
        work_root: str | Path | None = None,
        cancel_grace: float = CANCEL_GRACE_S,
    ) -> None:
        if workers < 1:
            raise SsSegError(f"workers must be at least 1, not {workers}")
        self.address = address
        self.workers = workers
        self.use_gpu = use_gpu
        self.cpus_per_worker = cpus_per_worker
        self._work_root = Path(work_root) if work_root is not None else None
        self._grace = cancel_grace
        self._owns_cluster = False
        self._control: Any = None
        self._job_ref: Any = None
        self._drain_ref: Any = None
        self._job: TrainingJob | None = None
        self._work_dir: Path | None = None
        self._cancel_deadline: float | None = None
        self.status = RunStatus.DONE
        self.message = ""
        self.started_at: float | None = None
        self.last_progress: ProgressEvent | None = None
        self._pending_events: list[RunEvent] = []

    @property
    def running(self) -> bool:
        """True from :meth:`start` until a finished status has been seen."""
        return not self.status.finished

    def connect(self) -> None:
        """Connect to the cluster now (otherwise :meth:`start` does); raises
        :class:`~napari_ssseg.runner.ray_cluster.ClusterError` when it cannot."""
        local_cpus = max(1, round(self.workers * self.cpus_per_worker))
        started = connect(ClusterSettings(self.address, local_cpus))
        self._owns_cluster = self._owns_cluster or started

    # -- starting -------------------------------------------------------------------------

    def start(self, job: TrainingJob) -> None:
        """Ship ``job`` to the cluster and start it; a job that fails the cheap checks (or a
        cluster that cannot be reached) ends at once with ``error``.

        Raises :class:`RuntimeError` if a run is still in progress.
        """
        if self.running:
            raise RuntimeError("a training run is already in progress")
        self._discard_work_dir()
        self._cancel_deadline = None
        self.last_progress = None
        self.started_at = time.monotonic()
        try:
            job.check()
            self.connect()
            shipment = self._ship(job)
        except SsSegError as error:
            self.status, self.message = RunStatus.ERROR, str(error)
            self._pending_events = [StatusEvent(RunStatus.ERROR, str(error))]
            return
        ray = import_ray()
        self._job = job
        self._control = ray.remote(num_cpus=0)(_RunControl).remote()
        driver = ray.remote(num_cpus=0, max_retries=0)(_run_job)
        self._job_ref = driver.remote(
            shipment, self._control, self.workers, self._gpus_for(job), self.cpus_per_worker
        )
        self._drain_ref = None
        self.status, self.message = RunStatus.PENDING, ""
        self._pending_events = [StatusEvent(RunStatus.PENDING)]

    def _gpus_for(self, job: TrainingJob) -> bool:
        if self.use_gpu is not None:
            return self.use_gpu
        device = job.config.device
        if device == "auto":
            return import_ray().cluster_resources().get("GPU", 0) > 0
        return device == "cuda"

    def _ship(self, job: TrainingJob) -> _Shipment:
        """Put the job into the object store; images given by path are read here, since the
        cluster's nodes need not see this machine's files."""
        from napari_ssseg.model_store import load_model

        ray = import_ray()
        volumes = []
        for volume in job.volumes:
            if volume.image is None:  # read here: the cluster may not see this file
                image = volume.load_image()
                volume = replace(volume, image=image.data, affine=image.affine, image_path=None)
            volumes.append(ray.put(volume))
        init = [ray.put(load_model(job.init_model_dir))] if job.init_model_dir else []
        skeleton = TrainingJob(
            [VolumeInput(v.labels[:0, :0, :0], [], v.axis, predict=v.predict) for v in job.volumes],
            list(job.class_names),
            job.config,
            Path(job.model_dir),
            None,
            job.threads or max(1, int(self.cpus_per_worker)),
        )
        return _Shipment(skeleton, volumes, init)

    # -- following ------------------------------------------------------------------------

    def poll(self) -> list[RunEvent]:
        """Events since the last call, oldest first; updates :attr:`status`. Does not wait
        for the cluster, except for a last look at the events once the job has ended."""
        found: list[RunEvent] = self._pending_events
        self._pending_events = []
        if self._job_ref is None:
            return found
        ray = import_ray()
        found.extend(self._drain(ray, wait=False))
        finished, _ = ray.wait([self._job_ref], timeout=0)
        final: StatusEvent | None = None
        if finished:
            found.extend(self._drain(ray, wait=True))
            final = self._collect(ray)
        elif self._cancel_deadline is not None and time.monotonic() > self._cancel_deadline:
            ray.cancel(self._job_ref, force=True, recursive=True)
            final = StatusEvent(RunStatus.STOPPED, STOPPED_MESSAGE)
        if final is not None:
            found = [e for e in found if not (isinstance(e, StatusEvent) and e.status.finished)]
            found.append(final)
        for event in found:
            if isinstance(event, StatusEvent):
                self.status, self.message = event.status, event.message
            else:
                self.last_progress = event
        if final is not None:
            self._release()
        return found

    def _drain(self, ray: Any, wait: bool) -> list[RunEvent]:
        """Events the actor holds: without ``wait`` only an answer already there."""
        events: list[RunEvent] = []
        try:
            if self._drain_ref is None:
                self._drain_ref = self._control.drain.remote()
            ready, _ = ray.wait([self._drain_ref], timeout=5.0 if wait else 0)
            if ready:
                events.extend(ray.get(self._drain_ref))
                self._drain_ref = None
                if wait:
                    events.extend(ray.get(self._control.drain.remote(), timeout=5.0))
        except Exception:  # the actor is gone: the final status says why
            self._drain_ref = None
        return events

    def _collect(self, ray: Any) -> StatusEvent:
        """The final status of an ended job; writes the model and results when done."""
        try:
            outcome: _Outcome = ray.get(self._job_ref)
        except Exception as error:
            if self._cancel_deadline is not None:
                return StatusEvent(RunStatus.STOPPED, STOPPED_MESSAGE)
            return StatusEvent(
                RunStatus.ERROR, f"the job ended unexpectedly on the cluster: {first_line(error)}"
            )
        if outcome.status is not RunStatus.DONE:
            return StatusEvent(outcome.status, outcome.message)
        if self._cancel_deadline is not None:
            return StatusEvent(RunStatus.STOPPED, STOPPED_MESSAGE)
        return self._write(outcome)

    def _write(self, outcome: _Outcome) -> StatusEvent:
        from napari_ssseg.model_store import save_model

        job = self._job
        assert job is not None
        root = self._work_root
        try:
            if root is not None:
                root.mkdir(parents=True, exist_ok=True)
            self._work_dir = Path(tempfile.mkdtemp(prefix="ssseg-ray-run-", dir=root))
            model = outcome.model
            for known in model.annotations.values():
                known.labels = known.labels.copy()  # Ray hands back read-only arrays
            result = RunResult(Path(job.model_dir), model.summary, outcome.volumes)
            staged = write_results(result, self._work_dir / RESULTS_DIR)
            Path(job.model_dir).parent.mkdir(parents=True, exist_ok=True)
            save_model(model, job.model_dir)
        except (OSError, SsSegError) as error:
            return StatusEvent(RunStatus.ERROR, f"cannot write the results: {error}")
        return StatusEvent(RunStatus.DONE, str(staged))

    def _release(self) -> None:
        ray = import_ray()
        if self._control is not None:
            ray.kill(self._control)
        self._control = self._job_ref = self._drain_ref = None
        self._job = None

    # -- stopping -------------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the job to stop; cancel it by force if it has not stopped after the grace
        period. Returns at once; :meth:`poll` then reports ``stopped``."""
        if self._control is None or not self.running or self._cancel_deadline is not None:
            return
        self._control.stop.remote()
        self._cancel_deadline = time.monotonic() + self._grace

    def close(self) -> None:
        """Stop any running job, delete the results folder, and end a private local cluster."""
        if self._job_ref is not None:
            ray = import_ray()
            ray.cancel(self._job_ref, force=True, recursive=True)
            self._release()
        if self.running:
            self.status, self.message = RunStatus.STOPPED, "the runner was closed"
        self._discard_work_dir()
        if self._owns_cluster:
            import_ray().shutdown()
            self._owns_cluster = False

    def _discard_work_dir(self) -> None:
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
