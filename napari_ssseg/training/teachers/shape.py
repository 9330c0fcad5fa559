"""Shape continuity: targets interpolated between annotated slices."""

from __future__ import annotations

import math

import numpy as np
import torch

from napari_ssseg.annotation import Project
from napari_ssseg.baselines.interpolation import blended_distances
from napari_ssseg.data.slices import SlicePool, SliceRef
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.losses import weighted_pseudo_label_loss
from napari_ssseg.training.teachers.base import Teacher


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


class ShapeTeacher(Teacher):
    """Targets interpolated between annotated slices (shape continuity)."""

    name = "shape"
    start = 0.0

    def __init__(self, project: Project, pool: SlicePool, config: TrainConfig):
        self.config = config
        self.num_classes = project.num_classes + 1
        self._targets: dict[SliceRef, torch.Tensor] = {}
        for v, (volume, prepared) in enumerate(zip(project.volumes, pool.volumes, strict=True)):
            annotated = volume.annotated_slices
            if len(annotated) < 2:
                continue
            in_plane = [s for i, s in enumerate(volume.image.spacing) if i != volume.axis]
            grid = prepared.grid
            pixel_mm = tuple(
                float(s) * src / res
                for s, src, res in zip(in_plane, grid.source_shape, grid.resized_shape, strict=True)
            )
            slice_mm = float(volume.image.spacing[volume.axis])
            maps = blended_distances(
                prepared.labels.numpy(), annotated, project.num_classes, pixel_mm
            )
            for z, (blended, gap) in maps.items():
                labels, confidence = shape_confidence(
                    blended, gap * slice_mm, config.shape_margin_mm, config.shape_range_mm
                )
                onehot = np.eye(self.num_classes, dtype=np.float32)[labels].transpose(2, 0, 1)
                self._targets[(v, z)] = torch.from_numpy(np.concatenate([onehot, confidence[None]]))

    def loss(
        self, logits: torch.Tensor, target: torch.Tensor, fraction: float
    ) -> tuple[torch.Tensor, float]:
        """CE toward the interpolated shapes weighted by their confidence, from the first step
        (the targets do not depend on the student)."""
        loss = weighted_pseudo_label_loss(logits, target[:, :-1], target[:, -1])
        return loss, self.config.shape_weight

    def covers(self) -> list[SliceRef]:
        return list(self._targets)

    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        """Slices outside the annotated range get uniform probabilities and confidence 0."""
        blank = None
        out = []
        for ref in refs:
            target = self._targets.get(ref)
            if target is None:
                if blank is None:
                    any_target = next(iter(self._targets.values()))
                    blank = torch.zeros_like(any_target)
                    blank[:-1] = 1.0 / self.num_classes
                target = blank
            out.append(target)
        return torch.stack(out)
