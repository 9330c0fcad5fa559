"""Opening a folder of volumes as one project: pairing, layouts, napari's reader hook."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import synthetic_case, write_nifti

from napari_ssseg.errors import InputError
from napari_ssseg.folder_reader import (
    PROJECT_KEY,
    get_folder_reader,
    labels_layer_name,
    read_folder_layers,
)


def plain_folder(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    image, labels = synthetic_case()
    write_nifti(folder / "a.nii.gz", image)
    write_nifti(folder / "a_seg.nii.gz", labels.astype(np.uint8))
    write_nifti(folder / "b.nii.gz", image[::-1].copy())
    (folder / "notes.txt").write_text("not a volume")
    return folder, labels


def test_plain_folder_pairs_images_with_their_label_files(tmp_path):
    folder, labels = plain_folder(tmp_path)
    layers = read_folder_layers(folder)
    names = [(kwargs["name"], kind) for _, kwargs, kind in layers]
    assert names == [("a", "image"), ("a labels", "labels"), ("b", "image"), ("b labels", "labels")]
    a_labels, b_labels = layers[1][0], layers[3][0]
    assert np.array_equal(a_labels, np.transpose(labels, (2, 1, 0)))  # layer order (Z, Y, X)
    assert a_labels.dtype == np.uint8 and not b_labels.any()  # b: an empty layer to paint on
    assert b_labels.shape == layers[2][0].shape
    for _, kwargs, kind in layers:
        assert kwargs["scale"] == (2.0, 1.0, 1.0)
        if kind == "image":
            assert kwargs["metadata"][PROJECT_KEY] == str(folder)


def test_msd_folder_gives_unlabelled_cases_empty_labels_and_names_classes(tmp_path):
    root = tmp_path / "Task01"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    image, labels = synthetic_case()
    write_nifti(root / "imagesTr" / "c1_0000.nii.gz", image)
    write_nifti(root / "imagesTr" / "c2_0000.nii.gz", image)
    write_nifti(root / "labelsTr" / "c1.nii.gz", labels.astype(np.uint8))
    (root / "dataset.json").write_text(
        json.dumps({"name": "t", "labels": {"0": "background", "1": "organ", "2": "blob"}})
    )
    layers = read_folder_layers(root)
    assert [kwargs["name"] for _, kwargs, _ in layers] == [
        "c1_0000",
        labels_layer_name("c1_0000"),
        "c2_0000",
        labels_layer_name("c2_0000"),
    ]
    assert layers[1][0].max() == 2 and not layers[3][0].any()
    assert layers[1][1]["metadata"]["ssseg_class_names"] == {1: "organ", 2: "blob"}


def test_reader_hook_takes_only_folders_with_volumes(tmp_path, case_files):
    folder, _ = plain_folder(tmp_path)
    assert get_folder_reader(str(folder)) is not None
    assert get_folder_reader(str(case_files[0])) is None  # a file: the NIfTI reader's job
    empty = tmp_path / "empty"
    empty.mkdir()
    assert get_folder_reader(str(empty)) is None
    with pytest.raises(InputError, match="holds no"):
        read_folder_layers(empty)


def test_label_file_on_another_grid_is_refused_naming_it(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    image, labels = synthetic_case()
    write_nifti(folder / "a.nii.gz", image)
    write_nifti(folder / "a_labels.nii.gz", labels[:, :, :8].astype(np.uint8))
    with pytest.raises(InputError, match="a_labels"):
        read_folder_layers(folder)


@pytest.mark.gui
def test_napari_opens_a_folder_as_a_project(make_napari_viewer, tmp_path):
    pytest.importorskip("napari")
    folder, _ = plain_folder(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="napari-ssseg")
    assert [layer.name for layer in viewer.layers] == ["a", "a labels", "b", "b labels"]
