"""The dock's background embeddings: started only when the settings need the foundation
model, once per volume and model, paused for training (a scripted runner, no process)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ssseg.io.volume import Volume
from napari_ssseg.runner import ProgressEvent, RunStatus, StatusEvent
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.values import merged

pytest.importorskip("qtpy")


class ScriptedRunner:
    """Stands in for a LocalRunner: records jobs, hands out the events a test queues."""

    def __init__(self) -> None:
        self.jobs: list = []
        self.queued: list = []
        self.status = RunStatus.DONE
        self.cancelled = 0

    @property
    def running(self) -> bool:
        return not self.status.finished

    def start(self, job) -> None:
        self.jobs.append(job)
        self.status = RunStatus.RUNNING

    def poll(self) -> list:
        events, self.queued = self.queued, []
        for event in events:
            if isinstance(event, StatusEvent):
                self.status = event.status
        return events

    def cancel(self) -> None:
        self.cancelled += 1
        self.queued.append(StatusEvent(RunStatus.STOPPED, "stopped"))

    def close(self) -> None:
        return None


def scripted_preparer(model_dir, class_names: tuple[str, ...] = ("organ",)):
    """(runner, preparer on it, ``prepare(settings)``: whether the preparer starts a job for
    the nested JSON ``settings`` on a session of one 8 x 8 x 4 volume, the texts it
    reports)."""
    from napari_ssseg.widgets.embedding_prep import EmbeddingPreparer
    from napari_ssseg.widgets.session import AnnotationSession

    runner = ScriptedRunner()
    preparer = EmbeddingPreparer(runner=runner)
    texts: list[str] = []
    preparer.changed.connect(texts.append)
    image = Volume(np.zeros((8, 8, 4), np.float32), np.eye(4), name="scan")
    session = AnnotationSession(image, np.zeros((8, 8, 4), np.int16), list(class_names), axis=2)

    def prepare(settings: dict) -> bool:
        return preparer.prepare(session, TrainConfig.from_dict(settings), model_dir)

    return runner, preparer, prepare, texts


def test_embeddings_start_when_needed_once_per_volume_and_pause_for_training(qtbot, tmp_path):
    runner, preparer, prepare, texts = scripted_preparer(tmp_path / "model")

    # The default method and plain predictions never touch the foundation model.
    assert not prepare({"method": "ssl"})
    assert not prepare({"method": "unet", "prediction": {"refine": "off"}})
    # A method with it (or a refined prediction) does: one embedding job of this volume.
    assert prepare({"method": "sc-sam"})
    job = runner.jobs[-1]
    assert job.task == "embed" and job.volumes[0].name == "scan" and not job.volumes[0].predict
    assert not prepare({"method": "sc-sam"})  # already running

    # Training starts: the job is paused, and asked again afterwards it starts again.
    preparer.pause()
    qtbot.waitUntil(lambda: not preparer.running, timeout=2000)
    assert runner.cancelled == 1 and texts[-1] == "foundation model: embedding paused for training"
    assert prepare({"method": "uncol"})
    runner.queued += [
        ProgressEvent("embed", 0.25, 1.0, 1),
        ProgressEvent("embed", 0.5, 3.0, 2),
        StatusEvent(RunStatus.DONE, "4 slices ready for the foundation model (2 embedded in 6 s)"),
    ]
    qtbot.waitUntil(lambda: not preparer.running, timeout=2000)
    assert "foundation model: 1 slice embedded (1 s)" in texts
    assert "foundation model: 2 slices embedded (3 s)" in texts
    assert texts[-1].startswith("4 slices ready")
    # Done for this volume and model, the feature terms' squares included (uncol has them):
    # nothing more for full (the same needs) nor sc-sam (the slices only).
    assert not prepare({"method": "full"})
    assert not prepare({"method": "sc-sam"})
    assert not prepare({"method": "ssl", "features": {"distill_weight": 1.0}})
    # Another foundation model needs embeddings of its own.
    other = {"model": "sam_vit_b", "checkpoint": "b.pth"}
    assert prepare({"method": "sc-sam", "foundation": other})
    assert len(runner.jobs) == 3
    preparer.close()


def test_the_default_prepares_embeddings_with_two_classes_or_more(qtbot, tmp_path):
    # ssl refines its predictions with the foundation model on multi-class projects only.
    runner, preparer, prepare, _ = scripted_preparer(tmp_path / "model", ("left", "right"))
    assert prepare({"method": "ssl"})
    assert runner.jobs[-1].task == "embed"
    preparer.pause()
    qtbot.waitUntil(lambda: not preparer.running, timeout=2000)
    # Refinement turned off: nothing to prepare.
    assert not prepare({"method": "ssl", "prediction": {"refine": "off"}})
    preparer.close()


def test_a_pretraining_setting_prepares_its_student_once_per_settings(qtbot, tmp_path):
    runner, preparer, prepare, texts = scripted_preparer(tmp_path / "model")

    def finish(*events) -> None:
        runner.queued += [*events, StatusEvent(RunStatus.DONE, "ready")]
        qtbot.waitUntil(lambda: not preparer.running, timeout=2000)

    pretrain = {"method": "ssl", "features": {"pretrain_steps": 50}}
    assert prepare(pretrain)
    finish(ProgressEvent("embed", 1.0, 2.0, 4), ProgressEvent("pretrain", 0.2, 3.0, 10))
    assert "foundation model: pretraining the network, step 10 (3 s)" in texts
    assert not prepare(pretrain)  # this student is made
    # Distillation in the steps needs every slice's square, the student only its bank's.
    assert prepare({"method": "ssl", "features": {"distill_weight": 1.0}})
    finish()
    # Another seed, another student.
    assert prepare(merged(pretrain, {"seed": 3}))
    finish()
    # The budget does not shape the student: the same one serves.
    assert not prepare(merged(pretrain, {"seed": 3, "budget": {"max_time": 30}}))
    preparer.close()
