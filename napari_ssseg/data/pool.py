"""All slices of a project, split into annotated and unannotated references, as training
draws them (in memory, or read from a :class:`~napari_ssseg.data.slice_store.SliceStore`)."""

from __future__ import annotations

import torch

from napari_ssseg.annotation import Project
from napari_ssseg.data.slice_store import SliceStore, StreamedProject
from napari_ssseg.data.slices import PreparedVolume, SliceRef, prepare_volume
from napari_ssseg.settings.student import IntensityConfig


class SlicePool:
    """All slices of a project, split into annotated (labelled) and unlabelled references.

    Each volume is prepared once. Without a store the prepared volumes are held in memory;
    with one (``store``, or the store of a
    :class:`~napari_ssseg.data.slice_store.StreamedProject`) they are written to disk and
    :meth:`inputs` and :meth:`targets` read only the slices asked for.
    """

    def __init__(
        self,
        project: Project,
        size: int,
        intensity: IntensityConfig,
        store: SliceStore | None = None,
    ):
        if store is None and isinstance(project, StreamedProject):
            store = project.store
        self.size = size
        self.intensity = intensity
        self.num_classes = project.num_classes
        self.volumes: list[PreparedVolume]
        if store is None:
            self.volumes = [prepare_volume(v, size, intensity) for v in project.volumes]
        else:
            self.volumes = [store.slices(v, size, intensity) for v in project.volumes]
        self.labelled: list[SliceRef] = []
        self.unlabelled: list[SliceRef] = []
        for v, prepared in enumerate(self.volumes):
            for z, is_annotated in enumerate(prepared.annotated.tolist()):
                (self.labelled if is_annotated else self.unlabelled).append((v, z))

    @property
    def slice_shape(self) -> tuple[int, int]:
        """(S, S), the side of every prepared slice."""
        return (self.size, self.size)

    def inputs(self, refs: list[SliceRef]) -> torch.Tensor:
        """(B, 1, S, S) network inputs for ``refs``."""
        return torch.stack([self.volumes[v].image_slices([z]) for v, z in refs])

    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        """(B, 1, S, S) int64 labels for ``refs``."""
        return torch.stack([self.volumes[v].label_slice(z)[None] for v, z in refs])
