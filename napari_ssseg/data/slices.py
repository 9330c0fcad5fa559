"""Volumes cut into 2-D slices on the network grid, and the pools training samples from.

A pool's volumes are either prepared in memory (:class:`VolumeSlices`) or, for a project of
many volumes, read back lazily from a disk store
(:class:`~napari_ssseg.data.slice_store.StoredSlices`); both offer the
:class:`PreparedVolume` interface, so the pool and the teachers do not care which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from napari_ssseg.annotation import AnnotatedVolume
from napari_ssseg.data.intensity import apply_intensity, intensity_transform
from napari_ssseg.data.slice_grid import SliceGrid
from napari_ssseg.io.volume import Volume
from napari_ssseg.settings.student import IntensityConfig

SliceRef = tuple[int, int]
"""(volume index, slice index) within a :class:`SlicePool`."""


class PreparedVolume(Protocol):
    """One volume on the network grid, wherever its slices are kept.

    Attributes:
        annotated: (Z,) bool, True for annotated slices.
        grid: geometry to map network outputs back to the (H, W) source slices.
    """

    annotated: torch.Tensor
    grid: SliceGrid

    @property
    def num_slices(self) -> int:
        """Z."""

    @property
    def images(self) -> torch.Tensor:
        """(Z, S, S) float32 in [0, 1]: the whole volume."""

    @property
    def labels(self) -> torch.Tensor:
        """(Z, S, S) int64 class indices (0 where unlabelled): the whole volume."""

    def image_slices(self, picks: Sequence[int]) -> torch.Tensor:
        """(len(picks), S, S) float32: the slices ``picks`` only."""

    def label_slice(self, index: int) -> torch.Tensor:
        """(S, S) int64: the labels of slice ``index`` only."""


@dataclass
class VolumeSlices:
    """One volume on the network grid, held in memory.

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

    @property
    def num_slices(self) -> int:
        return int(self.images.shape[0])

    def image_slices(self, picks: Sequence[int]) -> torch.Tensor:
        return self.images[list(picks)]

    def label_slice(self, index: int) -> torch.Tensor:
        return self.labels[index]


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


def network_chunks(
    slices: np.ndarray,
    grid: SliceGrid,
    convert: Callable[[np.ndarray], np.ndarray],
    nearest: bool = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """(Z, H, W) source slices (any layout) -> (first slice, (n, S, S) chunk on the grid),
    ``convert``-ing and resampling one chunk of slices at a time; chunks come in order."""
    starts = chunk_starts(slices.shape[0], grid.source_shape)
    for first in starts:
        block = np.ascontiguousarray(convert(slices[first : first + starts.step]))
        yield first, grid.to_network(torch.from_numpy(block), nearest)


def image_chunks(
    image: Volume, axis: int, size: int, intensity: IntensityConfig
) -> tuple[SliceGrid, Iterator[tuple[int, torch.Tensor]]]:
    """The grid of ``image``'s slices along ``axis`` and its normalised float32 chunks on it
    (see :func:`network_chunks`).

    Beyond one chunk's intermediates nothing the size of the volume is held, except for MRI,
    whose percentiles are taken over the whole volume once.
    """
    transform = intensity_transform(image.data, intensity)
    slices = np.moveaxis(image.data, axis, 0)
    grid = SliceGrid((int(slices.shape[1]), int(slices.shape[2])), size)
    return grid, network_chunks(slices, grid, lambda block: apply_intensity(transform, block))


def label_chunks(volume: AnnotatedVolume, grid: SliceGrid) -> Iterator[tuple[int, torch.Tensor]]:
    """The volume's labels on ``grid`` as int64 chunks (nearest neighbour)."""
    slices = np.moveaxis(volume.labels, volume.axis, 0)
    return network_chunks(slices, grid, lambda block: block.astype(np.int64), nearest=True)


def annotated_flags(volume: AnnotatedVolume) -> torch.Tensor:
    """(Z,) bool, True on the volume's annotated slices."""
    annotated = torch.zeros(volume.num_slices, dtype=torch.bool)
    annotated[volume.annotated_slices] = True
    return annotated


def prepare_image(
    image: Volume, axis: int, size: int, intensity: IntensityConfig
) -> tuple[torch.Tensor, SliceGrid]:
    """Normalise and resample a volume's slices: returns ((Z, S, S) float32, grid).

    Works through the volume a chunk of slices at a time, so beyond the result it holds one
    chunk's intermediates, never a float copy of the whole volume (except for MRI, whose
    percentiles are taken over the whole volume once).
    """
    grid, chunks = image_chunks(image, axis, size, intensity)
    images = torch.empty((image.shape[axis], size, size), dtype=torch.float32)
    for first, chunk in chunks:
        images[first : first + len(chunk)] = chunk
    return images, grid


def prepare_volume(volume: AnnotatedVolume, size: int, intensity: IntensityConfig) -> VolumeSlices:
    """Put an annotated volume on the network grid, in memory."""
    images, grid = prepare_image(volume.image, volume.axis, size, intensity)
    labels = torch.empty_like(images, dtype=torch.int64)
    for first, chunk in label_chunks(volume, grid):
        labels[first : first + len(chunk)] = chunk
    return VolumeSlices(images, labels, annotated_flags(volume), grid)
