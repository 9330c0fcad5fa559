"""Benchmark protocol (slice choice, reveal, case split) and metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_ssseg.bench.metrics import dice_per_class, mean_dice, summarise
from napari_ssseg.bench.protocols import (
    acdc_patient,
    cases_split,
    reveal_slices,
    sparse_slice_indices,
)
from napari_ssseg.errors import AnnotationError, InputError


def slab(depth: int, first: int, last: int, axis: int = 2, value: int = 1) -> np.ndarray:
    """(4, 4, 4) volume with ``depth`` along ``axis``, foreground on slices first..last."""
    shape = [4, 4, 4]
    shape[axis] = depth
    labels = np.zeros(shape, dtype=np.int16)
    index: list[slice] = [slice(None)] * 3
    index[axis] = slice(first, last + 1)
    labels[tuple(index)] = value
    return labels


@pytest.mark.parametrize(
    ("first", "last", "k", "expected"),
    [
        (10, 29, 2, [15, 25]),  # n = 20: 10 + floor(20 / 4), 10 + floor(60 / 4)
        (0, 9, 5, [1, 3, 5, 7, 9]),  # n = 10: floor((2i + 1) * 10 / 10)
        (3, 9, 3, [4, 6, 8]),  # n = 7: 3 + floor(7/6), 3 + floor(21/6), 3 + floor(35/6)
        (5, 5, 1, [5]),
        (2, 4, 5, [2, 3, 4]),  # k > n: every foreground slice
        (0, 0, 3, [0]),
    ],
)
def test_sparse_slice_indices_hand_computed(
    first: int, last: int, k: int, expected: list[int]
) -> None:
    assert sparse_slice_indices(slab(40, first, last), axis=2, k=k) == expected


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_sparse_slice_indices_follow_axis_and_all_classes(axis: int) -> None:
    labels = slab(30, 10, 19, axis=axis, value=2)
    index: list[slice | int] = [slice(None)] * 3
    index[axis] = 29
    labels[tuple(index)] = 3  # another class widens the extent to 10..29
    assert sparse_slice_indices(labels, axis=axis, k=2) == [15, 25]


def test_sparse_slice_indices_errors() -> None:
    with pytest.raises(AnnotationError):
        sparse_slice_indices(np.zeros((4, 4, 4), dtype=np.int16), axis=2, k=1)
    with pytest.raises(AnnotationError):
        sparse_slice_indices(slab(8, 1, 5), axis=2, k=0)
    with pytest.raises(InputError):
        sparse_slice_indices(slab(8, 1, 5), axis=3, k=1)


def test_reveal_slices_zeroes_everything_else() -> None:
    labels = np.random.default_rng(0).integers(1, 4, size=(5, 6, 7)).astype(np.int16)
    revealed = reveal_slices(labels, [4, 1], axis=1)
    np.testing.assert_array_equal(revealed[:, [1, 4], :], labels[:, [1, 4], :])
    assert not revealed[:, [0, 2, 3, 5], :].any()
    assert revealed.dtype == labels.dtype
    revealed[:, 1, :] = 0
    assert labels[:, 1, :].all()  # a copy, not a view
    with pytest.raises(AnnotationError):
        reveal_slices(labels, [6], axis=1)


def test_acdc_patient() -> None:
    assert acdc_patient("patient099_frame01") == "patient099"
    assert acdc_patient("patient099_frame12_gt") == "patient099"
    assert acdc_patient("la_007") == "la_007"


def test_cases_split_groups_acdc_frames() -> None:
    names = [
        "patient003_frame01",
        "patient001_frame01",
        "patient003_frame15",
        "patient002_frame01",
        "patient001_frame12",
    ]
    labelled, unlabelled = cases_split(names, 2, acdc_patient)
    assert labelled == [
        "patient003_frame01",
        "patient001_frame01",
        "patient003_frame15",
        "patient001_frame12",
    ]
    assert unlabelled == ["patient002_frame01"]
    assert cases_split(names, 0, acdc_patient) == ([], names)
    assert cases_split(["a", "b", "c"], 1, lambda name: name) == (["a"], ["b", "c"])
    with pytest.raises(AnnotationError):
        cases_split(names, 4, acdc_patient)


def test_dice_hand_computed() -> None:
    pred = np.zeros((3, 3, 2), dtype=np.int16)
    ref = np.zeros_like(pred)
    pred[0, 0:3, 0] = 1  # 3 voxels
    ref[0, 1:3, 0] = 1
    ref[1, 0, 0] = 1  # 3 voxels, 2 shared with pred
    pred[2, :, 1] = 2
    ref[2, :2, 1] = 2  # 3 vs 2 voxels, 2 shared
    dice = dice_per_class(pred, ref, num_classes=2)
    assert dice.shape == (2,)
    np.testing.assert_allclose(dice, [2 * 2 / 6, 2 * 2 / 5], rtol=1e-6)
    assert mean_dice(dice) == pytest.approx((4 / 6 + 4 / 5) / 2, rel=1e-6)


def test_dice_excludes_slices_along_axis() -> None:
    ref = np.zeros((4, 4, 4), dtype=np.int16)
    ref[:, :, :2] = 1
    pred = ref.copy()
    pred[1, :, :] = 0  # errors only on slice 1 along axis 0
    perfect = dice_per_class(pred, ref, 1, exclude_slices=[1], axis=0)
    np.testing.assert_allclose(perfect, [1.0])
    scored = dice_per_class(pred, ref, 1, exclude_slices=[0], axis=0)
    np.testing.assert_allclose(scored, [2 * 16 / (16 + 24)], rtol=1e-6)
    assert dice_per_class(pred, ref, 1, axis=0)[0] < 1.0


def test_dice_empty_reference_class_is_nan() -> None:
    ref = np.zeros((3, 3, 3), dtype=np.int16)
    ref[0, 0, 0] = 1
    ref[2, 2, 2] = 2  # class 2 only on the excluded slice
    pred = ref.copy()
    pred[1, 1, 1] = 3  # class 3 predicted but absent from the reference
    dice = dice_per_class(pred, ref, 3, exclude_slices=[2], axis=2)
    assert dice[0] == pytest.approx(1.0)
    assert np.isnan(dice[1]) and np.isnan(dice[2])
    assert mean_dice(dice) == pytest.approx(1.0)
    assert math.isnan(mean_dice(np.array([np.nan, np.nan])))


def test_dice_bad_inputs() -> None:
    volume = np.zeros((2, 2, 2), dtype=np.int16)
    with pytest.raises(InputError):
        dice_per_class(volume, np.zeros((2, 2, 3), dtype=np.int16), 1)
    with pytest.raises(InputError):
        dice_per_class(volume + 2, volume, 1)
    with pytest.raises(InputError):
        dice_per_class(volume, volume, 1, exclude_slices=[0, 1])


def test_summarise_ignores_nan() -> None:
    mean, std = summarise([0.5, 0.7, float("nan")])
    assert mean == pytest.approx(0.6)
    assert std == pytest.approx(0.1)
    assert all(math.isnan(v) for v in summarise([float("nan")]))
