"""Shape continuity: targets interpolated between annotated slices."""

from __future__ import annotations

import math

import numpy as np
import torch

from napari_ssseg.annotation import Project
from napari_ssseg.baselines.interpolation import blended_distances
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.data.slices import SliceRef
from napari_ssseg.settings.teachers import ShapeSettings
from napari_ssseg.training.losses import weighted_pseudo_label_loss
from napari_ssseg.training.teachers.base import PrecomputedTeacher, TeacherSchedule, slice_pixel_mm


def shape_confidence(
    maps: np.ndarray, gap_mm: float, margin_mm: float, range_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and confidence from blended signed distances.

    Args:
        maps: (C, H, W) blended signed distances in mm, class c at index c - 1.
        gap_mm: distance from the slice to the nearer annotated slice.
        margin_mm: distance from the interpolated contour at which a pixel is fully trusted.
        range_mm: the confidence falls as exp(-gap_mm / range_mm).

    Returns:
        (labels (H, W) int64 in 0..C, confidence (H, W) float32 in [0, 1]).
    """
    best = maps.argmax(axis=0)
    value = np.take_along_axis(maps, best[None], axis=0)[0]
    labels = np.where(value > 0, best + 1, 0)
    margin = np.clip(np.abs(value) / margin_mm, 0.0, 1.0)
    return labels.astype(np.int64), (margin * math.exp(-gap_mm / range_mm)).astype(np.float32)


def neighbour_agreement(labels: np.ndarray, annotated: list[int]) -> dict[int, float]:
    """How far interpolation between two annotated slices can be trusted: the mean Dice, over
    the classes either shows, of the two annotated slices around each slice between them.

    Shapes that barely change from one annotated slice to the next (smooth anatomy, thin
    slices) interpolate well; shapes that change a lot (thick slices across the heart's base
    and apex) do not, whatever the distance.

    Args:
        labels: (Z, H, W) int labels, read on the annotated slices only.
        annotated: indices of the annotated slices.

    Returns:
        ``{z: agreement in [0, 1]}`` for every slice strictly between two annotated ones.
    """
    slices = sorted(annotated)
    out = {}
    for lo, hi in zip(slices[:-1], slices[1:], strict=True):
        classes = np.union1d(np.unique(labels[lo]), np.unique(labels[hi]))
        scores = []
        for c in classes[classes > 0]:
            a, b = labels[lo] == c, labels[hi] == c
            scores.append(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))
        agreement = float(np.mean(scores)) if scores else 1.0
        out.update({z: agreement for z in range(lo + 1, hi)})
    return out


def extent_confidence(
    labels: np.ndarray, annotated: list[int], num_slices: int
) -> dict[int, float]:
    """Confidence that a slice beyond the annotated structure is background.

    Smooth anatomy ends soon after the outermost annotated slice that shows it: an annotator
    who labels a few slices across a structure stops within about half an annotation gap of
    its ends (the gap being the mean spacing between annotated slices). Beyond the outermost
    annotated slice with any label, the confidence rises from 0 at half a gap to 1 at one
    and a half gaps.

    Args:
        labels: (Z, H, W) int labels, read on the annotated slices only.
        annotated: indices of the annotated slices (at least 2).
        num_slices: Z.

    Returns:
        ``{z: confidence}`` for slices outside the annotated range with confidence above 0.
    """
    slices = sorted(annotated)
    shown = [z for z in slices if labels[z].any()]
    if len(slices) < 2 or not shown:
        return {}
    gap = (slices[-1] - slices[0]) / (len(slices) - 1)
    out = {}
    for z in range(num_slices):
        if slices[0] <= z <= slices[-1]:
            continue  # between annotated slices the interpolated shapes speak
        beyond = (shown[0] - z if z < shown[0] else z - shown[-1]) / gap
        confidence = min(1.0, beyond - 0.5)
        if confidence > 0:
            out[z] = confidence
    return out


class ShapeTeacher(PrecomputedTeacher):
    """Targets interpolated between annotated slices (shape continuity) and, with
    ``extent``, background beyond the annotated structure's ends
    (:func:`extent_confidence`)."""

    name = "shape"

    def __init__(
        self, project: Project, pool: SlicePool, settings: ShapeSettings, schedule: TeacherSchedule
    ):
        self.settings = settings
        self.schedule = schedule
        self.num_classes = project.num_classes + 1
        self._targets: dict[SliceRef, torch.Tensor] = {}
        for v, (volume, prepared) in enumerate(zip(project.volumes, pool.volumes, strict=True)):
            annotated = volume.annotated_slices
            if len(annotated) < 2:
                continue
            pixel_mm = slice_pixel_mm(volume, prepared.grid)
            slice_mm = float(volume.image.spacing[volume.axis])
            maps = blended_distances(
                prepared.labels.numpy(), annotated, project.num_classes, pixel_mm
            )
            agreement = neighbour_agreement(prepared.labels.numpy(), annotated)
            for z, (blended, gap) in maps.items():
                labels, confidence = shape_confidence(
                    blended, gap * slice_mm, settings.margin_mm, settings.range_mm
                )
                confidence *= agreement[z]
                onehot = np.eye(self.num_classes, dtype=np.float32)[labels].transpose(2, 0, 1)
                self._targets[(v, z)] = torch.from_numpy(np.concatenate([onehot, confidence[None]]))
            if settings.extent:
                size = tuple(prepared.labels.shape[1:])
                for z, confidence in extent_confidence(
                    prepared.labels.numpy(), annotated, prepared.labels.shape[0]
                ).items():
                    target = torch.zeros(self.num_classes + 1, *size)
                    target[0] = 1.0
                    target[-1] = confidence
                    self._targets[(v, z)] = target

    def loss(
        self, logits: torch.Tensor, target: torch.Tensor, fraction: float
    ) -> tuple[torch.Tensor, float]:
        """CE toward the interpolated shapes weighted by their confidence, from the teachers'
        start at full weight (the targets do not depend on the student, so need no ramp-up)."""
        loss = weighted_pseudo_label_loss(logits, target[:, :-1], target[:, -1])
        return loss, self.settings.weight
