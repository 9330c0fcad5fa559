"""Tests for NIfTI reading/writing, the MSD folder reader and the bundled sample data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_ssseg import sample_data
from napari_ssseg.errors import InputError
from napari_ssseg.io import nifti
from napari_ssseg.io.msd import MsdDataset, read_msd
from napari_ssseg.io.nifti import read_labels, read_volume, write_image, write_labels
from napari_ssseg.io.volume import Volume

SHAPE = (12, 9, 5)


def shared_data_dir() -> Path:
    """``../shared/data`` next to the repository, or ``$SSSEG_SHARED_DATA``."""
    env = os.environ.get("SSSEG_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def oblique_affine() -> np.ndarray:
    """Rotation about two axes, anisotropic spacing (0.8, 1.1, 3.0) mm and a translation."""
    a, b = 0.3, 0.2
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.8, 1.1, 3.0])
    affine[:3, 3] = [-12.5, 30.25, 7.0]
    return affine


def save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, oblique_affine() if affine is None else affine), str(path))
    return path


@pytest.fixture
def source(tmp_path: Path) -> Volume:
    """A scaled int16 image (like the shared data) on an oblique, anisotropic grid."""
    rng = np.random.default_rng(0)
    values = rng.uniform(-1000, 1000, SHAPE)
    img = nib.Nifti1Image(values, oblique_affine())
    img.set_data_dtype(np.int16)  # nibabel stores scaled ints with scl_slope/inter
    path = tmp_path / "src" / "image.nii.gz"
    path.parent.mkdir()
    nib.save(img, str(path))
    return read_volume(path)


# --------------------------------------------------------------------------- round trips


def test_read_volume_keeps_geometry(source: Volume) -> None:
    assert source.data.dtype == np.float32
    assert source.shape == SHAPE
    np.testing.assert_allclose(source.affine, oblique_affine(), atol=1e-5)
    np.testing.assert_allclose(source.spacing, (0.8, 1.1, 3.0), rtol=1e-6)
    assert source.name == "image"
    assert nib.load(str(source.path)).dataobj.slope != 1.0  # the fixture really is scaled


@pytest.mark.parametrize("high, disk_dtype", [(7, np.uint8), (300, np.int16)])
def test_labels_round_trip_exact(
    source: Volume, tmp_path: Path, high: int, disk_dtype: type
) -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, high + 1, SHAPE).astype(np.int32)
    labels[0, 0, 0] = high
    out = write_labels(tmp_path / "labels.nii.gz", labels, like=source)
    assert out == tmp_path / "labels.nii.gz"

    img = nib.load(str(out))
    assert img.get_data_dtype() == disk_dtype
    assert img.shape == SHAPE
    np.testing.assert_array_equal(img.affine, source.affine)
    assert img.header.get_zooms() == source.header.get_zooms()[:3]
    assert int(img.header["sform_code"]) == int(source.header["sform_code"])
    assert int(img.header["qform_code"]) == int(source.header["qform_code"])
    np.testing.assert_array_equal(np.asarray(img.dataobj), labels)

    back = read_labels(out, like=source)
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, labels)
    assert sorted(os.listdir(tmp_path)) == ["labels.nii.gz", "src"]  # no temp file left


def test_image_round_trip_exact(source: Volume, tmp_path: Path) -> None:
    data = np.random.default_rng(2).normal(size=SHAPE).astype(np.float32)
    out = write_image(tmp_path / "uncertainty.nii.gz", data, like=source)
    img = nib.load(str(out))
    assert img.get_data_dtype() == np.float32
    back = read_volume(out)
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_array_equal(back.affine, source.affine)
    assert back.header.get_zooms() == source.header.get_zooms()[:3]


def test_write_without_header_then_round_trip(tmp_path: Path) -> None:
    affine = oblique_affine()
    labels = np.zeros(SHAPE, np.int16)
    labels[2:5, 3:6, 1:3] = 2
    first = write_labels(tmp_path / "a.nii", labels, Volume(labels, affine))
    read_back = read_volume(first)
    np.testing.assert_allclose(read_back.affine, affine, atol=1e-5)  # float32 in the file
    second = write_labels(tmp_path / "b.nii.gz", labels, read_back)
    np.testing.assert_array_equal(nib.load(str(second)).affine, read_back.affine)
    np.testing.assert_array_equal(read_labels(second, like=read_back), labels)


def test_4d_with_singleton_axis_is_squeezed(tmp_path: Path) -> None:
    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape((*SHAPE, 1))
    volume = read_volume(save(tmp_path / "four.nii.gz", data))
    assert volume.shape == SHAPE
    np.testing.assert_array_equal(volume.data, data[..., 0])


def test_write_rejects_wrong_shape_and_values(source: Volume, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\(12, 9, 4\) differs from the image grid"):
        write_labels(tmp_path / "x.nii.gz", np.zeros((12, 9, 4), np.uint8), like=source)
    with pytest.raises(InputError, match="0..32767"):
        write_labels(tmp_path / "x.nii.gz", np.full(SHAPE, -1), like=source)
    with pytest.raises(InputError, match="non-integer"):
        write_labels(tmp_path / "x.nii.gz", np.full(SHAPE, 0.5), like=source)
    with pytest.raises(InputError, match=r"\.nii or \.nii\.gz"):
        write_labels(tmp_path / "x.tif", np.zeros(SHAPE, np.uint8), like=source)
    assert sorted(os.listdir(tmp_path)) == ["src"]


# --------------------------------------------------------------------------- bad inputs


def _truncated(tmp_path: Path) -> Path:
    good = save(tmp_path / "good.nii.gz", np.random.default_rng(3).normal(size=(20, 20, 20)))
    blob = good.read_bytes()
    bad = tmp_path / "truncated.nii.gz"
    bad.write_bytes(blob[: len(blob) // 2])
    return bad


def _singular(tmp_path: Path) -> Path:
    affine = oblique_affine()
    affine[:3, 2] = 0.0
    img = nib.Nifti1Image(np.ones(SHAPE, np.float32), None)
    img.header.set_sform(affine, code=1)
    path = tmp_path / "singular.nii.gz"
    nib.save(img, str(path))
    return path


def _nan(tmp_path: Path) -> Path:
    data = np.ones(SHAPE, np.float32)
    data[0, 0, :3] = np.nan
    data[1, 1, 1] = np.inf
    return save(tmp_path / "nan.nii.gz", data)


def _make_bad(kind: str, tmp_path: Path) -> Path:
    if kind == "missing":
        return tmp_path / "missing.nii.gz"
    if kind == "directory":
        (tmp_path / "folder.nii.gz").mkdir()
        return tmp_path / "folder.nii.gz"
    if kind == "empty":
        (tmp_path / "empty.nii.gz").touch()
        return tmp_path / "empty.nii.gz"
    if kind == "text":
        (tmp_path / "text.nii.gz").write_text("this is not an image\n")
        return tmp_path / "text.nii.gz"
    if kind == "truncated":
        return _truncated(tmp_path)
    if kind == "2d":
        return save(tmp_path / "flat.nii.gz", np.zeros((8, 8), np.float32))
    if kind == "4d":
        return save(tmp_path / "time.nii.gz", np.zeros((*SHAPE, 3), np.float32))
    if kind == "5d":
        return save(tmp_path / "five.nii.gz", np.zeros((*SHAPE, 1, 2), np.float32))
    if kind == "nan":
        return _nan(tmp_path)
    if kind == "complex":
        return save(tmp_path / "complex.nii.gz", np.zeros(SHAPE, np.complex64))
    if kind == "zero":
        return save(tmp_path / "zero.nii.gz", np.zeros((4, 0, 3), np.float32))
    if kind == "singular":
        return _singular(tmp_path)
    if kind == "suffix":
        path = save(tmp_path / "image.nii.gz", np.zeros(SHAPE, np.float32))
        return path.rename(tmp_path / "image.mgz")
    raise AssertionError(kind)


BAD_CASES = {
    "missing": "does not exist",
    "directory": "is a folder",
    "empty": "is empty",
    "text": "is not a readable NIfTI file",
    "truncated": "is not a readable NIfTI file",
    "2d": r"2-D image of shape \(8, 8\); a 3-D volume is needed",
    "4d": r"4-D image of shape \(12, 9, 5, 3\); a 3-D volume is needed",
    "5d": r"5-D image of shape \(12, 9, 5, 1, 2\)",
    "nan": r"4 non-finite voxels \(3 NaN, 1 Inf\)",
    "complex": "complex",
    "zero": "empty axis",
    "singular": "singular",
    "suffix": r"must end in \.nii or \.nii\.gz",
}


@pytest.mark.parametrize("kind", sorted(BAD_CASES))
def test_read_volume_bad_input(kind: str, tmp_path: Path) -> None:
    path = _make_bad(kind, tmp_path)
    with pytest.raises(InputError, match=BAD_CASES[kind]) as info:
        read_volume(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "\n" not in message
    # read_labels applies the same checks
    with pytest.raises(InputError, match=BAD_CASES[kind]):
        read_labels(path)


# --------------------------------------------------------------------------- read_labels


def test_read_labels_rejects_float(tmp_path: Path) -> None:
    data = np.zeros(SHAPE, np.float32)
    data[3, 3, 3] = 0.5
    path = save(tmp_path / "float_seg.nii.gz", data)
    with pytest.raises(InputError, match="non-integer values such as 0.5") as info:
        read_labels(path)
    assert str(info.value).startswith(str(path))


def test_read_labels_accepts_whole_floats(tmp_path: Path) -> None:
    data = np.zeros(SHAPE, np.float32)
    data[1:3, 1:3, 1:3] = 4.0
    labels = read_labels(save(tmp_path / "seg.nii.gz", data))
    assert labels.dtype == np.int16
    np.testing.assert_array_equal(labels, data.astype(np.int16))


def test_read_labels_rejects_negative_and_large(tmp_path: Path) -> None:
    data = np.zeros(SHAPE, np.int16)
    data[0, 0, 0] = -2
    with pytest.raises(InputError, match="negative"):
        read_labels(save(tmp_path / "neg.nii.gz", data))
    big = np.zeros(SHAPE, np.int32)
    big[0, 0, 0] = 40000
    with pytest.raises(InputError, match="above 32767"):
        read_labels(save(tmp_path / "big.nii.gz", big))


def test_read_labels_checks_grid(source: Volume, tmp_path: Path) -> None:
    other_shape = save(tmp_path / "shape.nii.gz", np.zeros((12, 9, 6), np.uint8), source.affine)
    with pytest.raises(
        InputError, match=r"label grid \(12, 9, 6\) differs from the image grid \(12, 9, 5\)"
    ) as info:
        read_labels(other_shape, like=source)
    assert str(info.value).startswith(str(other_shape))

    shifted = source.affine.copy()
    shifted[0, 3] += 0.01
    moved = save(tmp_path / "moved.nii.gz", np.zeros(SHAPE, np.uint8), shifted)
    with pytest.raises(InputError, match="affine differs from the image affine by up to 0.01"):
        read_labels(moved, like=source)

    nudged = source.affine.copy()
    nudged[0, 3] += 1e-4
    ok = save(tmp_path / "ok.nii.gz", np.ones(SHAPE, np.uint8), nudged)
    assert read_labels(ok, like=source).sum() == np.prod(SHAPE)


# --------------------------------------------------------------------------- atomic writes


def test_write_into_missing_folder(source: Volume, tmp_path: Path) -> None:
    folder = tmp_path / "nowhere"
    with pytest.raises(InputError, match="does not exist") as info:
        write_labels(folder / "x.nii.gz", np.zeros(SHAPE, np.uint8), like=source)
    assert str(folder) in str(info.value)
    assert not folder.exists()


def test_write_into_read_only_folder(source: Volume, tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("permissions are not enforced for this user (root)")
        with pytest.raises(InputError, match="not writable") as info:
            write_image(folder / "x.nii.gz", np.zeros(SHAPE, np.float32), like=source)
        assert str(folder) in str(info.value)
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o755)


def test_failed_write_leaves_no_temp_file(
    source: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "labels.nii.gz"
    target.write_bytes(b"previous result")

    def failing_save(img: nib.Nifti1Image, filename: str) -> None:
        Path(filename).write_bytes(b"half a file")
        raise PermissionError(13, "Permission denied", filename)

    monkeypatch.setattr(nifti.nib, "save", failing_save)
    with pytest.raises(InputError, match="could not write") as info:
        write_labels(target, np.zeros(SHAPE, np.uint8), like=source)
    assert str(info.value).startswith(str(target))
    assert sorted(os.listdir(tmp_path)) == ["labels.nii.gz", "src"]
    assert target.read_bytes() == b"previous result"  # the old file is untouched


def test_temp_file_keeps_nifti_suffix(
    source: Volume, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real_save = nib.save

    def spy(img: nib.Nifti1Image, filename: str) -> None:
        seen.append(str(filename))
        real_save(img, filename)

    monkeypatch.setattr(nifti.nib, "save", spy)
    write_labels(tmp_path / "x.nii.gz", np.zeros(SHAPE, np.uint8), like=source)
    write_labels(tmp_path / "y.nii", np.zeros(SHAPE, np.uint8), like=source)
    assert seen[0].endswith(".nii.gz") and Path(seen[0]).parent == tmp_path
    assert seen[1].endswith(".nii") and not seen[1].endswith(".nii.gz")
    assert (tmp_path / "x.nii.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip magic


# --------------------------------------------------------------------------- MSD layout


def _tiny(path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), str(path))


def _msd(root: Path, meta: dict | str, images: list[str], labels: list[str]) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    text = meta if isinstance(meta, str) else json.dumps(meta)
    (root / "dataset.json").write_text(text)
    for name in images:
        _tiny(root / "imagesTr" / name)
    for name in labels:
        _tiny(root / "labelsTr" / name)
    return root


def test_msd_with_splits_and_nnunet_names(tmp_path: Path) -> None:
    meta = {
        "name": "Toy",
        "labels": {"0": "background", "1": "organ", "2": "tumour"},
        "splits": {"train": ["c", "a"], "val": ["b"]},
    }
    root = _msd(
        tmp_path / "toy",
        meta,
        images=["a_0000.nii.gz", "b_0000.nii.gz", "c_0000.nii.gz", "c_0001.nii.gz"],
        labels=["a.nii.gz", "b.nii.gz"],
    )
    (root / "imagesTr" / "._a_0000.nii.gz").write_bytes(b"macOS junk")
    ds = read_msd(root)
    assert isinstance(ds, MsdDataset)
    assert ds.name == "Toy" and ds.root == root
    assert ds.labels == {0: "background", 1: "organ", 2: "tumour"}
    assert [c.name for c in ds.cases] == ["a", "b", "c"]
    by_name = {c.name: c for c in ds.cases}
    assert by_name["a"].image == root / "imagesTr" / "a_0000.nii.gz"
    assert by_name["a"].label == root / "labelsTr" / "a.nii.gz"
    assert by_name["c"].label is None  # unlabelled case
    assert [c.name for c in ds.split("train")] == ["c", "a"]
    assert [c.name for c in ds.split("val")] == ["b"]
    assert [c.name for c in ds.split(None)] == ["a", "b", "c"]
    with pytest.raises(InputError, match="available splits: train, val"):
        ds.split("test")


def test_msd_without_splits(tmp_path: Path) -> None:
    meta = {"labels": {"background": 0, "liver": 1}}  # nnU-Net v2 style
    root = _msd(tmp_path / "plain", meta, ["x.nii.gz", "y.nii"], ["x.nii.gz"])
    ds = read_msd(root)
    assert ds.name == "plain"
    assert ds.splits == {}
    assert ds.labels == {0: "background", 1: "liver"}
    assert [(c.name, c.label is not None) for c in ds.split(None)] == [("x", True), ("y", False)]
    with pytest.raises(InputError, match="available splits: none"):
        ds.split("train")


@pytest.mark.parametrize("bad", ["../escape", "sub/case", "sub\\case", ".."])
def test_msd_rejects_path_traversal(tmp_path: Path, bad: str) -> None:
    root = _msd(tmp_path / "evil", {"splits": {"train": [bad]}}, ["a.nii.gz"], [])
    with pytest.raises(InputError, match="not allowed") as info:
        read_msd(root)
    assert str(root / "dataset.json") in str(info.value)


def test_msd_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_msd(tmp_path / "absent")
    bad_json = _msd(tmp_path / "badjson", "{not json", ["a.nii.gz"], [])
    with pytest.raises(InputError, match="is not valid JSON") as info:
        read_msd(bad_json)
    assert str(info.value).startswith(str(bad_json / "dataset.json"))
    no_images = tmp_path / "noimages"
    no_images.mkdir()
    (no_images / "dataset.json").write_text("{}")
    with pytest.raises(InputError, match="imagesTr") as info:
        read_msd(no_images)
    assert str(no_images / "imagesTr") in str(info.value)
    unknown = _msd(tmp_path / "unknown", {"splits": {"train": ["zz"]}}, ["a.nii.gz"], [])
    with pytest.raises(InputError, match="no image in imagesTr: zz"):
        read_msd(unknown)


@pytest.mark.shared_data
def test_msd_real_la() -> None:
    root = shared_data_dir() / "LA"
    if not root.is_dir():
        pytest.skip(f"../shared/data/LA not found: {root} is absent (set SSSEG_SHARED_DATA)")
    ds = read_msd(root)
    assert ds.labels[1] == "left atrium"
    assert len(ds.split("train")) == len(ds.splits["train"]) > 0
    case = ds.split("train")[0]
    assert case.label is not None
    volume = read_volume(case.image)
    labels = read_labels(case.label, like=volume)
    assert labels.shape == volume.shape
    assert set(np.unique(labels)) <= {0, 1}


# --------------------------------------------------------------------------- sample data


def test_sample_ct_labels_match_image() -> None:
    case = sample_data.load_sample("ct")
    assert case.key == "ct"
    assert case.class_names[5] == "liver"
    volume = read_volume(case.image)
    labels = read_labels(case.labels, like=volume)
    assert labels.shape == volume.shape == (122, 101, 30)
    assert set(np.unique(labels)) - {0} <= set(case.class_names)
    assert set(sample_data.SAMPLES) == {"ct", "mr"}
    assert sample_data.SAMPLES["mr"].labels.name == "example_seg_mr.nii.gz"


def test_sample_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="available samples: ct, mr"):
        sample_data.load_sample("pet")
    monkeypatch.setattr(sample_data, "_SAMPLE_DIR", tmp_path / "gone")
    with pytest.raises(InputError, match="does not exist"):
        sample_data.sample_dir()
