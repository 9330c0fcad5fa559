"""Feature distillation made before the run (training/pretraining.py) and a run started from it."""

from __future__ import annotations

import pytest
import torch
from monai.utils import set_determinism

from napari_ssseg.errors import SsSegError
from napari_ssseg.networks.unet import build_unet
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.values import merged
from napari_ssseg.tasks.train import train_model
from napari_ssseg.training.loop import train
from napari_ssseg.training.pretraining import label_free, pretrain_student
from napari_ssseg.training.student_store import StudentStore, prepare_student, stored_student
from tests.test_feature_losses import (
    spy_on_alignment,
    synthetic_project,
    tiny_config,
)


def pretraining(tmp_path, steps: int, **changes) -> TrainConfig:
    """:func:`tiny_config` with ``steps`` steps of pretraining; ``changes`` (by section)
    written over."""
    return tiny_config(tmp_path, **merged({"features": {"pretrain_steps": steps}}, changes))


NO_PRETRAINING = {"features": {"pretrain_steps": 0}}
WIDER = {"student": {"channels": [16, 32, 64]}}
"""Another network than :func:`tiny_config`'s."""


def test_a_student_pretrained_before_the_run_is_the_one_the_run_would_make(tmp_path, echo):
    config = pretraining(tmp_path, 5, budget={"max_iters": 3})
    asked, seen = [], []
    student = pretrain_student(
        synthetic_project(),
        config,
        keep_going=lambda: asked.append(1) or True,
        on_step=lambda done, loss: seen.append((done, loss)),
    )
    assert student.steps == 5 and len(asked) == 5 and [d for d, _ in seen] == [1, 2, 3, 4, 5]
    assert all(loss > 0 for _, loss in seen)
    assert student.num_classes == 3  # two classes and background
    # Pretrained from the run's own initial network: the layers the distillation reaches
    # moved, the output layer (3 channels out) is as a fresh run of this seed builds it.
    set_determinism(seed=config.seed)
    fresh = build_unet(1, 2, config.student.channels).state_dict()
    same = {k for k, v in fresh.items() if torch.equal(student.state_dict[k], v)}
    output = {k for k, v in fresh.items() if v.ndim == 4 and 3 in v.shape[:2]}
    assert output and output <= same
    assert len(same) < len(fresh)
    # The labels are not read: the same student from the images alone.
    blank = pretrain_student(label_free(synthetic_project()), config)
    assert all(torch.equal(blank.state_dict[k], v) for k, v in student.state_dict.items())
    # Stopped when asked: fewer steps.
    polls = iter([True, True, False])
    stopped = pretrain_student(synthetic_project(), config, keep_going=lambda: next(polls))
    assert stopped.steps == 2


def test_a_run_started_from_the_pretrained_student_does_not_pretrain_again(
    tmp_path, echo, monkeypatch
):
    config = pretraining(tmp_path, 5, budget={"max_iters": 3})
    student = pretrain_student(synthetic_project(), config)
    built = spy_on_alignment(monkeypatch)
    seen = []
    result = train(
        synthetic_project(), config, on_progress=seen.append, report_every=1, pretrained=student
    )
    # Its steps were made before: reported as done, none again, no feature bank built.
    assert result.pretrained == 5 and result.iterations == 3
    assert [p.iteration for p in seen] == [1, 2, 3]
    assert built == []
    # It starts from the pretrained weights: the result differs from a run from scratch
    # without pretraining, and is what the same run from the same student gives again.
    plain = train(synthetic_project(), config.with_values(NO_PRETRAINING))
    assert any(not torch.equal(result.state_dict[k], v) for k, v in plain.state_dict.items())
    again = train(synthetic_project(), config, pretrained=student)
    assert all(torch.equal(again.state_dict[k], v) for k, v in result.state_dict.items())
    # A warm start wins: it starts from its model and says nothing was pretrained.
    warm = train(synthetic_project(), config, init_state=result.state_dict, pretrained=student)
    assert warm.pretrained == 0


def test_a_pretrained_student_that_does_not_fit_is_refused(tmp_path, echo):
    config = pretraining(tmp_path, 2, budget={"max_iters": 2})
    student = pretrain_student(synthetic_project(), config)
    one_class = synthetic_project()
    one_class.class_names = one_class.class_names[:1]
    one_class.volumes[0].labels[one_class.volumes[0].labels > 1] = 1
    with pytest.raises(SsSegError, match="pretrained student has 2 classes; this project has 1"):
        train(one_class, config, pretrained=student)
    wider = config.with_values(WIDER)
    with pytest.raises(SsSegError, match="does not match this run's settings"):
        train(synthetic_project(), wider, pretrained=student)
    with pytest.raises(SsSegError, match="nothing to pretrain"):
        pretrain_student(synthetic_project(), config.with_values(NO_PRETRAINING))


# --- the store: made while the user labels, found by the run ---------------------------------


def test_the_store_keys_students_by_images_and_shaping_settings_not_labels(tmp_path, echo):
    config = pretraining(tmp_path, 2)
    project = synthetic_project()
    key = StudentStore.key(project, config)
    assert StudentStore.key(label_free(project), config) == key  # labels do not matter
    unshaping = {"method": "ssl", "budget": {"max_time": 5.0}, "prediction": {"passes": 3}}
    assert StudentStore.key(project, config.with_values(unshaping)) == key
    assert StudentStore.key(project, config.with_values({"seed": 2})) != key
    assert StudentStore.key(project, config.with_values({"features": {"pretrain_steps": 3}})) != key
    assert StudentStore.key(project, config.with_values(WIDER)) != key
    assert StudentStore.key(project, config.with_values({"batch": {"size": 3}})) != key
    assert StudentStore.key(project, config.with_values({"features": {"slices": 5}})) != key
    brighter = synthetic_project()
    brighter.volumes[0].image.data[0, 0, 0] += 1.0
    assert StudentStore.key(brighter, config) != key
    # Saved whole and read back; what cannot be read is no student.
    store = StudentStore.of(config)
    student = pretrain_student(project, config)
    path = store.save(key, student)
    assert path.parent == tmp_path / "embeddings" / "students"
    back = store.load(key)
    assert back.steps == 2 and back.num_classes == 3
    assert all(torch.equal(back.state_dict[k], v) for k, v in student.state_dict.items())
    assert not list(path.parent.glob(".tmp-*"))
    path.write_bytes(b"not a safetensors file")
    assert store.load(key) is None
    assert store.load("0" * 40) is None


def test_a_run_finds_the_student_prepared_for_it(tmp_path, echo, monkeypatch):
    config = pretraining(tmp_path, 4, budget={"max_iters": 3})
    project = synthetic_project()
    made = prepare_student(label_free(project), config)  # the dock's job: no labels yet
    assert made.steps == 4 and stored_student(project, config) is not None
    assert prepare_student(project, config).steps == 4  # found, not made again
    built = spy_on_alignment(monkeypatch)
    model = train_model(project, config)
    assert model.summary["pretrained"] == 4 and built == []  # no pretraining in the run
    direct = train(project, config, pretrained=made)
    assert all(torch.equal(model.state_dict[k], v) for k, v in direct.state_dict.items())
    # Other settings: not found; the run pretrains itself.
    other = config.with_values({"seed": 2})
    assert stored_student(project, other) is None
    assert train_model(project, other).summary["pretrained"] == 4 and len(built) == 1


def test_a_student_stopped_early_is_not_stored(tmp_path, echo):
    config = pretraining(tmp_path, 5)
    polls = iter([True, False])
    student = prepare_student(synthetic_project(), config, keep_going=lambda: next(polls))
    assert student.steps == 1
    assert stored_student(synthetic_project(), config) is None
