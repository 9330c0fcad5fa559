"""Volumes cut into 2-D slices on the network grid, and the pools training samples from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.data.intensity import IntensityConfig, apply_intensity, intensity_transform
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


CHUNK_VOXELS = 2**20
"""Source voxels resampled at once (4 MiB as float32, 4 slices of 512 x 512; MONAI's
anti-aliased resize holds about 10 times its input while it works). A volume is cut into
chunks of whole slices so memory stays bounded whatever its size; a volume up to this size
(e.g. 128 x 128 x 64) is resampled in one go. The resampling of a slice is the same in any
chunk up to float32 rounding (MONAI's anti-aliasing and interpolation vectorise over the
slices)."""


def chunk_starts(num_slices: int, slice_shape: tuple[int, int]) -> range:
    """First slice of each chunk of at most :data:`CHUNK_VOXELS` voxels (at least one slice)."""
    step = max(1, CHUNK_VOXELS // max(1, slice_shape[0] * slice_shape[1]))
    return range(0, num_slices, step)


def _to_network_by_chunks(
    slices: np.ndarray,
    grid: SliceGrid,
    convert: Callable[[np.ndarray], np.ndarray],
    dtype: torch.dtype,
    nearest: bool = False,
) -> torch.Tensor:
    """(Z, H, W) source slices (any layout) -> (Z, S, S) ``dtype``, ``convert``-ing and
    resampling one chunk of slices at a time."""
    out = torch.empty((slices.shape[0], grid.size, grid.size), dtype=dtype)
    starts = chunk_starts(slices.shape[0], grid.source_shape)
    for first in starts:
        block = np.ascontiguousarray(convert(slices[first : first + starts.step]))
        out[first : first + len(block)] = grid.to_network(torch.from_numpy(block), nearest)
    return out


def prepare_image(
    image: Volume, axis: int, size: int, intensity: IntensityConfig
) -> tuple[torch.Tensor, SliceGrid]:
    """Normalise and resample a volume's slices: returns ((Z, S, S) float32, grid).

    Works through the volume a chunk of slices at a time, so beyond the result it holds one
    chunk's intermediates, never a float copy of the whole volume (except for MRI, whose
    percentiles are taken over the whole volume once).
    """
    transform = intensity_transform(image.data, intensity)
    slices = np.moveaxis(image.data, axis, 0)
    grid = SliceGrid((int(slices.shape[1]), int(slices.shape[2])), size)
    images = _to_network_by_chunks(
        slices, grid, lambda block: apply_intensity(transform, block), torch.float32
    )
    return images, grid


def prepare_volume(volume: AnnotatedVolume, size: int, intensity: IntensityConfig) -> VolumeSlices:
    """Put an annotated volume on the network grid."""
    images, grid = prepare_image(volume.image, volume.axis, size, intensity)
    labels = _to_network_by_chunks(
        np.moveaxis(volume.labels, volume.axis, 0),
        grid,
        lambda block: block.astype(np.int64),
        torch.int64,
        nearest=True,
    )
    annotated = torch.zeros(volume.num_slices, dtype=torch.bool)
    annotated[volume.annotated_slices] = True
    return VolumeSlices(images, labels, annotated, grid)


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
