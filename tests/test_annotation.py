import numpy as np
import pytest

from napari_ssseg.annotation import (
    AnnotatedVolume,
    Project,
    default_slice_axis,
    infer_class_names,
)
from napari_ssseg.errors import AnnotationError
from napari_ssseg.io.volume import Volume


def make_volume(shape=(8, 6, 5), spacing=(1.0, 1.0, 3.0)) -> Volume:
    return Volume(np.zeros(shape, np.float32), np.diag([*spacing, 1.0]))


@pytest.mark.parametrize(
    ("spacing", "axis"),
    [
        ((1.5, 1.5, 10.0), 2),
        ((0.6, 0.6, 0.6), 2),
        ((5.0, 1.0, 1.0), 0),
        ((2.0, 2.0, 1.0), 1),
        ((1.0, 3.0, 3.0), 2),
    ],
)
def test_default_axis_is_largest_spacing_ties_to_last(spacing, axis):
    assert default_slice_axis(spacing) == axis


def test_painted_slices_count_as_annotated():
    labels = np.zeros((8, 6, 5), np.int16)
    labels[2, 3, 1] = 1
    labels[:, :, 3] = 2
    volume = AnnotatedVolume.from_labels(make_volume(), labels)
    assert volume.axis == 2
    assert volume.annotated_slices == [1, 3]
    assert volume.unannotated_slices == [0, 2, 4]


def test_mark_and_unmark_empty_slice():
    labels = np.zeros((8, 6, 5), np.int16)
    labels[:, :, 3] = 1
    volume = AnnotatedVolume.from_labels(make_volume(), labels)
    volume.mark_empty(0)
    assert volume.annotated_slices == [0, 3]
    volume.unmark(0)
    volume.unmark(3)  # painted slices stay annotated
    assert volume.annotated_slices == [3]
    with pytest.raises(AnnotationError, match="slice 9 is out of range"):
        volume.mark_empty(9)


def test_explicit_slices_ignore_labels_elsewhere_and_mark_empty_ones():
    labels = np.zeros((8, 6, 5), np.int16)
    labels[:, :, 1] = 1
    labels[:, :, 2] = 1
    volume = AnnotatedVolume.from_labels(make_volume(), labels, annotated_slices=[1, 4])
    assert volume.annotated_slices == [1, 4]
    assert volume.marked_empty == {4}
    assert not volume.labels[:, :, 2].any()  # not listed: ignored
    assert labels[:, :, 2].all()  # the caller's array is untouched


def test_axis_other_than_last():
    labels = np.zeros((8, 6, 5), np.int16)
    labels[5] = 1
    volume = AnnotatedVolume.from_labels(make_volume(), labels, axis=0)
    assert volume.annotated_slices == [5]
    assert volume.num_slices == 8


def test_unlabelled_volume_has_no_annotated_slice():
    volume = AnnotatedVolume.unlabelled(make_volume())
    assert volume.annotated_slices == []
    assert volume.unannotated_slices == list(range(5))


def test_grid_mismatch_is_refused():
    with pytest.raises(AnnotationError, match=r"label grid \(8, 6, 4\) differs"):
        AnnotatedVolume.from_labels(make_volume(), np.zeros((8, 6, 4), np.int16))


def test_project_validation_messages():
    labels = np.zeros((8, 6, 5), np.int16)
    labels[:, :, 2] = 3
    volume = AnnotatedVolume.from_labels(make_volume(), labels)
    with pytest.raises(AnnotationError, match=r"label values \[3\] are outside the class set 0..2"):
        Project([volume], ["a", "b"]).validate()
    Project([volume], ["a", "b", "c"]).validate()
    empty = AnnotatedVolume.unlabelled(make_volume())
    with pytest.raises(AnnotationError, match="no annotated slice"):
        Project([empty], ["a"]).validate()
    empty.mark_empty(0)
    Project([empty], ["a"]).validate()  # annotated-but-empty is an annotation


def test_infer_class_names_from_largest_label():
    labels = np.zeros((8, 6, 5), np.int16)
    labels[0, 0, 0] = 3
    names = infer_class_names([AnnotatedVolume.from_labels(make_volume(), labels)])
    assert names == ["class 1", "class 2", "class 3"]
