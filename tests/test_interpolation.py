"""Shape-based interpolation between annotated slices."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ssseg.baselines.interpolation import interpolate_between_slices
from napari_ssseg.errors import AnnotationError, InputError


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    """Boolean disc of shape ``shape``."""
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def two_discs() -> np.ndarray:
    """(64, 64, 11) labels: radius 10 on slice 0, radius 20 on slice 10, noise in between."""
    labels = np.zeros((64, 64, 11), dtype=np.int16)
    labels[..., 0][disc((64, 64), (32, 32), 10)] = 1
    labels[..., 10][disc((64, 64), (32, 32), 20)] = 1
    labels[..., 3] = 1  # unannotated content must be ignored
    return labels


def test_disc_radius_is_interpolated() -> None:
    out = interpolate_between_slices(two_discs(), [0, 10], axis=2, num_classes=1)
    expected = disc((64, 64), (32, 32), 15).sum()
    assert abs(out[..., 5].sum() - expected) / expected < 0.10
    areas = [out[..., i].sum() for i in range(11)]
    assert all(a < b for a, b in zip(areas[:-1], areas[1:], strict=True))


def test_annotated_slices_unchanged() -> None:
    labels = two_discs()
    labels[0, 0, 0] = 1  # an isolated pixel the interpolation would not reproduce
    out = interpolate_between_slices(labels, [10, 0], axis=2, num_classes=1)
    np.testing.assert_array_equal(out[..., 0], labels[..., 0])
    np.testing.assert_array_equal(out[..., 10], labels[..., 10])
    assert out.dtype == labels.dtype


def test_absent_class_shrinks_away() -> None:
    labels = np.zeros((40, 40, 9), dtype=np.int32)
    labels[..., 0][disc((40, 40), (20, 20), 12)] = 1
    out = interpolate_between_slices(labels, [0, 8], axis=2, num_classes=1)
    areas = [int(out[..., i].sum()) for i in range(9)]
    assert areas[1] > 0
    assert all(a >= b for a, b in zip(areas[:-1], areas[1:], strict=True))
    assert areas[7] < areas[1]
    assert areas[8] == 0


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_extrapolate_outside_range(axis: int) -> None:
    labels = np.zeros((12, 12, 12), dtype=np.uint8)
    index: list[slice | int] = [slice(None)] * 3
    index[axis] = 4
    labels[tuple(index)] = np.pad(np.ones((4, 4), dtype=np.uint8), 4)
    index[axis] = 7
    labels[tuple(index)] = np.pad(np.full((6, 6), 2, dtype=np.uint8), 3)
    plain = interpolate_between_slices(labels, [4, 7], axis=axis, num_classes=2)
    extra = interpolate_between_slices(labels, [4, 7], axis=axis, num_classes=2, extrapolate=True)
    outside = [0, 1, 2, 3, 8, 9, 10, 11]
    assert not np.take(plain, outside, axis=axis).any()
    for i in outside:
        nearest = 4 if i < 4 else 7
        np.testing.assert_array_equal(
            np.take(extra, i, axis=axis), np.take(labels, nearest, axis=axis)
        )
    inside = [4, 5, 6, 7]
    np.testing.assert_array_equal(
        np.take(plain, inside, axis=axis), np.take(extra, inside, axis=axis)
    )


def test_multiclass_has_no_overlap_and_keeps_sides() -> None:
    labels = np.zeros((40, 60, 7), dtype=np.int16)
    for z in (0, 6):
        labels[5:35, 5:30, z] = 1
        labels[5:35, 30:55, z] = 2
    labels[5:35, 5:35, 6] = 1  # class 1 grows into class 2 at the far slice
    labels[5:35, 35:55, 6] = 2
    out = interpolate_between_slices(labels, [0, 6], axis=2, num_classes=2)
    assert set(np.unique(out)) <= {0, 1, 2}
    middle = out[..., 3]
    assert (middle[20, 10:28] == 1).all()
    assert (middle[20, 37:53] == 2).all()
    # The shared border moves monotonically with position: class 1 never loses columns.
    widths = [int((out[20, :, z] == 1).sum()) for z in range(7)]
    assert widths == sorted(widths)
    assert widths[0] < widths[-1]


def test_single_annotated_slice() -> None:
    labels = np.zeros((10, 10, 5), dtype=np.int32)
    labels[2:6, 2:6, 2] = 1
    plain = interpolate_between_slices(labels, [2], axis=2, num_classes=1)
    np.testing.assert_array_equal(plain, np.where(np.arange(5) == 2, labels, 0))
    extra = interpolate_between_slices(labels, [2], axis=2, num_classes=1, extrapolate=True)
    for z in range(5):
        np.testing.assert_array_equal(extra[..., z], labels[..., 2])


def test_spacing_scales_in_plane_distances() -> None:
    labels = np.zeros((30, 30, 3), dtype=np.int32)
    labels[10:20, 10:20, 0] = 1
    labels[5:25, 10:20, 2] = 1
    out = interpolate_between_slices(labels, [0, 2], axis=2, num_classes=1, spacing=(2.0, 1.0))
    rows = np.flatnonzero(out[:, 15, 1])
    assert rows[0] in (7, 8) and rows[-1] in (21, 22)
    np.testing.assert_array_equal(np.flatnonzero(out[15, :, 1]), np.arange(10, 20))


def test_bad_inputs_raise() -> None:
    labels = np.zeros((5, 5, 5), dtype=np.int32)
    with pytest.raises(AnnotationError):
        interpolate_between_slices(labels, [], axis=2, num_classes=1)
    with pytest.raises(AnnotationError):
        interpolate_between_slices(labels, [5], axis=2, num_classes=1)
    labels[..., 1] = 3
    with pytest.raises(AnnotationError):
        interpolate_between_slices(labels, [1], axis=2, num_classes=2)
    with pytest.raises(InputError):
        interpolate_between_slices(labels[0], [1], axis=1, num_classes=3)
    with pytest.raises(InputError):
        interpolate_between_slices(labels, [1], axis=3, num_classes=3)


def test_left_atrium_sized_volume_fills_every_gap() -> None:
    # Speed is measured by the benchmark (interp's seconds per volume), not asserted here.
    shape = (180, 140, 88)
    labels = np.zeros(shape, dtype=np.int16)
    annotated = [20, 35, 50, 60, 70]
    for z, radius in zip(annotated, [10, 25, 30, 22, 8], strict=True):
        labels[..., z][disc(shape[:2], (90, 70), radius)] = 1
    out = interpolate_between_slices(labels, annotated, axis=2, num_classes=1)
    assert out[..., 21:70].sum(axis=(0, 1)).min() > 0
