"""The background runner: a real child process trains, predicts, stops on request, fails cleanly."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import time

import numpy as np
import pytest

from napari_ssseg.model_store import load_model
from napari_ssseg.runner import LocalRunner, ProgressEvent, RunStatus
from tests.conftest import synthetic_case, synthetic_job


@pytest.fixture
def runner(tmp_path):
    runner = LocalRunner(work_root=tmp_path / "work")
    yield runner
    runner.close()


def training_children() -> list:
    return [p for p in mp.active_children() if p.name == "ssseg-training"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One short real run (20 steps) on a prewarmed child, shared by the tests below."""
    folder = tmp_path_factory.mktemp("finished")
    runner = LocalRunner(work_root=folder / "work", prewarm=True)
    deadline = time.monotonic() + 120
    while not runner.warm and time.monotonic() < deadline:
        time.sleep(0.05)
    warm = runner.warm
    runner.start(synthetic_job(folder / "model", probes=[8], budget={"max_iters": 20}))
    first = runner.status
    final = runner.wait(timeout=120)
    outcome = {
        "warm": warm,
        "first": first,
        "final": final,
        "message": runner.message,
        "progress": runner.last_progress,
        "result": runner.result() if final is RunStatus.DONE else None,
        "folder": folder,
    }
    runner.close()
    return outcome


@pytest.mark.slow
def test_short_run_reaches_done_with_model_and_predictions(finished):
    assert finished["warm"], "the spare child never finished its imports"
    assert finished["first"] is RunStatus.PENDING
    assert finished["final"] is RunStatus.DONE, finished["message"]
    progress = finished["progress"]
    assert isinstance(progress, ProgressEvent) and progress.stage == "predict"

    result = finished["result"]
    model = load_model(result.model_dir)
    assert result.model_dir == finished["folder"] / "model"
    assert model.summary["iterations"] == 20
    (volume,) = result.volumes
    prediction = volume.prediction
    image, labels = synthetic_case()
    assert prediction.labels.shape == labels.shape and prediction.labels.dtype == np.int16
    assert prediction.uncertainty.shape == labels.shape
    assert prediction.uncertainty.min() >= 0.0 and prediction.uncertainty.max() <= 1.0
    assert prediction.annotated == [4, 8, 12]
    # The user's labels are kept on every annotated slice, the probe slice included ...
    for i in (4, 8, 12):
        assert np.array_equal(prediction.labels[:, :, i], labels[:, :, i])
    # ... while the probe's raw network labels come back separately.
    assert volume.probe_slices == [8] and volume.probe_labels.shape == (1, 40, 36)
    order = prediction.review_order()
    assert sorted(order) == [i for i in range(16) if i not in (4, 8, 12)]
    scores = prediction.slice_scores
    assert all(scores[a] >= scores[b] for a, b in zip(order, order[1:], strict=False))


@pytest.mark.slow
def test_cancel_stops_a_long_run_within_two_seconds(runner, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "previous.txt").write_text("old model")
    runner.start(synthetic_job(tmp_path / "model", budget={"max_iters": 1_000_000}))
    deadline = time.monotonic() + 120
    while not any(isinstance(e, ProgressEvent) for e in runner.poll()):
        assert runner.running and time.monotonic() < deadline, runner.message
        time.sleep(0.05)
    asked = time.monotonic()
    runner.cancel()
    assert runner.wait(timeout=5) is RunStatus.STOPPED
    took = time.monotonic() - asked
    print(f"cancel took {took:.2f} s")
    assert took < 2.0
    while training_children() and time.monotonic() - asked < 2.0:
        time.sleep(0.02)
    assert not training_children(), "the child process outlived the cancel by 2 s"
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["previous.txt"]
    with pytest.raises(RuntimeError, match="no results"):
        runner.result()


def test_no_annotated_slice_is_an_error_before_any_process(runner, tmp_path):
    runner.start(synthetic_job(tmp_path / "model", annotated=()))
    events = runner.poll()
    assert runner.status is RunStatus.ERROR and events[-1].status is RunStatus.ERROR
    assert "no annotated slice" in runner.message
    assert not (tmp_path / "model").exists()


def progress_until_finished(runner, timeout_s: float) -> tuple[list[ProgressEvent], float]:
    """Poll ``runner`` until its run finishes or ``timeout_s`` passes: (its progress events,
    the deadline)."""
    progress: list[ProgressEvent] = []
    deadline = time.monotonic() + timeout_s
    while not runner.status.finished and time.monotonic() < deadline:
        progress += [e for e in runner.poll() if isinstance(e, ProgressEvent)]
        time.sleep(0.05)
    return progress, deadline


@pytest.mark.slow
def test_embedding_job_fills_the_cache_before_any_label_and_can_be_stopped(runner, tmp_path):
    cache = tmp_path / "embeddings"

    # Nothing annotated yet: an embedding job needs no label (a training job would refuse).
    def embedding_job():
        job = synthetic_job(
            tmp_path / "model",
            annotated=(),
            method="sc-sam",
            foundation={"embedding_cache": str(cache)},
        )
        job.task = "embed"
        return job

    job = embedding_job()
    runner.start(job)
    progress, deadline = progress_until_finished(runner, timeout_s=180)
    assert runner.status is RunStatus.DONE, runner.message
    depth = synthetic_case()[0].shape[2]
    assert runner.message.startswith(f"{depth} slices ready for the foundation model ({depth} ")
    assert {e.stage for e in progress} == {"embed"} and progress[-1].fraction == 1.0
    assert len(list(cache.glob("*.safetensors"))) == depth  # LiteMedSAM's, one per slice
    assert not (tmp_path / "model").exists()  # an embedding job leaves the model alone

    # A second job on the same volume finds every slice cached; one cancelled part-way
    # (another volume) keeps what it embedded.
    runner.start(job)
    assert runner.wait(timeout=120) is RunStatus.DONE
    assert runner.message.endswith(f"(0 embedded in {runner.message.split(' in ')[1]}")
    other = embedding_job()
    # Mirrored: other slices (a scaled copy would normalise to the same ones).
    other.volumes[0].image = np.ascontiguousarray(other.volumes[0].image[::-1])
    runner.start(other)
    while not any(isinstance(e, ProgressEvent) for e in runner.poll()):
        assert runner.running and time.monotonic() < deadline, runner.message
        time.sleep(0.05)
    runner.cancel()
    assert runner.wait(timeout=10) is RunStatus.STOPPED
    assert depth < len(list(cache.glob("*.safetensors"))) < 2 * depth


@pytest.mark.slow
def test_preparation_job_pretrains_a_student_that_the_training_run_starts_from(runner, tmp_path):
    cache = tmp_path / "embeddings"
    settings = {
        "method": "ssl",
        "features": {"pretrain_steps": 6},
        "budget": {"max_iters": 4},
        "foundation": {"embedding_cache": str(cache)},
    }
    # While the user labels: nothing annotated yet.
    prepare = synthetic_job(tmp_path / "model", annotated=(), **settings)
    prepare.task = "embed"
    runner.start(prepare)
    progress, _ = progress_until_finished(runner, timeout_s=240)
    assert runner.status is RunStatus.DONE, runner.message
    assert runner.message.endswith("; network pretrained (6 steps)")
    stages = [e.stage for e in progress]
    assert "embed" in stages and stages[-1] == "pretrain"
    assert stages.index("pretrain") > max(i for i, s in enumerate(stages) if s == "embed")
    assert [e.iteration for e in progress if e.stage == "pretrain"][-1] == 6
    assert all(e.losses["pretrain"] > 0 for e in progress if e.stage == "pretrain")
    assert len(list((cache / "students").glob("*.safetensors"))) == 1
    assert not (tmp_path / "model").exists()
    # The labelled run starts from that student: no pretraining of its own.
    runner.start(synthetic_job(tmp_path / "model", **settings))
    assert runner.wait(timeout=180) is RunStatus.DONE, runner.message
    summary = runner.result().summary
    assert summary["pretrained"] == 6 and summary["iterations"] == 4


@pytest.mark.slow
def test_error_in_the_child_comes_back_as_a_message_and_keeps_the_old_model(
    finished, runner, tmp_path
):
    shutil.copytree(finished["folder"] / "model", tmp_path / "model")
    before = {p.name: p.read_bytes() for p in (tmp_path / "model").iterdir()}

    # Warm-starting a 2-class model with three class names fails inside train_model.
    second = synthetic_job(tmp_path / "model", budget={"max_iters": 2})
    second.class_names = ["ellipsoid", "blob", "third"]
    second.init_model_dir = tmp_path / "model"
    runner.start(second)
    assert runner.wait(timeout=120) is RunStatus.ERROR
    assert runner.message == (
        f"cannot warm-start from the model {tmp_path / 'model'}: it has the classes "
        "ellipsoid, blob; this run has ellipsoid, blob, third"
    )
    assert "Traceback" not in runner.message
    after = {p.name: p.read_bytes() for p in (tmp_path / "model").iterdir()}
    assert after == before


def test_results_carry_the_refinement_report(tmp_path):
    from napari_ssseg.inference.predict import Prediction
    from napari_ssseg.runner.results import RunResult, VolumeResult, read_results, write_results

    prediction = Prediction(
        labels=np.zeros((4, 4, 3), np.int16),
        uncertainty=np.zeros((4, 4, 3), np.float32),
        slice_scores=np.zeros(3),
        annotated=[1],
        axis=2,
    )
    report = "refine auto (litemedsam, Dice on 1 annotated slice(s), ...): liver: ... -> unet"
    volumes = [VolumeResult("a", prediction, refinement=report), VolumeResult("b", prediction)]
    folder = write_results(RunResult(tmp_path / "model", {}, volumes), tmp_path / "results")
    back = read_results(folder)
    assert [v.refinement for v in back.volumes] == [report, None]
