"""Tests for the npe2 reader, writer, sample data and manifest (no viewer needed)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_ssseg import napari_io
from napari_ssseg.errors import InputError
from napari_ssseg.io.nifti import read_labels, read_volume

SHAPE = (10, 7, 4)  # (X, Y, Z)
SPACING = (0.7, 1.3, 4.0)
MANIFEST = Path(napari_io.__file__).with_name("napari.yaml")


def _affine() -> np.ndarray:
    angle = 0.4
    rot = np.array(
        [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(SPACING)
    affine[:3, 3] = [5.0, -20.0, 33.5]
    return affine


def _save(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, _affine()), str(path))
    return path


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:6, 1:4, 1] = 1
    labels[7:9, 5:7, 2:4] = 3
    return labels


def test_get_reader_accepts_only_single_nifti_paths(tmp_path: Path) -> None:
    assert napari_io.get_reader("scan.tif") is None
    assert napari_io.get_reader(["a.nii.gz", "b.nii.gz"]) is None
    assert napari_io.get_reader(str(tmp_path)) is None
    assert callable(napari_io.get_reader("scan.nii"))
    assert callable(napari_io.get_reader(["scan.NII.GZ"]))


def test_reader_gives_transposed_image(tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    path = _save(tmp_path / "scan.nii.gz", data)
    reader = napari_io.get_reader(str(path))
    assert reader is not None
    layers = reader(str(path))
    assert len(layers) == 1
    layer_data, kwargs, layer_type = layers[0]
    assert layer_type == "image"
    assert layer_data.shape == SHAPE[::-1]
    np.testing.assert_array_equal(layer_data, np.transpose(data, (2, 1, 0)))
    np.testing.assert_allclose(kwargs["scale"], SPACING[::-1], rtol=1e-6)
    assert kwargs["name"] == "scan"
    meta = kwargs["metadata"]
    assert meta["ssseg_axes"] == "zyx"
    assert meta["ssseg_path"] == str(path)
    np.testing.assert_array_equal(np.array(meta["ssseg_affine"]), read_volume(path).affine)


def test_reader_detects_labels(tmp_path: Path) -> None:
    labels = _labels()
    seg = _save(tmp_path / "case_seg.nii.gz", labels)
    layer_data, _, layer_type = napari_io.get_reader(str(seg))(str(seg))[0]
    assert layer_type == "labels"
    assert layer_data.dtype.kind in "iu"
    np.testing.assert_array_equal(layer_data, np.transpose(labels, (2, 1, 0)))
    # same integers without 'seg'/'label' in the name: an image
    plain = _save(tmp_path / "case.nii.gz", labels)
    assert napari_io.get_reader(str(plain))(str(plain))[0][2] == "image"
    # float on disk: an image, even when named like labels
    floats = _save(tmp_path / "float_label.nii.gz", labels.astype(np.float32))
    assert napari_io.get_reader(str(floats))(str(floats))[0][2] == "image"


def test_reader_errors_propagate(tmp_path: Path) -> None:
    bad = tmp_path / "broken.nii.gz"
    bad.write_text("not an image")
    reader = napari_io.get_reader(str(bad))
    with pytest.raises(InputError, match="broken.nii.gz is not a readable NIfTI file"):
        reader(str(bad))


def test_layer_convention_is_invertible(tmp_path: Path) -> None:
    volume = read_volume(
        _save(tmp_path / "v.nii.gz", np.arange(280, dtype=np.float32).reshape(SHAPE))
    )
    layer = napari_io.volume_layer_data(volume)
    assert layer.shape == (4, 7, 10)
    assert layer[3, 2, 1] == volume.data[1, 2, 3]
    np.testing.assert_array_equal(napari_io.layer_to_volume_array(layer), volume.data)
    with pytest.raises(InputError, match="3-D"):
        napari_io.layer_to_volume_array(np.zeros((2, 2)))


def test_writer_round_trip(tmp_path: Path) -> None:
    labels = _labels()
    source = _save(tmp_path / "image.nii.gz", labels.astype(np.float32) * 10)
    image_layer = napari_io.get_reader(str(source))(str(source))[0]
    painted = np.transpose(labels, (2, 1, 0))  # what the user painted, in layer order
    meta = {
        "name": "painted",
        "scale": image_layer[1]["scale"],
        "metadata": image_layer[1]["metadata"],
    }

    written = napari_io.write_labels_layer(str(tmp_path / "painted"), painted, meta)
    assert written == [str(tmp_path / "painted.nii.gz")]
    img = nib.load(written[0])
    np.testing.assert_array_equal(img.affine, read_volume(source).affine)
    np.testing.assert_array_equal(np.asarray(img.dataobj), labels)
    np.testing.assert_array_equal(read_labels(written[0], like=read_volume(source)), labels)

    again = napari_io.write_labels_layer(str(tmp_path / "keep.nii"), painted, meta)
    assert again == [str(tmp_path / "keep.nii")]


def test_writer_without_affine_uses_scale(tmp_path: Path) -> None:
    painted = np.transpose(_labels(), (2, 1, 0))
    meta = {"scale": SPACING[::-1], "metadata": {}}
    (out,) = napari_io.write_labels_layer(str(tmp_path / "bare.nii.gz"), painted, meta)
    img = nib.load(out)
    np.testing.assert_allclose(img.affine, np.diag([*SPACING, 1.0]), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(img.dataobj), _labels())


@pytest.mark.parametrize(
    "make, shape", [(napari_io.make_sample_ct, (30, 101, 122)), (napari_io.make_sample_mr, None)]
)
def test_sample_layers(make: Callable[[], list], shape: tuple[int, int, int] | None) -> None:
    (image, image_kwargs, image_type), (labels, label_kwargs, label_type) = make()
    assert (image_type, label_type) == ("image", "labels")
    assert image.shape == labels.shape
    if shape is not None:
        assert image.shape == shape
    assert labels.dtype.kind in "iu" and labels.max() > 0
    assert label_kwargs["name"] == f"{image_kwargs['name']} reference labels"
    assert label_kwargs["scale"] == image_kwargs["scale"]
    assert label_kwargs["metadata"]["ssseg_affine"] == image_kwargs["metadata"]["ssseg_affine"]


def test_manifest_parses() -> None:
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-ssseg"
    contributions = manifest.contributions
    files, folders = contributions.readers
    assert set(files.filename_patterns) == {"*.nii", "*.nii.gz"}
    assert files.accepts_directories is False
    assert folders.command == "napari-ssseg.get_folder_reader" and folders.accepts_directories
    (writer,) = contributions.writers
    assert [str(t) for t in writer.layer_types] == ["labels"]
    assert {s.key: s.display_name for s in contributions.sample_data} == {
        "ct": "Abdominal CT (TotalSegmentator sample)",
        "mr": "Abdominal MR (TotalSegmentator sample)",
    }
    (widget,) = contributions.widgets
    assert widget.display_name == "Few-slice segmentation"
    for command in contributions.commands:
        module, attr = command.python_name.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.python_name
