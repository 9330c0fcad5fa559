"""The child process of a background run: train, predict, save; report through a queue.

Runs in a fresh ``spawn`` process so that napari's event loop never waits on it and every
byte of (GPU) memory it used is returned when it exits. Nothing here touches the previous
model folder until the new model and all predictions exist.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from napari_ssseg.annotation import AnnotatedVolume, slice_index
from napari_ssseg.errors import InputError, SsSegError, TrainingCancelled
from napari_ssseg.runner.events import ProgressEvent, RunStatus, StatusEvent
from napari_ssseg.runner.job import TrainingJob, VolumeInput
from napari_ssseg.runner.results import RunResult, VolumeResult, write_results

RESULTS_DIR = "results"
ERROR_LOG = "error.log"


def _parent_gone() -> bool:
    """Whether the process that started this one has died (then nobody wants the result)."""
    parent = mp.parent_process()
    return parent is not None and not parent.is_alive()


class _Stopped(Exception):
    """Raised inside a progress callback to leave prediction when a stop was requested."""


def serve(jobs: Any, events: Any, stop: Any, ready: Any) -> None:
    """Entry point of the child process: import the heavy modules, then run one job.

    ``jobs`` delivers the job folder (None means: exit without a job), ``events`` takes the
    reports, ``stop`` is set by the parent to cancel, ``ready`` is set once the imports are
    done. Importing first lets a spare child get ready while the user is still annotating.
    """
    import napari_ssseg.tasks.predict  # noqa: F401
    import napari_ssseg.tasks.train  # noqa: F401

    ready.set()

    job_dir = None
    while not _parent_gone():
        try:
            job_dir = jobs.get(timeout=0.5)
            break
        except queue.Empty:
            continue
    if job_dir is not None:
        run_job(job_dir, events, stop)
    # Flush the last events, then leave without the interpreter's teardown of torch and
    # MONAI (about 2 s); every file the run writes is complete by now.
    events.close()
    events.join_thread()
    os._exit(0)


def run_job(job_dir: str, events: Any, stop: Any) -> None:
    """Entry point of the child: run the job in ``job_dir``, putting events on ``events``.

    ``events`` is a multiprocessing queue, ``stop`` a multiprocessing event the parent sets
    to cancel. The last event is always a :class:`StatusEvent` with a finished status.
    """
    folder = Path(job_dir)
    events.put(StatusEvent(RunStatus.RUNNING))
    try:
        message = _run(folder, events, stop)
    except (_Stopped, TrainingCancelled):
        events.put(StatusEvent(RunStatus.STOPPED, "training was cancelled; no model was saved"))
    except SsSegError as error:
        events.put(StatusEvent(RunStatus.ERROR, str(error)))
    except Exception as error:  # anything else still ends as one readable line
        details = _write_log(folder / ERROR_LOG)
        oom = _out_of_memory(error)
        if oom is not None:
            message = (
                f"the training process ran out of memory ({_summary(oom)}); use a smaller image "
                "size or fewer volumes, or close other programs. Your labels and the last "
                f"model are unchanged{details}"
            )
        else:
            message = f"training failed: {_summary(error)}{details}"
        events.put(StatusEvent(RunStatus.ERROR, message))
    else:
        if message is None:
            events.put(StatusEvent(RunStatus.STOPPED, "training was cancelled; no model was saved"))
        else:
            events.put(StatusEvent(RunStatus.DONE, message))


def _summary(error: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, cut to ``limit`` characters."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _out_of_memory(error: BaseException) -> BaseException | None:
    """The allocation failure behind ``error``, or None: Python's MemoryError, or torch's CPU
    or CUDA allocator giving up. Libraries wrap it (MONAI raises "applying transform ..."
    from it), so the whole chain of causes is searched."""
    import torch

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        if isinstance(current, (MemoryError, torch.OutOfMemoryError)) or (
            isinstance(current, RuntimeError)
            and ("DefaultCPUAllocator" in text or "out of memory" in text.lower())
        ):
            return current
        current = current.__cause__ or current.__context__
    return None


def _write_log(path: Path) -> str:
    """Write the current traceback to ``path``; returns `` (details in PATH)`` or, when the
    disk refuses even that, an empty string (the message must still go out)."""
    try:
        path.write_text(traceback.format_exc())
    except OSError:
        return ""
    return f" (details in {path})"


def limit_memory(extra_mb: int) -> None:
    """Cap this process's address space at what it maps now plus ``extra_mb`` MiB.

    Allocations beyond it fail at once (MemoryError from numpy, a RuntimeError from torch's
    allocator) instead of pushing the machine into swap; Linux only (reads
    ``/proc/self/status``), a no-op elsewhere.
    """
    try:
        import resource

        status = Path("/proc/self/status").read_text()
    except (ImportError, OSError):
        return
    mapped_kib = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmSize:")), None
    )
    if mapped_kib is None:
        return
    limit = (mapped_kib + extra_mb * 1024) * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _run(folder: Path, events: Any, stop: Any) -> str | None:
    """Train, predict and save; returns the results folder, or None when stopped."""
    import torch

    from napari_ssseg.model_store import save_model
    from napari_ssseg.networks.device import resolve_device
    from napari_ssseg.tasks.train import train_model

    job = TrainingJob.read(folder)
    if job.threads:
        torch.set_num_threads(job.threads)
    config = job.config
    if job.memory_limit_mb is not None and resolve_device(config.device).type == "cpu":
        limit_memory(job.memory_limit_mb)  # CUDA maps far more address space than it uses
    if job.task == "embed":
        return _embed(job, config, events, stop)
    project = job.project()

    def on_train(snapshot: Any) -> None:
        events.put(
            ProgressEvent(
                "train", snapshot.fraction, snapshot.elapsed, snapshot.iteration, snapshot.losses
            )
        )

    def should_stop() -> bool:
        return stop.is_set() or _parent_gone()

    model = train_model(
        project, config, job.init_model_dir, on_progress=on_train, should_stop=should_stop
    )
    if should_stop():
        return None
    results = [
        _predict(model, volume, annotated, events, stop)
        for volume, annotated in zip(job.volumes, project.volumes, strict=True)
        if volume.predict
    ]
    staged = write_results(RunResult(job.model_dir, model.summary, results), folder / RESULTS_DIR)
    if stop.is_set():  # cancelled while the results were written: leave nothing behind
        shutil.rmtree(staged, ignore_errors=True)
        return None
    try:
        job.model_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            f"{job.model_dir.parent}: cannot create the folder for the model ({error.strerror})"
        ) from error
    save_model(model, job.model_dir)
    return str(staged)


def _embed(job: TrainingJob, config: Any, events: Any, stop: Any) -> str | None:
    """Fill the embedding cache with every slice of the job's volumes and, for settings with
    ``pretrain_steps``, store the student pretrained on them for the run
    (:func:`~napari_ssseg.tasks.prepare.prepare_volumes`); returns what was done (None when
    stopped: the embeddings made so far stay in the cache, a student stopped early is not
    kept)."""
    from napari_ssseg.tasks.prepare import PreparationProgress, prepare_volumes

    def on_progress(step: PreparationProgress) -> None:
        losses = {} if step.loss is None else {"pretrain": step.loss}
        events.put(ProgressEvent(step.stage, step.fraction, step.elapsed, step.done, losses))

    def should_stop() -> bool:
        return stop.is_set() or _parent_gone()

    loaders = [volume.annotation for volume in job.volumes]
    prepared = prepare_volumes(
        loaders, job.class_names, config, on_progress=on_progress, should_stop=should_stop
    )
    return None if prepared is None else prepared.summary()


def _predict(
    model: Any, volume: VolumeInput, annotated: AnnotatedVolume, events: Any, stop: Any
) -> VolumeResult:
    """Predict one volume as the CLI does. With probe slices, predict it a second time with
    those slices left unannotated, to read the network's own labels there (the U-Net's,
    without the foundation model's refinement)."""
    from napari_ssseg.tasks.predict import predict

    start = time.monotonic()

    def check_stop(fraction: float) -> None:
        if stop.is_set() or _parent_gone():
            raise _Stopped

    def on_progress(fraction: float) -> None:
        check_stop(fraction)
        events.put(ProgressEvent("predict", fraction, time.monotonic() - start))

    prediction = predict(model, annotated.image, annotated, on_progress=on_progress)
    probes = sorted(set(volume.probe_slices))
    if not probes:
        return VolumeResult(volume.name, prediction)
    kept = [i for i in annotated.annotated_slices if i not in probes]
    unprobed = AnnotatedVolume.from_labels(annotated.image, annotated.labels, annotated.axis, kept)
    raw = predict(model, unprobed.image, unprobed, on_progress=check_stop, refine="off").labels
    probe_labels = np.stack([raw[slice_index(annotated.axis, i)] for i in probes])
    return VolumeResult(volume.name, prediction, probes, probe_labels.astype(np.int16))
