"""Project autosave: round trip, refusal for another image, failed writes keep the old save."""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_ssseg import project_store
from napari_ssseg.annotation import AnnotatedVolume
from napari_ssseg.errors import InputError
from napari_ssseg.io.nifti import read_volume
from napari_ssseg.project_store import (
    default_project_dir,
    has_autosave,
    load_project,
    save_project,
)
from napari_ssseg.sample_data import load_sample
from tests.conftest import synthetic_case, write_nifti


@pytest.fixture
def annotation(tmp_path) -> AnnotatedVolume:
    image, labels = synthetic_case()
    volume = read_volume(write_nifti(tmp_path / "case.nii.gz", image))
    return AnnotatedVolume.from_labels(volume, labels, axis=2, annotated_slices=[5, 8, 15])


def test_round_trip_keeps_labels_marks_classes_and_model(annotation, tmp_path):
    folder = default_project_dir(annotation.image)
    assert folder == tmp_path / "case.ssseg"
    assert not has_autosave(folder)
    (folder / "model").mkdir(parents=True)
    save_project(folder, annotation, ["ellipsoid", "blob"], folder / "model")
    assert has_autosave(folder)

    saved = load_project(folder, annotation.image)
    assert np.array_equal(saved.annotation.labels, annotation.labels)
    assert saved.annotation.labels.dtype == np.int16
    assert saved.annotation.axis == 2
    assert saved.annotation.marked_empty == {15}  # slice 15 holds no label: annotated-but-empty
    assert saved.annotation.annotated_slices == [5, 8, 15]
    assert saved.class_names == ["ellipsoid", "blob"]
    assert saved.model_dir == folder / "model"

    # A second save replaces the first and leaves a single labels file behind.
    annotation.mark_empty(0)
    save_project(folder, annotation, ["ellipsoid", "blob"])
    again = load_project(folder, annotation.image)
    assert again.annotation.annotated_slices == [0, 5, 8, 15] and again.model_dir is None
    assert len(list(folder.glob("labels-*.nii.gz"))) == 1


def test_restore_refuses_another_image(annotation, tmp_path):
    save_project(tmp_path / "p", annotation, ["ellipsoid", "blob"])
    other = read_volume(write_nifti(tmp_path / "other.nii.gz", annotation.image.data + 1))
    with pytest.raises(InputError, match="saved for another image"):
        load_project(tmp_path / "p", other)
    with pytest.raises(InputError, match="no saved project"):
        load_project(tmp_path / "nothing", annotation.image)


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_failed_commit_leaves_the_previous_save_intact(annotation, tmp_path, monkeypatch):
    folder = tmp_path / "p"
    save_project(folder, annotation, ["ellipsoid", "blob"])
    before = _snapshot(folder)

    changed = AnnotatedVolume(annotation.image, np.zeros_like(annotation.labels), 2, {1})

    real_replace = os.replace

    def broken_replace(src, dst):
        if os.path.basename(dst) == "project.json":  # the commit point fails
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(project_store.os, "replace", broken_replace)
    with pytest.raises(InputError, match="could not save the project"):
        save_project(folder, changed, ["x", "y"])
    monkeypatch.undo()
    assert _snapshot(folder) == before
    restored = load_project(folder, annotation.image)
    assert np.array_equal(restored.annotation.labels, annotation.labels)


def test_error_while_writing_labels_leaves_the_previous_save_intact(
    annotation, tmp_path, monkeypatch
):
    folder = tmp_path / "p"
    save_project(folder, annotation, ["ellipsoid", "blob"])
    before = _snapshot(folder)

    def half_written(path, labels, like):
        path.write_bytes(b"\x1f\x8b half a file")
        raise InputError(f"{path}: could not write to {path.parent}: disk full")

    monkeypatch.setattr(project_store, "write_labels", half_written)
    with pytest.raises(InputError, match="disk full"):
        save_project(folder, annotation, ["ellipsoid", "blob"])
    assert _snapshot(folder) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_an_error_and_keeps_the_save(annotation, tmp_path):
    folder = tmp_path / "p"
    save_project(folder, annotation, ["ellipsoid", "blob"])
    before = _snapshot(folder)
    folder.chmod(0o555)
    try:
        with pytest.raises(InputError, match="not writable"):
            save_project(folder, annotation, ["ellipsoid", "blob"])
    finally:
        folder.chmod(0o755)
    assert _snapshot(folder) == before


def test_sample_images_autosave_in_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    image = read_volume(load_sample("ct").image)
    folder = default_project_dir(image)
    assert folder.parent == tmp_path / "cache" / "napari-ssseg" / "projects"
    assert folder.name.startswith(image.name) and folder.name.endswith(".ssseg")
