"""The task layer: the warm-start check of the train task, the warning after a run the clock
cut short, and the predict task keeping the user's labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_ssseg.annotation import AnnotatedVolume, Project, slice_index
from napari_ssseg.errors import InputError
from napari_ssseg.io.nifti import read_labels, read_volume
from napari_ssseg.io.volume import Volume
from napari_ssseg.model_store import TrainedModel, save_model
from napari_ssseg.networks.unet import unet_for
from napari_ssseg.settings import TrainConfig
from napari_ssseg.tasks.predict import predict, predict_to_folder
from napari_ssseg.tasks.train import (
    start_model,
    train_model,
    undertrained_warning,
    warm_start_problem,
)
from tests.conftest import synthetic_case

CLASSES = ["ellipsoid", "blob"]
ANNOTATED = [4, 8, 12]
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def small_settings(**sections) -> TrainConfig:
    """Small CPU settings without refinement, with ``sections`` (nested JSON values)
    written over them."""
    base = {
        "device": "cpu",
        "student": {"image_size": 32, "channels": [4, 8, 16]},
        "prediction": {"passes": 2, "refine": "off"},
    }
    return TrainConfig.from_dict(base).with_values(sections)


def untrained(config: TrainConfig, classes=CLASSES, seed: int = 0) -> TrainedModel:
    """A model of ``config``'s network with random weights (seeded)."""
    torch.manual_seed(seed)
    return TrainedModel(unet_for(config.student, len(classes)).state_dict(), config, list(classes))


def case() -> tuple[Volume, AnnotatedVolume]:
    """The synthetic image and its labels on :data:`ANNOTATED` (slice axis 2)."""
    image, labels = synthetic_case()
    volume = Volume(image, AFFINE, name="case")
    return volume, AnnotatedVolume.from_labels(volume, labels, 2, ANNOTATED)


def summary(steps: int, stopped: bool = False) -> dict:
    return {"iterations": steps, "stopped_early": stopped}


# -- train --------------------------------------------------------------------------------------


def test_undertrained_warning_only_when_the_time_budget_ended_a_short_run():
    timed = small_settings(budget={"max_time": 10.0, "max_iters": 5000})
    assert "only 40 training steps" in undertrained_warning(summary(40), timed)
    assert undertrained_warning(summary(400), timed) is None
    assert undertrained_warning(summary(40, stopped=True), timed) is None  # the user stopped
    short = small_settings(budget={"max_time": 10.0, "max_iters": 30})
    assert undertrained_warning(summary(30), short) is None
    untimed = small_settings(budget={"max_time": None, "max_iters": 5000})
    assert undertrained_warning(summary(40), untimed) is None


def test_a_warm_start_needs_the_same_channels_and_classes():
    config = small_settings()
    model = untrained(config)
    assert warm_start_problem(model, config, CLASSES) is None
    # Other settings (method, budget, batch) may change between runs.
    other_run = small_settings(method="mt", budget={"max_iters": 3}, batch={"size": 2})
    assert warm_start_problem(model, other_run, CLASSES) is None
    wider = small_settings(student={"channels": [4, 8, 32]})
    assert warm_start_problem(model, wider, CLASSES) == (
        "it has U-Net channels [4, 8, 16]; this run has [4, 8, 32]"
    )
    assert warm_start_problem(model, config, ["ellipsoid", "tumour"]) == (
        "it has the classes ellipsoid, blob; this run has ellipsoid, tumour"
    )
    assert warm_start_problem(model, config, ["ellipsoid"]) is not None
    assert warm_start_problem(model, config, ["blob", "ellipsoid"]) is not None  # order counts


def test_start_model_checks_a_model_and_loads_a_folder(tmp_path):
    config = small_settings()
    project = Project([case()[1]], CLASSES)
    model = untrained(config)
    assert start_model(None, config, project) is None
    assert start_model(model, config, project) is model
    with pytest.raises(InputError, match="^cannot warm-start from the model: it has the classes"):
        start_model(model, config, Project([case()[1]], ["a", "b"]))

    folder = save_model(model, tmp_path / "model")
    for init in (folder, str(folder)):
        loaded = start_model(init, config, project)
        assert isinstance(loaded, TrainedModel) and loaded.class_names == CLASSES
        assert loaded.state_dict.keys() == model.state_dict.keys()
        assert all(torch.equal(loaded.state_dict[k], v) for k, v in model.state_dict.items())
    wider = small_settings(student={"channels": [4, 8, 32]})
    with pytest.raises(
        InputError,
        match=f"^cannot warm-start from the model {folder}: it has U-Net channels \\[4, 8, 16\\]",
    ):
        start_model(folder, wider, project)
    with pytest.raises(InputError, match="not a napari-ssseg model folder"):
        start_model(tmp_path / "nothing", config, project)


def test_train_model_refuses_a_mismatched_model_before_training(tmp_path):
    folder = save_model(untrained(small_settings(), classes=["a", "b"]), tmp_path / "model")
    steps = []
    with pytest.raises(InputError, match=f"cannot warm-start from the model {folder}"):
        train_model(
            Project([case()[1]], CLASSES), small_settings(), init=folder, on_progress=steps.append
        )
    assert steps == []


def test_train_model_starts_from_the_weights_of_a_folder(tmp_path):
    torch.set_num_threads(1)
    # One step at a learning rate too small to move the weights: the result is the start.
    config = small_settings(method="unet", budget={"max_iters": 1}, student={"lr": 1e-12})
    start = untrained(config, seed=3)
    folder = save_model(start, tmp_path / "model")
    lines: list[str] = []
    warm = train_model(Project([case()[1]], CLASSES), config, init=folder, notify=lines.append)
    fresh = train_model(Project([case()[1]], CLASSES), config)
    assert warm.summary["iterations"] == fresh.summary["iterations"] == 1
    moved = [float((warm.state_dict[k] - v).abs().max()) for k, v in start.state_dict.items()]
    assert max(moved) < 1e-6
    assert any(not torch.equal(fresh.state_dict[k], v) for k, v in start.state_dict.items())
    assert not any("warm-start" in line for line in lines)


# -- predict ------------------------------------------------------------------------------------


def test_predict_keeps_the_users_labels_on_annotated_slices():
    volume, annotated = case()
    model = untrained(small_settings())
    kept = predict(model, volume, annotation=annotated)
    alone = predict(model, volume, axis=2)  # the U-Net's own labels: no annotation
    assert kept.annotated == ANNOTATED and alone.annotated == [] and kept.axis == alone.axis == 2
    assert kept.labels.shape == volume.shape and kept.labels.dtype == np.int16
    for z in ANNOTATED:
        key = slice_index(2, z)
        assert np.array_equal(kept.labels[key], annotated.labels[key])
        assert not kept.uncertainty[key].any() and kept.slice_scores[z] == 0.0
        # An untrained network predicts other labels there: keeping them is the task's work.
        assert not np.array_equal(alone.labels[key], annotated.labels[key])
    assert set(kept.review_order()) == set(range(volume.shape[2])) - set(ANNOTATED)


def test_predict_uses_the_models_memory_of_a_training_volume(tmp_path):
    volume, annotated = case()
    model = untrained(small_settings())
    model.remember(annotated)
    remembered = predict(model, volume)
    assert remembered.annotated == ANNOTATED
    assert np.array_equal(remembered.labels, predict(model, volume, annotation=annotated).labels)
    # Asked along another axis, the memory (axis 2) does not apply.
    assert predict(model, volume, axis=0).annotated == []

    paths = predict_to_folder(model, volume, tmp_path / "out")
    assert set(paths) == {"segmentation", "uncertainty", "slices"}
    written = read_labels(paths["segmentation"], read_volume(paths["uncertainty"]))
    for z in ANNOTATED:
        key = slice_index(2, z)
        assert np.array_equal(written[key], annotated.labels[key])
    assert np.array_equal(written, remembered.labels)
