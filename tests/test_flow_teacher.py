"""Slice propagation: labels carried by optical flow, against hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.data.slices import SlicePool
from napari_ssseg.errors import SsSegError
from napari_ssseg.io.volume import Volume
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.teachers import FlowTeacher, build_teachers
from napari_ssseg.training.teachers.flow import carried_confidence, carry_labels


def _disc(centre: tuple[float, float], radius: float, size: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _smooth_disc_image(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(mask.astype(np.float32), 1.5)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())


def test_carry_labels_follows_a_moved_disc():
    source_mask, target_mask = _disc((20, 20), 8), _disc((23, 25), 8)
    source, target = _smooth_disc_image(source_mask), _smooth_disc_image(target_mask)
    probs = np.stack([~source_mask, source_mask]).astype(np.float32)
    carried, warped = carry_labels(source, target, probs, radius=6)
    assert carried.shape == (2, 48, 48)
    assert np.allclose(carried.sum(axis=0), 1.0, atol=1e-5)
    # Copying the labels unchanged misses the move; carrying them follows it.
    assert _dice(source_mask, target_mask) < 0.7
    assert _dice(carried.argmax(axis=0) == 1, target_mask) > 0.9
    # The warped source image matches the target far better than the source did.
    assert np.abs(warped - target).mean() < 0.5 * np.abs(source - target).mean()


def test_carried_confidence_hand_values():
    # Pixel 0: sure label, images agree. Pixel 1: sure label, constant residual 0.1.
    # Pixel 2: probabilities 0.6 / 0.4 (a carried contour), images agree.
    probs = np.zeros((2, 3, 3), dtype=np.float32)
    probs[1] = 1.0
    probs[:, 2] = np.array([0.4, 0.6])[:, None]
    target = np.zeros((3, 3), dtype=np.float32)
    same = carried_confidence(probs, target.copy(), target, sigma=0.1)
    assert same[0, 0] == pytest.approx(1.0)
    assert same[2, 0] == pytest.approx(0.2)
    shifted = carried_confidence(probs, target + 0.1, target, sigma=0.1)
    assert shifted[0, 0] == pytest.approx(math.exp(-1.0), rel=1e-5)


def _moving_disc_volume(annotated: list[int]) -> AnnotatedVolume:
    """5 slices of 48 x 48 with a disc that moves 2 pixels per slice."""
    masks = np.stack([_disc((16 + 2 * z, 20 + 2 * z), 7) for z in range(5)], axis=-1)
    image = np.stack([_smooth_disc_image(masks[..., z]) for z in range(5)], axis=-1) * 100
    volume = Volume(data=image.astype(np.float32), affine=np.diag([1.0, 1.0, 5.0, 1.0]))
    revealed = np.zeros(masks.shape, dtype=np.int16)
    revealed[..., annotated] = masks[..., annotated]
    return AnnotatedVolume.from_labels(volume, revealed, axis=2, annotated_slices=annotated)


def test_flow_teacher_reach_and_targets():
    config = TrainConfig(image_size=48, channels=(8, 16), flow_radius_mm=6.0)
    volume = _moving_disc_volume([2])
    project = Project([volume], ["disc"])
    pool = SlicePool(project, config.image_size, config.intensity)
    teacher = FlowTeacher(project, pool, config)
    # Reach 1: the two neighbours of the annotated slice, never the annotated slice itself.
    assert sorted(z for _, z in teacher.covers()) == [1, 3]
    targets = teacher.targets([(0, 1), (0, 3), (0, 0)])
    assert targets.shape == (3, 3, 48, 48)
    for row, z in ((0, 1), (1, 3)):
        mask = _disc((16 + 2 * z, 20 + 2 * z), 7)
        carried = targets[row, :2].argmax(dim=0).numpy() == 1
        assert _dice(carried, mask) > 0.85, z
        assert targets[row, -1].min() >= 0.0 and targets[row, -1].max() <= 1.0
    # A slice out of reach says nothing.
    assert float(targets[2, -1].max()) == 0.0
    assert torch.allclose(targets[2, :2], torch.full_like(targets[2, :2], 0.5))

    far = FlowTeacher(project, pool, TrainConfig(**{**config.to_dict(), "flow_reach": 2}))
    assert sorted(z for _, z in far.covers()) == [0, 1, 3, 4]
    # Two slices away the confidence carries one flow_decay more.
    near_conf = far.targets([(0, 3)])[0, -1].max()
    far_conf = far.targets([(0, 4)])[0, -1].max()
    assert float(far_conf) <= config.flow_decay * float(near_conf) + 1e-6


def test_flow_teacher_takes_the_more_confident_of_two_annotated_slices():
    config = TrainConfig(image_size=48, channels=(8, 16), flow_radius_mm=6.0)
    project = Project([_moving_disc_volume([1, 3])], ["disc"])
    pool = SlicePool(project, config.image_size, config.intensity)
    both = FlowTeacher(project, pool, config).targets([(0, 2)])[0]
    singles = []
    for only in ([1], [3]):
        single_project = Project([_moving_disc_volume(only)], ["disc"])
        single_pool = SlicePool(single_project, config.image_size, config.intensity)
        singles.append(FlowTeacher(single_project, single_pool, config).targets([(0, 2)])[0])
    expected = torch.maximum(singles[0][-1], singles[1][-1])
    assert torch.allclose(both[-1], expected)


def test_flow_teacher_is_built_by_name_and_settings_are_checked():
    config = TrainConfig(image_size=48, channels=(8, 16), teachers_override=("flow",))
    project = Project([_moving_disc_volume([2])], ["disc"])
    pool = SlicePool(project, config.image_size, config.intensity)
    student = torch.nn.Conv2d(1, 2, 1)
    cpu = torch.device("cpu")
    (teacher,) = build_teachers(config.teachers, project, pool, student, config, cpu)
    assert isinstance(teacher, FlowTeacher) and teacher.start == config.shape_start
    logits = torch.zeros(1, 2, 48, 48)
    target = teacher.targets([(0, 1)])
    loss, weight = teacher.loss(logits, target, 0.9)
    # Uniform logits: CE is log 2 on every pixel, weighted by the confidence.
    assert float(loss) == pytest.approx(math.log(2) * float(target[0, -1].mean()), rel=1e-5)
    assert weight == config.flow_weight
    for bad in ({"flow_reach": 0}, {"flow_sigma": 0.0}, {"flow_decay": 1.5}):
        with pytest.raises(SsSegError, match="flow_"):
            TrainConfig(**bad)


def test_fused_teacher_members_are_a_setting():
    from napari_ssseg.training.teachers import FusedTeacher

    config = TrainConfig(
        image_size=48,
        channels=(8, 16),
        teachers_override=("fused",),
        fused_members=["mean", "flow"],
    )
    assert config.fused_members == ("mean", "flow")
    assert not config.uses_foundation_model
    project = Project([_moving_disc_volume([2])], ["disc"])
    pool = SlicePool(project, config.image_size, config.intensity)
    student = torch.nn.Conv2d(1, 2, 1)
    (teacher,) = build_teachers(
        config.teachers, project, pool, student, config, torch.device("cpu")
    )
    assert isinstance(teacher, FusedTeacher)
    assert [m.name for m in teacher.members] == ["mean", "flow"]
    for bad in ((), ("fused",), ("mean", "glitter")):
        with pytest.raises(SsSegError, match="fused_members"):
            TrainConfig(fused_members=bad)
