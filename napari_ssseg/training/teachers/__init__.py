"""Teachers: sources of soft targets for the slices nobody annotated.

A teacher answers, for a batch of unannotated slices, with class probabilities and a per-pixel
confidence in [0, 1] packed as one (B, K + 1, S, S) tensor (channels 0..K-1 probabilities,
channel K confidence), so an augmentation moves targets and confidence together. The loop
turns each teacher's targets into its own weighted loss term.

- :class:`MeanTeacher`: an EMA of the student predicting with MC dropout and input noise;
  confidence is 1 - normalised predictive entropy (uncertainty-aware mean teacher).
- :class:`ShapeTeacher`: shape continuity. Between two annotated slices the signed distance
  maps of each class are blended (what "fill between slices" does); confidence grows with the
  distance of a pixel from the interpolated contour and falls with the physical distance to
  the nearer annotated slice, so it counts on smooth, finely sliced anatomy and fades on
  thick slices. It says nothing outside the annotated range.
- :class:`CurriculumTeacher`: whole-volume EMA pseudo-labels, connectivity-filtered where the
  volume has labels, slices admitted by image-level confidence (a confidence curriculum); on
  volumes nobody labelled too, a bounded number of slices a refresh.
- :class:`~napari_ssseg.training.teachers.foundation.SamTeacher`: a Segment-Anything-style
  model prompted by the student's prediction, its decoder LoRA-tuned from the labels and the
  student (SC-SAM's two directions); on volumes nobody labelled too.
- :class:`~napari_ssseg.training.teachers.fused.FusedTeacher`: UnCoL's dual teacher; the mean
  teacher and the foundation model (``fused.members``) give one target per slice, each pixel
  from the member with the higher confidence.

Each lives in its own module with its settings section in
:mod:`napari_ssseg.settings.teachers`; :func:`build_teachers` makes the ones a run names,
each with its own settings.
"""

from __future__ import annotations

import torch

from napari_ssseg.annotation import Project
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.settings import TrainConfig
from napari_ssseg.training.teachers.base import Teacher, TeacherSchedule
from napari_ssseg.training.teachers.curriculum import CurriculumTeacher
from napari_ssseg.training.teachers.fused import FusedTeacher, fuse_targets
from napari_ssseg.training.teachers.mean import MeanTeacher
from napari_ssseg.training.teachers.shape import ShapeTeacher, shape_confidence

__all__ = [
    "CurriculumTeacher",
    "FusedTeacher",
    "MeanTeacher",
    "ShapeTeacher",
    "Teacher",
    "TeacherSchedule",
    "build_teachers",
    "fuse_targets",
    "shape_confidence",
]


def build_teachers(
    names: tuple[str, ...],
    project: Project,
    pool: SlicePool,
    student: torch.nn.Module,
    config: TrainConfig,
    device: torch.device,
    warm_start: bool = False,
) -> list[Teacher]:
    """The teachers named, each given its own settings section of ``config`` and the
    schedule the budget decides (teachers start at once in a ``warm_start``), leaving out
    those with nothing to teach."""
    schedule = TeacherSchedule.from_budget(config.budget, warm_start)
    teachers: list[Teacher] = []
    for name in names:
        if name == "mean":
            teacher: Teacher = MeanTeacher(student, pool, config.mean, schedule, device)
        elif name == "shape":
            teacher = ShapeTeacher(project, pool, config.shape, schedule)
        elif name == "self":
            teacher = CurriculumTeacher(student, pool, config.curriculum, schedule, device)
        elif name == "sam":
            from napari_ssseg.foundation.loading import embedding_cache, load_backend
            from napari_ssseg.training.teachers.foundation import SamTeacher

            teacher = SamTeacher(
                project,
                pool,
                config.sam,
                schedule,
                device,
                load_backend(config.foundation),
                embedding_cache(config.foundation),
                seed=config.seed,
            )
        elif name == "fused":
            members = build_teachers(
                config.fused.members, project, pool, student, config, device, warm_start
            )
            if not members:
                continue
            teacher = FusedTeacher(members, config.fused)
        else:
            raise ValueError(f"unknown teacher {name!r}")
        if teacher.covers():
            teachers.append(teacher)
    return teachers
