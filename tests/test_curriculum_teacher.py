"""The confidence curriculum on projects of several volumes, some of them unlabelled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.io.volume import Volume
from napari_ssseg.settings import TrainConfig
from napari_ssseg.training.teachers.base import TeacherSchedule
from napari_ssseg.training.teachers.curriculum import CurriculumTeacher

SIZE = 32  # network grid
SHAPE = (48, 32, 5)


class MapStudent(torch.nn.Module):
    """Predicts one fixed (S, S) label map, with certainty, for every input slice."""

    def __init__(self, labels: torch.Tensor) -> None:
        super().__init__()
        onehot = torch.nn.functional.one_hot(labels, 2).permute(2, 0, 1).float()
        self.register_buffer("logits", onehot * 20 - 10)

    def forward(self, x):
        return self.logits.expand(len(x), -1, -1, -1)


def _rectangle_volume(name: str, annotated: list[int]) -> AnnotatedVolume:
    rect = np.zeros(SHAPE[:2], dtype=bool)
    rect[30:40, 4:12] = True
    image = np.where(rect[..., None], 1.0, 0.0) * np.ones(SHAPE)
    labels = np.zeros(SHAPE, dtype=np.int16)
    for z in annotated:
        labels[..., z] = rect
    return AnnotatedVolume.from_labels(
        Volume(image.astype(np.float32), np.eye(4), name=name), labels, 2, annotated
    )


@pytest.fixture
def three_volumes():
    """One volume annotated on slices 0 and 4, two nobody labelled; and a student that
    predicts the rectangle plus a blob far from it on every slice."""
    volumes = [
        _rectangle_volume("a", [0, 4]),
        _rectangle_volume("b", []),
        _rectangle_volume("c", []),
    ]
    project = Project(volumes, ["rect"])
    config = TrainConfig.from_dict(
        {
            "method": "curriculum",
            "student": {"image_size": SIZE, "channels": [8, 16]},
            "curriculum": {"slices": 10},
        }
    )
    pool = SlicePool(project, SIZE, config.student.intensity)
    rect = pool.volumes[0].labels[0]
    blob = torch.zeros_like(rect)
    blob[2:6, 12:16] = 1
    assert not (rect.bool() & blob.bool()).any()
    student = MapStudent(torch.maximum(rect, blob))
    return project, pool, config, student, rect, blob


def _teacher(student, pool, config: TrainConfig) -> CurriculumTeacher:
    schedule = TeacherSchedule.from_budget(config.budget, warm_start=False)
    return CurriculumTeacher(student, pool, config.curriculum, schedule, torch.device("cpu"))


def test_curriculum_learns_from_volumes_nobody_labelled_a_few_at_a_time(three_volumes):
    _, pool, config, student, rect, blob = three_volumes
    teacher = _teacher(student, pool, config)
    assert teacher.volumes == [0, 1, 2]
    # Every slice of the project but the two annotated ones, before the first refresh.
    assert len(teacher.covers()) == 13

    # 10 slices a refresh: volumes 0 and 1 first; volume 2 is not predicted yet.
    teacher.prepare(student, iteration=0, fraction=1.0)
    assert {v for v, _ in teacher.covers()} == {0, 1}
    assert float(teacher.targets([(2, 2)])[0, -1].max()) == 0.0

    # In the annotated volume the blob, not connected to the annotation, is background;
    # in a volume nobody labelled there is nothing to connect to and the prediction stays.
    annotated, unlabelled = teacher.targets([(0, 2), (1, 2)])
    assert torch.equal(annotated[:2].argmax(dim=0), rect)
    assert torch.equal(unlabelled[:2].argmax(dim=0), torch.maximum(rect, blob))
    assert float(unlabelled[-1].min()) > 0.99  # a certain student: confidence 1 - entropy

    # The next refresh takes volume 2 and volume 0 again; volume 1 keeps its targets.
    teacher.prepare(student, iteration=config.curriculum.refresh, fraction=1.0)
    assert {v for v, _ in teacher.covers()} == {0, 1, 2}
    assert torch.equal(teacher.targets([(2, 2)])[0, :2].argmax(dim=0), torch.maximum(rect, blob))


def test_curriculum_admits_the_most_confident_share_of_all_volumes(three_volumes):
    _, pool, config, student, _, _ = three_volumes
    config.curriculum.slices = 256  # every volume at every refresh
    teacher = _teacher(student, pool, config)
    teacher.prepare(student, iteration=0, fraction=0.0)
    # At the start half of the 13 unannotated slices (rounded) are admitted.
    assert len(teacher.covers()) == round(0.5 * 13)


def test_curriculum_slices_must_be_positive():
    from napari_ssseg.errors import SsSegError

    with pytest.raises(SsSegError, match=r"curriculum\.slices must be at least 1"):
        TrainConfig.from_dict({"curriculum": {"slices": 0}})
