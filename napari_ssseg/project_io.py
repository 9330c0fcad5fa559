"""Build a :class:`Project` from files: image/label pairs or an MSD folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from napari_ssseg.annotation import AnnotatedVolume, Project, infer_class_names
from napari_ssseg.errors import AnnotationError
from napari_ssseg.io.msd import read_msd
from napari_ssseg.io.nifti import read_labels, read_volume

if TYPE_CHECKING:
    from napari_ssseg.data.slice_store import SliceStore, StreamedProject
    from napari_ssseg.settings.student import IntensityConfig


@dataclass
class VolumeSpec:
    """One volume named on the command line.

    ``annotated_slices=None`` means every slice holding a label counts; ``labels=None``
    makes the volume unlabelled.
    """

    image: Path
    labels: Path | None = None
    annotated_slices: list[int] | None = None
    axis: int | None = None


def load_annotated_volume(spec: VolumeSpec) -> AnnotatedVolume:
    """Read and check one volume and its labels."""
    image = read_volume(spec.image)
    if spec.labels is None:
        if spec.annotated_slices:
            raise AnnotationError(f"{spec.image}: --annotated-slices needs --labels")
        return AnnotatedVolume.unlabelled(image, spec.axis)
    labels = read_labels(spec.labels, like=image)
    return AnnotatedVolume.from_labels(image, labels, spec.axis, spec.annotated_slices)


def build_project(
    volumes: Sequence[AnnotatedVolume], class_names: Sequence[str] | None = None
) -> Project:
    """A validated project; class names default to ``class 1..C`` from the largest label."""
    names = list(class_names) if class_names else infer_class_names(volumes)
    project = Project(list(volumes), names)
    project.validate()
    return project


def load_project(specs: Sequence[VolumeSpec], class_names: Sequence[str] | None = None) -> Project:
    """Read every volume named in ``specs`` and build a validated project."""
    return build_project([load_annotated_volume(s) for s in specs], class_names)


def load_project_streamed(
    specs: Sequence[VolumeSpec],
    class_names: Sequence[str] | None,
    store: SliceStore,
    size: int,
    intensity: IntensityConfig,
) -> StreamedProject:
    """Like :func:`load_project` for many volumes: each is read, checked, prepared on the
    (size x size) grid into ``store`` and released before the next is read, so memory holds
    one volume's voxels at a time (training then reads slices from ``store``)."""
    from napari_ssseg.data.slice_store import stream_volumes

    volumes = (load_annotated_volume(spec) for spec in specs)
    return stream_volumes(volumes, class_names, store, size, intensity)


def msd_specs(root: str | Path, split: str | None = None) -> tuple[list[VolumeSpec], list[str]]:
    """Volume specs of an MSD folder (a case without a label file is unlabelled) and the
    dataset's class names (classes 1..C)."""
    dataset = read_msd(root)
    specs = [VolumeSpec(case.image, case.label) for case in dataset.split(split)]
    names = [dataset.labels[i] for i in sorted(dataset.labels) if i > 0]
    return specs, names
