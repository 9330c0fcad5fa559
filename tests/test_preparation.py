"""Work made before a run (tasks/prepare.py) and ``napari-ssseg prepare``, which runs it
headless."""

from __future__ import annotations

import json

import numpy as np

import napari_ssseg.project_io as project_io
from napari_ssseg.cli import main
from napari_ssseg.settings.values import merged
from napari_ssseg.tasks.prepare import prepare_volumes
from napari_ssseg.training.pretraining import label_free
from napari_ssseg.training.student_store import stored_student
from tests.conftest import TINY_CLI_CONFIG, synthetic_case, write_nifti
from tests.test_feature_losses import (
    spy_on_alignment,
    synthetic_project,
    tiny_config,
)


def test_preparation_embeds_then_stores_the_student_a_run_finds(tmp_path, echo):
    config = tiny_config(tmp_path, method="ssl", features={"pretrain_steps": 4})
    project = synthetic_project()
    blank = label_free(project)  # nothing labelled yet, as in the dock
    steps = []
    prepared = prepare_volumes(
        [lambda: blank.volumes[0]], project.class_names, config, on_progress=steps.append
    )
    assert prepared is not None and prepared.pretrained_steps == 4
    # Refinement (auto for a foundation-model run) embeds every slice at source resolution,
    # the pretraining its label-free bank's squares: all made now, none cached before.
    slices = blank.volumes[0].num_slices
    assert prepared.slices == slices + config.features.slices == prepared.embedded
    assert echo.embedded == prepared.embedded
    stages = [s.stage for s in steps]
    assert stages == ["embed"] * prepared.slices + ["pretrain"] * 4
    assert [s.done for s in steps if s.stage == "pretrain"] == [1, 2, 3, 4]
    assert all(s.loss is None for s in steps if s.stage == "embed")
    assert steps[prepared.slices - 1].fraction == 1.0 and steps[-1].fraction == 1.0
    assert "network pretrained (4 steps)" in prepared.summary()
    # The labelled project the run gets finds it; a second preparation embeds nothing.
    assert stored_student(project, config) is not None
    again = prepare_volumes([lambda: blank.volumes[0]], project.class_names, config)
    assert again.embedded == 0 and again.pretrained_steps == 4
    assert echo.embedded == prepared.embedded


def test_a_stopped_preparation_keeps_its_embeddings_and_no_student(tmp_path, echo):
    config = tiny_config(tmp_path, method="ssl", features={"pretrain_steps": 5})
    project = synthetic_project()
    load = [lambda: project.volumes[0]]
    polls = iter([False, False, True])
    assert (
        prepare_volumes(load, project.class_names, config, should_stop=lambda: next(polls)) is None
    )
    assert echo.embedded == 2
    # Stopped while pretraining: the embeddings are all there, the student is not kept.
    count = iter(range(10_000))
    slices = project.volumes[0].num_slices + config.features.slices
    stop_in_pretraining = lambda: next(count) >= slices + 2  # noqa: E731
    assert (
        prepare_volumes(load, project.class_names, config, should_stop=stop_in_pretraining) is None
    )
    assert echo.embedded == slices and stored_student(project, config) is None
    # Without pretrain: embeddings only.
    done = prepare_volumes(load, project.class_names, config, pretrain=False)
    assert done.pretrained_steps == 0 and stored_student(project, config) is None


def _write_settings(path, **sections):
    """Write ``TINY_CLI_CONFIG`` with ``sections`` (settings by section) written over it."""
    path.write_text(json.dumps(merged(TINY_CLI_CONFIG, sections)))
    return path


def _write_case(folder, name: str) -> tuple[str, str]:
    image, labels = synthetic_case()
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    image_path = write_nifti(folder / f"{name}.nii.gz", image, affine)
    labels_path = write_nifti(folder / f"{name}_lab.nii.gz", labels.astype(np.uint8), affine)
    return str(image_path), str(labels_path)


def test_the_prepare_command_makes_what_train_then_starts_from(tmp_path, echo, monkeypatch, capsys):
    image, labels = _write_case(tmp_path, "case")
    cache = tmp_path / "embeddings"
    settings = _write_settings(
        tmp_path / "settings.json",
        features={"pretrain_steps": 3, "slices": 4},
        foundation={"embedding_cache": str(cache)},
    )
    common = ["--config", str(settings), "--seed", "2"]

    assert main(["prepare", image, "--classes", "organ,lesion", *common]) == 0
    out, err = capsys.readouterr()
    assert "network pretrained (3 steps)" in out and str(cache) in out
    assert "prepare: pretrain step 3 (100%)" in err
    made = echo.embedded
    built = spy_on_alignment(monkeypatch)
    model_dir = tmp_path / "model"
    train = ["train", image, "--labels", labels, "--annotated-slices", "4,8,12", *common]
    assert main([*train, "--max-iters", "2", "--out", str(model_dir)]) == 0
    err = capsys.readouterr().err
    assert "napari-ssseg: starting from the network made while preparing" in err
    summary = json.loads((model_dir / "model.json").read_text())["summary"]
    assert summary["pretrained"] == 3 and built == []  # started from it, no pretraining
    assert echo.embedded == made  # nor any embedding for the bank

    # Another seed is another student: that run pretrains itself.
    other = ["--config", str(settings), "--seed", "3", "--max-iters", "2"]
    train_other = ["train", image, "--labels", labels, "--annotated-slices", "4,8,12"]
    assert main([*train_other, *other, "--out", str(tmp_path / "m2")]) == 0
    assert len(built) == 1 and "napari-ssseg prepare" not in capsys.readouterr().err


def test_the_prepare_command_reads_one_volume_once(tmp_path, echo, monkeypatch):
    image, labels = _write_case(tmp_path, "case")
    settings = _write_settings(
        tmp_path / "settings.json",
        prediction={"refine": "auto"},
        foundation={"embedding_cache": str(tmp_path / "e")},
    )
    load = project_io.load_annotated_volume
    reads = []
    monkeypatch.setattr(
        project_io, "load_annotated_volume", lambda spec: reads.append(spec.image) or load(spec)
    )
    # Its labels set the class count, and the same read is embedded.
    assert main(["prepare", image, "--labels", labels, "--config", str(settings)]) == 0
    assert echo.embedded > 0 and [str(r) for r in reads] == [image]


def test_the_prepare_command_refuses_or_warns_where_it_cannot_help(tmp_path, echo, capsys):
    first, _ = _write_case(tmp_path, "one")
    second, _ = _write_case(tmp_path, "two")
    cache = {"embedding_cache": str(tmp_path / "e")}
    settings = _write_settings(tmp_path / "settings.json", foundation=cache)
    # ssl without pretraining and without refinement gives the encoder nothing.
    assert main(["prepare", first, "--config", str(settings)]) == 2
    assert "nothing to prepare" in capsys.readouterr().err
    assert main(["prepare", "--config", str(settings)]) == 2
    assert "prepare needs at least one IMAGE" in capsys.readouterr().err
    # Several volumes: their run streams them and pretrains itself, so embeddings only.
    _write_settings(settings, features={"pretrain_steps": 3}, foundation=cache)
    assert main(["prepare", first, second, "--config", str(settings)]) == 0
    out, err = capsys.readouterr()
    assert "only the embeddings are prepared" in err and "pretrained" not in out
    assert echo.embedded > 0
    # One volume without labels or class names: it says which class count it took.
    assert main(["prepare", first, "--config", str(settings)]) == 0
    assert "taken as 1 class" in capsys.readouterr().err
