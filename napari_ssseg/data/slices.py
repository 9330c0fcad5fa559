"""Volumes cut into 2-D slices on the network grid, and the pools training samples from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.data.intensity import IntensityConfig, normalise_intensity
from napari_ssseg.data.slice_grid import SliceGrid
from napari_ssseg.io.volume import Volume

SliceRef = tuple[int, int]
"""(volume index, slice index) within a :class:`SlicePool`."""


@dataclass
class VolumeSlices:
    """One volume on the network grid.

    Attributes:
        images: (Z, S, S) float32 in [0, 1]; Z slices along the volume's slice axis.
        labels: (Z, S, S) int64 class indices (0 where unlabelled).
        annotated: (Z,) bool, True for annotated slices.
        grid: geometry to map network outputs back to the (H, W) source slices.
    """

    images: torch.Tensor
    labels: torch.Tensor
    annotated: torch.Tensor
    grid: SliceGrid


def prepare_image(
    image: Volume, axis: int, size: int, intensity: IntensityConfig
) -> tuple[torch.Tensor, SliceGrid]:
    """Normalise and resample a volume's slices: returns ((Z, S, S) float32, grid)."""
    data = np.moveaxis(normalise_intensity(image.data, intensity), axis, 0)
    grid = SliceGrid((int(data.shape[1]), int(data.shape[2])), size)
    return grid.to_network(torch.from_numpy(np.ascontiguousarray(data))), grid


def prepare_volume(volume: AnnotatedVolume, size: int, intensity: IntensityConfig) -> VolumeSlices:
    """Put an annotated volume on the network grid."""
    images, grid = prepare_image(volume.image, volume.axis, size, intensity)
    labels = np.ascontiguousarray(np.moveaxis(volume.labels, volume.axis, 0).astype(np.int64))
    annotated = torch.zeros(volume.num_slices, dtype=torch.bool)
    annotated[volume.annotated_slices] = True
    return VolumeSlices(
        images, grid.to_network(torch.from_numpy(labels), nearest=True), annotated, grid
    )


def stack_context(images: torch.Tensor, index: int, context: int) -> torch.Tensor:
    """(2*context + 1, S, S): slice ``index`` with ``context`` neighbours each side (clamped)."""
    last = images.shape[0] - 1
    picks = [min(max(index + d, 0), last) for d in range(-context, context + 1)]
    return images[picks]


class SlicePool:
    """All slices of a project, split into annotated (labelled) and unlabelled references."""

    def __init__(self, project: Project, size: int, intensity: IntensityConfig, context: int = 0):
        self.context = context
        self.num_classes = project.num_classes
        self.volumes = [prepare_volume(v, size, intensity) for v in project.volumes]
        self.labelled: list[SliceRef] = []
        self.unlabelled: list[SliceRef] = []
        for v, prepared in enumerate(self.volumes):
            for z, is_annotated in enumerate(prepared.annotated.tolist()):
                (self.labelled if is_annotated else self.unlabelled).append((v, z))

    def inputs(self, refs: list[SliceRef]) -> torch.Tensor:
        """(B, 2*context + 1, S, S) network inputs for ``refs``."""
        return torch.stack(
            [stack_context(self.volumes[v].images, z, self.context) for v, z in refs]
        )

    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        """(B, 1, S, S) int64 labels for ``refs``."""
        return torch.stack([self.volumes[v].labels[z][None] for v, z in refs])
