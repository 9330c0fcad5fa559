"""Teachers of unannotated slices: shape continuity against hand-built cases."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.baselines.interpolation import blended_distances
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.io.volume import Volume
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.values import merged
from napari_ssseg.training.teachers import (
    ShapeTeacher,
    TeacherSchedule,
    build_teachers,
    shape_confidence,
)
from napari_ssseg.training.teachers.shape import extent_confidence, neighbour_agreement

SMALL = {"student": {"image_size": 32, "channels": [8, 16]}}
SCHEDULE = TeacherSchedule(start=0.5, rampup=0.4)


def _config(**sections) -> TrainConfig:
    """A small student's settings with ``sections`` (settings by section) written over."""
    return TrainConfig.from_dict(merged(SMALL, sections))


def _shape_teacher(project: Project, config: TrainConfig) -> tuple[SlicePool, ShapeTeacher]:
    pool = SlicePool(project, config.student.image_size, config.student.intensity)
    return pool, ShapeTeacher(project, pool, config.shape, SCHEDULE)


def test_shape_confidence_hand_values():
    # One class; pixel values of the blended distance in mm: inside 3, inside 1, outside -4.
    maps = np.array([[[3.0, 1.0, -4.0]]], dtype=np.float32)
    labels, confidence = shape_confidence(maps, gap_mm=5.0, margin_mm=2.0, range_mm=10.0)
    assert labels.tolist() == [[1, 1, 0]]
    decay = math.exp(-0.5)
    assert confidence[0].tolist() == pytest.approx([decay, 0.5 * decay, decay], rel=1e-6)


def test_blended_distances_midway_disk_and_gaps():
    labels = np.zeros((5, 21, 21), dtype=np.int64)
    yy, xx = np.mgrid[:21, :21]
    labels[0][(yy - 10) ** 2 + (xx - 10) ** 2 <= 4**2] = 1
    labels[4][(yy - 10) ** 2 + (xx - 10) ** 2 <= 8**2] = 1
    out = blended_distances(labels, [0, 4], num_classes=1)
    assert sorted(out) == [1, 2, 3]
    assert [gap for _, gap in (out[1], out[2], out[3])] == [1.0, 2.0, 1.0]
    middle = out[2][0][0] > 0
    # Halfway between radii 4 and 8 the shape is a disk of radius about 6.
    assert middle[10, 10 + 5] and not middle[10, 10 + 7]
    assert blended_distances(labels, [0], num_classes=1) == {}


def _volume(spacing_z: float) -> AnnotatedVolume:
    shape = (24, 24, 9)
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    ball = (x - 12) ** 2 + (y - 12) ** 2 <= (4 + z // 2) ** 2
    affine = np.diag([1.0, 1.0, spacing_z, 1.0])
    image = Volume(data=ball.astype(np.float32) * 100, affine=affine, name="ball")
    revealed = np.zeros(shape, dtype=np.int16)
    revealed[..., [1, 7]] = ball[..., [1, 7]]
    return AnnotatedVolume.from_labels(image, revealed, axis=2, annotated_slices=[1, 7])


def test_shape_teacher_covers_the_annotated_range_and_fades_with_slice_thickness():
    config = _config(shape={"range_mm": 10.0})
    targets = {}
    for spacing in (1.0, 10.0):
        _, teacher = _shape_teacher(Project([_volume(spacing)], ["ball"]), config)
        assert sorted(z for _, z in teacher.covers()) == [2, 3, 4, 5, 6]
        targets[spacing] = teacher.targets([(0, 4), (0, 0)])
    fine, thick = targets[1.0], targets[10.0]
    assert fine.shape == (2, 3, 32, 32)
    # Probabilities are one-hot where covered, uniform with confidence 0 outside the range.
    assert torch.allclose(fine[0, :2].sum(dim=0), torch.ones(32, 32))
    assert float(fine[1, -1].max()) == 0.0 and torch.allclose(
        fine[1, :2], torch.full_like(fine[1, :2], 0.5)
    )
    # Slice 4 is 3 slices from an annotated one: exp(-3 / 10) with 1 mm, exp(-3) with 10 mm,
    # times the agreement of the two annotated disks it blends (radii 4 and 7 on the grid).
    pool, _ = _shape_teacher(Project([_volume(1.0)], ["ball"]), config)
    agreement = neighbour_agreement(pool.volumes[0].labels.numpy(), [1, 7])[4]
    assert 0.3 < agreement < 0.7
    assert float(fine[0, -1].max()) == pytest.approx(agreement * math.exp(-0.3), rel=1e-4)
    assert float(thick[0, -1].max()) == pytest.approx(agreement * math.exp(-3.0), rel=1e-4)
    # The centre of the ball is foreground, a corner background.
    assert fine[0, 1, 16, 16] == 1.0 and fine[0, 0, 1, 1] == 1.0


def test_neighbour_agreement_is_the_dice_of_the_annotated_shapes_around_a_slice():
    labels = np.zeros((7, 4, 4), dtype=np.int64)
    labels[0, :2, :2] = 1  # 4 pixels
    labels[3, :2, :1] = 1  # 2 pixels inside them: Dice 2 * 2 / 6
    labels[3, 3, 3] = 2  # class 2 only here: Dice 0
    labels[6, :2, :1] = 1  # same as slice 3 for class 1; class 2 gone: Dice 0
    agreement = neighbour_agreement(labels, [0, 3, 6])
    assert agreement == pytest.approx({1: 2 / 3 / 2, 2: 2 / 3 / 2, 4: 0.5, 5: 0.5})
    # Two empty annotated slices agree.
    assert neighbour_agreement(np.zeros((3, 2, 2), dtype=np.int64), [0, 2]) == {1: 1.0}


def test_extent_confidence_rises_from_half_a_gap_beyond_the_outermost_labelled_slice():
    labels = np.zeros((20, 4, 4), dtype=np.int64)
    labels[[5, 9, 13], 1, 1] = 1
    # Gap 4 slices: 0 at 2 slices beyond, +0.25 a slice, 1 from 6 slices beyond.
    assert extent_confidence(labels, [5, 9, 13], 20) == {
        0: 0.75,
        1: 0.5,
        2: 0.25,
        16: 0.25,
        17: 0.5,
        18: 0.75,
        19: 1.0,
    }
    # An annotated empty slice at the end: the structure ended before it, so distances count
    # from the last slice that shows it; slices inside the annotated range are left alone.
    labels[13] = 0
    assert extent_confidence(labels, [5, 9, 13], 20) == {
        0: 0.75,
        1: 0.5,
        2: 0.25,
        14: 0.75,
        15: 1.0,
        16: 1.0,
        17: 1.0,
        18: 1.0,
        19: 1.0,
    }
    assert extent_confidence(np.zeros_like(labels), [5, 9, 13], 20) == {}
    assert extent_confidence(labels, [5], 20) == {}


def test_shape_teacher_teaches_background_beyond_the_structure_unless_switched_off():
    shape = (24, 24, 20)
    image = Volume(data=np.zeros(shape, dtype=np.float32), affine=np.eye(4), name="tube")
    revealed = np.zeros(shape, dtype=np.int16)
    revealed[8:16, 8:16, [8, 10, 12]] = 1
    volume = AnnotatedVolume.from_labels(image, revealed, axis=2, annotated_slices=[8, 10, 12])
    project = Project([volume], ["tube"])
    for extent in (True, False):
        _, teacher = _shape_teacher(project, _config(shape={"extent": extent}))
        covered = sorted(z for _, z in teacher.covers())
        if not extent:
            assert covered == [9, 11]
            continue
        assert covered == [*range(0, 7), 9, 11, *range(14, 20)]
        target = teacher.targets([(0, 0), (0, 14)])
        assert torch.all(target[:, 0] == 1.0) and torch.all(target[:, 1] == 0.0)
        assert float(target[0, -1].min()) == 1.0  # 8 slices beyond, gap 2
        assert float(target[1, -1].max()) == pytest.approx(0.5)  # 2 slices beyond


def test_build_teachers_leaves_out_those_with_nothing_to_teach():
    config = _config(method="ssl")
    volume = _volume(1.0)
    volume = AnnotatedVolume.from_labels(volume.image, volume.labels, axis=2, annotated_slices=[1])
    project = Project([volume], ["ball"])
    pool, _ = _shape_teacher(project, config)
    student = torch.nn.Conv2d(1, 2, 1)
    assert config.active_teachers == ("mean", "shape")
    teachers = build_teachers(
        config.active_teachers, project, pool, student, config, torch.device("cpu")
    )
    # One annotated slice: nothing to interpolate, only the mean teacher remains.
    assert [t.name for t in teachers] == ["mean"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "mean-teacher"}, "unknown method 'mean-teacher'"),
        ({"foundation": {"model": "sam_vit_z"}}, "unknown foundation model 'sam_vit_z'"),
        ({"shape": {"range_mm": 0.0}}, "shape.margin_mm and shape.range_mm must be positive"),
        ({"sam": {"slices": 0}}, "sam.refresh and sam.slices must be at least 1"),
    ],
)
def test_teacher_settings_are_checked(changes, message):
    from napari_ssseg.errors import SsSegError

    with pytest.raises(SsSegError, match=re.escape(message)):
        TrainConfig.from_dict(changes)


def test_interleaved_takes_volumes_in_turn_each_from_its_middle():
    from napari_ssseg.training.teachers.base import interleaved

    refs = [(0, 0), (0, 1), (0, 2), (1, 5), (1, 6)]
    assert interleaved(refs) == [(0, 1), (1, 5), (0, 0), (1, 6), (0, 2)]
