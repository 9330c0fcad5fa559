"""Faults a session survives: the user's labels, the autosave and the last good model stay.

How each fault is made:

- the training process killed: ``os.kill(pid, SIGKILL)`` on the real child while it trains;
- out of memory: the job's ``memory_limit_mb`` caps the child's address space
  (``RLIMIT_AS``) and its 1024-px slices need more, so torch's allocator fails inside a
  training step; a MemoryError raised by the loss checks the message in-process too;
- cancel at many moments: the worker's own ``run_job`` (the function the child runs) is run
  in this process with a stop flag set at each stage and at seeded random delays;
- a crash inside a loss: the supervised loss is replaced by one that raises;
- disk full or read-only: the write or the rename of the autosave, the export and the model
  save raise ``OSError(ENOSPC / EROFS)`` (tests run as root, so chmod cannot do it);
- napari closed during training: a real viewer with the dock widget is closed mid-run.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_ssseg import model_store, project_store
from napari_ssseg.annotation import AnnotatedVolume
from napari_ssseg.errors import InputError, SsSegError
from napari_ssseg.inference.predict import Prediction
from napari_ssseg.io import nifti
from napari_ssseg.io.nifti import read_volume
from napari_ssseg.model_store import TrainedModel, load_model, recover_model_dir, save_model
from napari_ssseg.networks.unet import unet_for
from napari_ssseg.project_store import load_project, save_project
from napari_ssseg.runner import (
    LocalRunner,
    ProgressEvent,
    RunStatus,
    StatusEvent,
    worker,
)
from napari_ssseg.runner import job as job_module
from napari_ssseg.settings import TrainConfig
from napari_ssseg.tasks import outputs
from tests.conftest import TINY_TRAINING, synthetic_case, synthetic_job, write_nifti

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")
READ_ONLY = OSError(errno.EROFS, "Read-only file system")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) by relative path, with its bytes."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def good_model(folder: Path) -> Path:
    """A small valid model folder (untrained weights): the "last good model"."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    config = TrainConfig.from_dict(TINY_TRAINING)
    state = unet_for(config.student, 2).state_dict()
    return save_model(TrainedModel(state, config, ["ellipsoid", "blob"]), folder)


def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not yet reaped counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_for(runner: LocalRunner, predicate, timeout: float = 240.0) -> list:
    """Poll ``runner`` until an event satisfies ``predicate``; returns all events seen."""
    seen: list = []
    deadline = time.monotonic() + timeout
    while not any(predicate(e) for e in seen):
        assert runner.running, f"the run ended early: {runner.status} {runner.message}"
        assert time.monotonic() < deadline, "no such event in time"
        seen.extend(runner.poll())
        time.sleep(0.05)
    return seen


def in_training(event) -> bool:
    return isinstance(event, ProgressEvent) and event.stage == "train"


@pytest.fixture(scope="module", autouse=True)
def warm_runners(tmp_path_factory):
    """Two prewarmed runners, made first so their children import torch and MONAI (the slow
    part, 10 to 30 s on the 2-core machine) while the in-process tests run."""
    root = tmp_path_factory.mktemp("runners")
    runners = {
        "kill": LocalRunner(work_root=root / "kill", prewarm=True),
        "oom": LocalRunner(work_root=root / "oom", prewarm=True),
    }
    yield runners
    for runner in runners.values():
        runner.close()


# -- the worker in this process: cancel at every stage, a crash inside the loss ---------------


class EventLog:
    """Stands for the child's event queue; ``on_event`` may set the stop flag."""

    def __init__(self, on_event=None) -> None:
        self.events: list = []
        self.on_event = on_event

    def put(self, event) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    @property
    def final(self) -> StatusEvent:
        finals = [e for e in self.events if isinstance(e, StatusEvent) and e.status.finished]
        assert len(finals) == 1 and self.events[-1] is finals[0], self.events
        return finals[0]


@pytest.fixture
def project_dir(tmp_path) -> Path:
    """A project folder holding the last good model."""
    good_model(tmp_path / "project" / "model")
    return tmp_path / "project"


def run_worker(tmp_path: Path, model_dir: Path, stop=None, on_event=None, **config) -> EventLog:
    """Run the child's ``run_job`` on a tiny job here, one torch thread."""
    job_dir = tmp_path / "job"
    shutil.rmtree(job_dir, ignore_errors=True)
    synthetic_job(model_dir, threads=1, **config).write(job_dir)
    log = EventLog(on_event)
    worker.run_job(str(job_dir), log, stop or threading.Event())
    return log


def assert_survived(log: EventLog, project_dir: Path, before: dict, job_dir: Path) -> RunStatus:
    """Ended STOPPED with everything as before, or DONE with a complete new model; never a
    leftover beside the model or in the job folder."""
    status = log.final.status
    assert status in (RunStatus.STOPPED, RunStatus.DONE), log.final.message
    strays = [p.name for p in project_dir.iterdir() if p.name != "model"]
    assert not strays, f"left beside the model: {strays}"
    assert not [p.name for p in job_dir.iterdir() if p.name.startswith(".")]
    if status is RunStatus.STOPPED:
        assert snapshot(project_dir) == before
        assert not (job_dir / worker.RESULTS_DIR).exists()
    else:
        assert load_model(project_dir / "model").summary["iterations"] >= 1
        assert (job_dir / worker.RESULTS_DIR / "result.json").is_file()
    return status


def stop_on(stop: threading.Event, predicate):
    def hook(event) -> None:
        if predicate(event):
            stop.set()

    return hook


@pytest.mark.parametrize(
    "moment",
    ["before start", "data preparation", "training", "prediction", "result writing"],
)
def test_cancel_at_each_stage_ends_stopped_and_keeps_the_last_model(
    moment, tmp_path, project_dir, monkeypatch
):
    torch.set_num_threads(1)
    before = snapshot(project_dir)
    stop = threading.Event()
    hook = None
    if moment == "before start":
        stop.set()
    elif moment == "data preparation":  # RUNNING is reported just before the job is read
        hook = stop_on(stop, lambda e: isinstance(e, StatusEvent))
    elif moment == "training":
        hook = stop_on(stop, in_training)
    elif moment == "prediction":
        hook = stop_on(stop, lambda e: isinstance(e, ProgressEvent) and e.stage == "predict")
    else:
        real = worker.write_results

        def write_then_cancelled(result, folder):
            stop.set()
            return real(result, folder)

        monkeypatch.setattr(worker, "write_results", write_then_cancelled)
    log = run_worker(tmp_path, project_dir / "model", stop, hook, budget={"max_iters": 5})
    assert assert_survived(log, project_dir, before, tmp_path / "job") is RunStatus.STOPPED
    assert "cancelled" in log.final.message


def test_cancel_during_the_model_commit_finishes_the_commit(tmp_path, project_dir, monkeypatch):
    """The commit is not interruptible: a stop asked while the model is saved ends DONE
    with the complete new model (the parent's terminate is covered by recovery below)."""
    stop = threading.Event()
    real = model_store.save_model

    def save_while_cancelled(model, folder):
        stop.set()
        return real(model, folder)

    monkeypatch.setattr(model_store, "save_model", save_while_cancelled)
    log = run_worker(tmp_path, project_dir / "model", stop, budget={"max_iters": 5})
    assert assert_survived(log, project_dir, {}, tmp_path / "job") is RunStatus.DONE


@pytest.mark.slow
def test_cancel_at_random_moments_ends_stopped_or_done(tmp_path, project_dir):
    torch.set_num_threads(1)
    before = snapshot(project_dir)
    started = time.monotonic()
    reference = run_worker(
        tmp_path / "reference", tmp_path / "reference" / "model", budget={"max_iters": 20}
    )
    length = time.monotonic() - started
    assert reference.final.status is RunStatus.DONE, reference.final.message

    outcomes = []
    for delay in np.random.default_rng(7).uniform(0.0, 1.1 * length, size=4):
        stop = threading.Event()
        timer = threading.Timer(delay, stop.set)
        timer.start()
        log = run_worker(tmp_path, project_dir / "model", stop, budget={"max_iters": 20})
        timer.cancel()
        status = assert_survived(log, project_dir, before, tmp_path / "job")
        outcomes.append((round(float(delay), 2), status.value))
        if status is RunStatus.DONE:  # a finished run replaced the model: the new baseline
            before = snapshot(project_dir)
    print(f"run length {length:.1f} s; cancel delay -> outcome: {outcomes}")


def failing_loss(error: BaseException):
    def loss(*_args, **_kwargs):
        raise error

    return lambda: loss


def test_crash_inside_the_loss_is_an_error_with_its_summary(tmp_path, project_dir, monkeypatch):
    before = snapshot(project_dir)
    boom = ZeroDivisionError("float division by zero in the Dice term")
    monkeypatch.setattr("napari_ssseg.training.loop.supervised_loss", failing_loss(boom))
    log = run_worker(tmp_path, project_dir / "model", budget={"max_iters": 5})
    final = log.final
    assert final.status is RunStatus.ERROR
    assert final.message.startswith(
        "training failed: ZeroDivisionError: float division by zero in the Dice term"
    )
    log_file = tmp_path / "job" / worker.ERROR_LOG
    assert str(log_file) in final.message and "Traceback" not in final.message
    assert "in train" in log_file.read_text()  # the traceback goes to the log
    assert snapshot(project_dir) == before


def test_memory_error_inside_the_loss_says_out_of_memory(tmp_path, project_dir, monkeypatch):
    before = snapshot(project_dir)
    error = MemoryError("Unable to allocate 3.0 GiB for an array")
    monkeypatch.setattr("napari_ssseg.training.loop.supervised_loss", failing_loss(error))
    final = run_worker(tmp_path, project_dir / "model", budget={"max_iters": 5}).final
    assert final.status is RunStatus.ERROR
    assert final.message.startswith("the training process ran out of memory (MemoryError: Unable")
    assert "last model are unchanged" in final.message
    assert snapshot(project_dir) == before


# -- the model folder: a failed or killed save never loses the last good model ----------------


def test_model_save_on_a_full_disk_keeps_the_previous_model(tmp_path, monkeypatch):
    folder = good_model(tmp_path / "project" / "model")
    before = snapshot(tmp_path / "project")
    model = load_model(folder)

    def full(*_args, **_kwargs):
        raise NO_SPACE

    monkeypatch.setattr(model_store, "save_file", full)
    with pytest.raises(InputError, match=f"{folder}: could not save the model"):
        save_model(model, folder)
    assert snapshot(tmp_path / "project") == before


def test_model_swap_failing_half_way_puts_the_old_model_back(tmp_path, monkeypatch):
    folder = good_model(tmp_path / "project" / "model")
    before = snapshot(tmp_path / "project")
    real = os.replace

    def second_rename_fails(src, dst):
        if Path(src).name.startswith(".model.staging-"):
            raise READ_ONLY
        real(src, dst)

    monkeypatch.setattr(model_store.os, "replace", second_rename_fails)
    with pytest.raises(InputError, match="Read-only file system"):
        save_model(load_model(folder), folder)
    monkeypatch.undo()
    assert snapshot(tmp_path / "project") == before


def test_recovery_after_a_kill_between_the_two_renames(tmp_path):
    """What SIGKILL between ``model -> .model.old-*`` and ``staging -> model`` leaves."""
    folder = good_model(tmp_path / "project" / "model")
    before = snapshot(folder)
    os.replace(folder, tmp_path / "project" / ".model.old-123-abcd")
    good_model(tmp_path / "project" / "other")
    os.replace(tmp_path / "project" / "other", tmp_path / "project" / ".model.staging-xyz")
    assert recover_model_dir(folder) is True
    assert snapshot(folder) == before
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) == ["model"]


def test_disk_full_while_writing_the_job_is_an_error_before_any_process(tmp_path, monkeypatch):
    runner = LocalRunner(work_root=tmp_path / "work")

    def full(*_args, **_kwargs):
        raise NO_SPACE

    monkeypatch.setattr(job_module.np, "save", full)
    runner.start(synthetic_job(tmp_path / "project" / "model", threads=1))
    events = runner.poll()
    assert runner.status is RunStatus.ERROR and events[-1].status is RunStatus.ERROR
    assert runner.message.startswith(str(tmp_path / "work"))
    assert "could not write the training job there (No space left on device)" in runner.message
    assert runner.child_pid is None and not list((tmp_path / "work").iterdir())
    runner.close()


# -- the real child process: SIGKILL, a capped address space -----------------------------------


@pytest.mark.slow
def test_sigkill_mid_training_is_an_error_and_the_next_job_runs(warm_runners, tmp_path):
    runner = warm_runners["kill"]
    model_dir = good_model(tmp_path / "project" / "model")
    before = snapshot(tmp_path / "project")
    runner.start(
        synthetic_job(model_dir, threads=1, budget={"max_iters": 1_000_000, "max_time": 600})
    )
    wait_for(runner, in_training)
    pid = runner.child_pid
    os.kill(pid, signal.SIGKILL)
    assert runner.wait(timeout=10) is RunStatus.ERROR
    assert process_gone(pid)
    print(f"after SIGKILL: {runner.message}")
    assert "was killed by SIGKILL" in runner.message
    assert "last model are unchanged" in runner.message
    assert snapshot(tmp_path / "project") == before
    assert load_model(model_dir).class_names == ["ellipsoid", "blob"]

    runner.start(synthetic_job(model_dir, threads=1, budget={"max_iters": 3}))
    assert runner.wait(timeout=240) is RunStatus.DONE, runner.message
    assert load_model(model_dir).summary["iterations"] == 3
    assert runner.result().volumes[0].prediction.labels.shape == (40, 36, 16)
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) == ["model"]
    runner.close()  # no new spare: it would only compete for the CPU with the tests below


@pytest.mark.slow
def test_out_of_memory_in_the_child_is_a_clear_error(warm_runners, tmp_path):
    runner = warm_runners["oom"]
    model_dir = good_model(tmp_path / "project" / "model")
    before = snapshot(tmp_path / "project")
    # 16 slices at 1024 x 1024 fit in 700 MiB (data preparation needs 300 to 700), a
    # training step on 8 of them does not (the supervised U-Net: teachers' targets at this
    # size would take the memory before the step).
    job = synthetic_job(
        model_dir,
        threads=1,
        method="unet",
        student={"image_size": 1024},
        batch={"size": 8},
        budget={"max_iters": 5},
    )
    job.memory_limit_mb = 700
    runner.start(job)
    assert runner.wait(timeout=240) is RunStatus.ERROR
    print(f"out of memory: {runner.message}")
    log = Path(runner.message.rsplit("(details in ", 1)[1].rstrip(")")).read_text()
    inside_a_step = "loop.py" in log and "in forward" in log  # the U-Net's forward pass
    assert inside_a_step, f"the allocation did not fail in a training step:\n{log[-2000:]}"
    assert runner.message.startswith("the training process ran out of memory (RuntimeError:")
    assert "can't allocate memory" in runner.message or "not enough memory" in runner.message
    assert snapshot(tmp_path / "project") == before
    runner.close()


# -- disk full / read-only during autosave and export -----------------------------------------


@pytest.fixture
def annotation(tmp_path) -> AnnotatedVolume:
    image, labels = synthetic_case()
    volume = read_volume(write_nifti(tmp_path / "case.nii.gz", image))
    return AnnotatedVolume.from_labels(volume, labels, axis=2, annotated_slices=[5, 8, 15])


def edited(annotation: AnnotatedVolume) -> AnnotatedVolume:
    labels = annotation.labels.copy()
    labels[:, :, 10] = 1
    return AnnotatedVolume(annotation.image, labels, 2, {0})


@pytest.mark.parametrize("fault", ["labels write", "project.json write", "commit rename"])
@pytest.mark.parametrize("error", [NO_SPACE, READ_ONLY], ids=["disk full", "read-only"])
def test_autosave_failure_keeps_the_previous_save(annotation, tmp_path, monkeypatch, fault, error):
    folder = tmp_path / "case.ssseg"
    save_project(folder, annotation, ["ellipsoid", "blob"])
    before = snapshot(folder)
    if fault == "labels write":  # nibabel has written part of the file when the disk fills

        def half_written(image, path):
            Path(path).write_bytes(b"\x1f\x8b half")
            raise error

        monkeypatch.setattr(nifti.nib, "save", half_written)
    elif fault == "project.json write":
        real_write = Path.write_text

        def write_text(path, *args, **kwargs):
            if path.name.endswith(".tmp"):
                raise error
            return real_write(path, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)
    else:
        real_replace = os.replace

        def replace(src, dst):
            if Path(dst).name == project_store.PROJECT_FILE:
                raise error
            real_replace(src, dst)

        monkeypatch.setattr(project_store.os, "replace", replace)
    with pytest.raises(SsSegError, match=str(folder)) as raised:
        save_project(folder, edited(annotation), ["x", "y"])
    monkeypatch.undo()
    assert error.strerror in str(raised.value)
    assert snapshot(folder) == before
    restored = load_project(folder, annotation.image)
    assert np.array_equal(restored.annotation.labels, annotation.labels)
    assert restored.annotation.annotated_slices == [5, 8, 15]
    assert restored.class_names == ["ellipsoid", "blob"]


def prediction_of(annotation: AnnotatedVolume, value: int) -> Prediction:
    labels = np.full(annotation.image.shape, value, np.int16)
    uncertainty = np.full(annotation.image.shape, 0.1 * value, np.float32)
    return Prediction(labels, uncertainty, np.linspace(0, 1, 16), [5, 8, 15], 2)


@pytest.mark.parametrize("fault", ["nifti write", "csv write", "second move"])
@pytest.mark.parametrize("error", [NO_SPACE, READ_ONLY], ids=["disk full", "read-only"])
def test_export_failure_keeps_the_previous_export(annotation, tmp_path, monkeypatch, fault, error):
    out = tmp_path / "export"
    first = outputs.write_prediction(prediction_of(annotation, 1), annotation.image, out)
    before = snapshot(out)
    if fault == "nifti write":

        def fail(image, path):
            Path(path).write_bytes(b"\x1f\x8b half")
            raise error

        monkeypatch.setattr(nifti.nib, "save", fail)
    elif fault == "csv write":

        def fail_table(path, prediction):
            Path(path).write_text("slice,unc")
            raise error

        monkeypatch.setattr(outputs, "write_slice_table", fail_table)
    else:
        real_replace = os.replace

        def replace(src, dst):
            new = not Path(src).name.startswith("previous-")
            if Path(dst) == first["uncertainty"] and Path(src).parent != out and new:
                raise error  # the new uncertainty map cannot be moved in
            real_replace(src, dst)

        monkeypatch.setattr(outputs.os, "replace", replace)
    with pytest.raises(InputError, match=f"{out}: could not write the prediction"):
        outputs.write_prediction(prediction_of(annotation, 2), annotation.image, out)
    monkeypatch.undo()
    assert snapshot(out) == before


# -- napari closed while training --------------------------------------------------------------


@pytest.mark.gui
@pytest.mark.slow
def test_closing_napari_during_training_ends_the_child_and_keeps_the_autosave(
    make_napari_viewer, tmp_path, qtbot
):
    pytest.importorskip("napari")
    from qtpy.QtCore import Qt

    from napari_ssseg.widgets.dock import SsSegWidget

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-ssseg", "ct")
    widget = SsSegWidget(viewer)  # owns its runner, as when napari opens the plugin
    viewer.window.add_dock_widget(widget, name="napari-ssseg")
    widget.image_combo.setCurrentText("example_ct_sm")
    widget.project_edit.setText(str(tmp_path / "project"))
    widget.config_overrides = {
        "student": {"image_size": 32, "channels": [8, 16, 32]},
        "budget": {"max_iters": 10**6},
    }
    widget.new_labels_layer()
    labels = viewer.layers["example_ct_sm labels"]
    reference = viewer.layers["example_ct_sm reference labels"].data
    for z in (8, 15, 22):
        labels.data[z][reference[z] == 5] = 1
    labels.events.paint()
    widget.class_edit.setText("liver")
    kept = np.transpose(labels.data, (2, 1, 0)).copy()

    qtbot.mouseClick(widget.train_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(widget.loss_plot.losses), timeout=240_000)
    image = widget.session.image
    pid = widget.runner.child_pid
    assert pid is not None and not process_gone(pid)
    runner = widget.runner
    closed_at = time.monotonic()
    viewer.close()  # destroys the dock widget, which closes the runner it owns
    closing = time.monotonic() - closed_at
    while not process_gone(pid) and time.monotonic() < closed_at + 10.0:
        qtbot.wait(50)
    took = time.monotonic() - closed_at
    print(f"viewer.close() took {closing:.2f} s; the training process was gone after {took:.2f} s")
    assert process_gone(pid), "the training process outlived napari's window by 10 s"
    assert runner.status is RunStatus.STOPPED and runner.message == "the runner was closed"
    saved = load_project(tmp_path / "project", image)
    assert np.array_equal(saved.annotation.labels, kept)
    assert saved.annotation.annotated_slices == [8, 15, 22]
    assert not (tmp_path / "project" / "model").exists()
