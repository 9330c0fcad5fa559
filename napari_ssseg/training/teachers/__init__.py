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
- :class:`FlowTeacher`: slice propagation. The labels of each annotated slice carried to its
  neighbours by optical flow on the images; confidence from the label margin and the match of
  the warped image with the neighbour's, so it holds where thick slices change shape.
- :class:`ConnectivityTeacher`: 3-D continuity. Every ``connect_refresh`` steps the student
  predicts every slice of the partially annotated volumes; predicted components that touch no
  annotated voxel of their class (look-alike tissue on distant slices) are taught as
  background, with full confidence there and none elsewhere.
- :class:`CurriculumTeacher`: whole-volume EMA pseudo-labels, connectivity-filtered where the
  volume has labels, slices admitted by image-level confidence (a confidence curriculum); on
  volumes nobody labelled too, a bounded number of slices a refresh.
- :class:`~napari_ssseg.training.teachers.foundation.SamTeacher`: a Segment-Anything-style
  model prompted by the student's prediction, its decoder LoRA-tuned from the labels and the
  student (SC-SAM's two directions); on volumes nobody labelled too.
- :class:`~napari_ssseg.training.teachers.fused.FusedTeacher`: UnCoL's dual teacher; the mean
  teacher and the foundation model (:data:`~napari_ssseg.training.config.FUSED_MEMBERS`) give
  one target per slice, each pixel from the member with the higher confidence.

Each lives in its own module; :func:`build_teachers` makes the ones a method names.
"""

from __future__ import annotations

import torch

from napari_ssseg.annotation import Project
from napari_ssseg.data.slices import SlicePool
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.teachers.base import Teacher
from napari_ssseg.training.teachers.connectivity import ConnectivityTeacher
from napari_ssseg.training.teachers.curriculum import CurriculumTeacher
from napari_ssseg.training.teachers.flow import FlowTeacher
from napari_ssseg.training.teachers.fused import FusedTeacher, fuse_targets
from napari_ssseg.training.teachers.mean import MeanTeacher
from napari_ssseg.training.teachers.shape import ShapeTeacher, shape_confidence

__all__ = [
    "ConnectivityTeacher",
    "CurriculumTeacher",
    "FlowTeacher",
    "FusedTeacher",
    "MeanTeacher",
    "ShapeTeacher",
    "Teacher",
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
) -> list[Teacher]:
    """The teachers named by the method, leaving out those with nothing to teach."""
    teachers: list[Teacher] = []
    for name in names:
        if name == "mean":
            teacher: Teacher = MeanTeacher(student, pool, config, device)
        elif name == "shape":
            teacher = ShapeTeacher(project, pool, config)
        elif name == "flow":
            teacher = FlowTeacher(project, pool, config)
        elif name == "connect":
            teacher = ConnectivityTeacher(pool, config, device)
        elif name == "self":
            teacher = CurriculumTeacher(student, pool, config, device)
        elif name == "sam":
            from napari_ssseg.training.teachers.foundation import SamTeacher

            teacher = SamTeacher(project, pool, config, device)
        elif name == "fused":
            members = build_teachers(config.fused_members, project, pool, student, config, device)
            if not members:
                continue
            teacher = FusedTeacher(members, config)
        else:
            raise ValueError(f"unknown teacher {name!r}")
        if teacher.covers():
            teachers.append(teacher)
    return teachers
