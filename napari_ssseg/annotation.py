"""Annotation state: which slices of which volumes the user has labelled.

A :class:`Project` holds one or more :class:`AnnotatedVolume`. Per volume, slices along one
axis are *annotated* when they contain any label or were explicitly marked
annotated-but-empty; every other slice (and every slice of a volume without labels) is
unlabelled and still used for semi-supervised training.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_ssseg.errors import AnnotationError
from napari_ssseg.io.volume import Volume

MIN_SLICE_SIDE = 4
"""Fewest voxels along each in-plane side of a slice. The network resizes every slice to its
square input, so nothing breaks below this, but a slice 1 to 3 voxels wide is a line, not an
image: it holds no 2-D shape to learn and usually means the wrong slice axis."""


def default_slice_axis(spacing: Sequence[float]) -> int:
    """The axis with the largest voxel spacing; ties go to the last such axis.

    Thick-slice MRI (spacing (1.5, 1.5, 10)) gives 2; an isotropic volume gives 2 as well.
    """
    spacing = [float(s) for s in spacing]
    largest = max(spacing)
    return max(i for i, s in enumerate(spacing) if np.isclose(s, largest, rtol=1e-6))


def slice_index(axis: int, index: int) -> tuple[slice | int, ...]:
    """Numpy index selecting slice ``index`` along ``axis`` of a 3-D array."""
    key: list[slice | int] = [slice(None)] * 3
    key[axis] = index
    return tuple(key)


@dataclass
class AnnotatedVolume:
    """One image with the user's labels.

    Attributes:
        image: the image volume, data (X, Y, Z).
        labels: int16 array (X, Y, Z); 0 is background or "not labelled".
        axis: the slice axis along which annotation happens.
        marked_empty: slices the user declared annotated although they hold no label.
    """

    image: Volume
    labels: np.ndarray
    axis: int
    marked_empty: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.labels.shape != self.image.shape:
            raise AnnotationError(
                f"{self.image.name}: label grid {self.labels.shape} differs from the image "
                f"grid {self.image.shape}"
            )
        if self.axis not in (0, 1, 2):
            raise AnnotationError(
                f"{self.image.name}: slice axis must be 0, 1 or 2, not {self.axis}"
            )
        self.labels = np.asarray(self.labels, dtype=np.int16)
        self.marked_empty = {self._checked_index(i) for i in self.marked_empty}

    @classmethod
    def unlabelled(cls, image: Volume, axis: int | None = None) -> AnnotatedVolume:
        """A volume with no annotation: only the unlabelled pool learns from it."""
        axis = default_slice_axis(image.spacing) if axis is None else axis
        return cls(image, np.zeros(image.shape, np.int16), axis)

    @classmethod
    def from_labels(
        cls,
        image: Volume,
        labels: np.ndarray,
        axis: int | None = None,
        annotated_slices: Iterable[int] | None = None,
    ) -> AnnotatedVolume:
        """Build the state from a label volume.

        Without ``annotated_slices`` every slice holding a label counts as annotated. With it,
        exactly those slices count: listed slices without labels become annotated-but-empty and
        labels on any other slice are ignored (set to 0 in this copy).
        """
        axis = default_slice_axis(image.spacing) if axis is None else axis
        volume = cls(image, np.array(labels, dtype=np.int16, copy=True), axis)
        if annotated_slices is not None:
            chosen = {volume._checked_index(i) for i in annotated_slices}
            for i in range(volume.num_slices):
                if i not in chosen:
                    volume.labels[slice_index(axis, i)] = 0
            volume.marked_empty = chosen - set(volume.painted_slices())
        return volume

    @property
    def num_slices(self) -> int:
        return self.labels.shape[self.axis]

    def _checked_index(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < self.num_slices:
            raise AnnotationError(
                f"{self.image.name}: slice {index} is out of range; axis {self.axis} has "
                f"slices 0..{self.num_slices - 1}"
            )
        return index

    def painted_slices(self) -> list[int]:
        """Slices holding at least one non-zero label, sorted."""
        other = tuple(a for a in range(3) if a != self.axis)
        return [int(i) for i in np.flatnonzero(np.any(self.labels > 0, axis=other))]

    def label_values(self) -> set[int]:
        """Every label value in the volume (0 included)."""
        return {int(v) for v in np.unique(self.labels)}

    def annotated_label_values(self) -> set[int]:
        """Label values (0 included) found on the annotated slices."""
        found: set[int] = set()
        for i in self.annotated_slices:
            found.update(int(v) for v in np.unique(self.labels[slice_index(self.axis, i)]))
        return found

    @property
    def annotated_slices(self) -> list[int]:
        """Painted slices plus those marked annotated-but-empty, sorted."""
        return sorted(set(self.painted_slices()) | self.marked_empty)

    @property
    def unannotated_slices(self) -> list[int]:
        annotated = set(self.annotated_slices)
        return [i for i in range(self.num_slices) if i not in annotated]

    def check_slice_size(self) -> None:
        """Raise :class:`AnnotationError` if a slice is narrower than :data:`MIN_SLICE_SIDE`."""
        plane = tuple(s for a, s in enumerate(self.labels.shape) if a != self.axis)
        if min(plane) < MIN_SLICE_SIDE:
            raise AnnotationError(
                f"{self.image.name}: volume {self.labels.shape} is too small for the network: "
                f"its slices along axis {self.axis} are {plane[0]} x {plane[1]} voxels, at least "
                f"{MIN_SLICE_SIDE} x {MIN_SLICE_SIDE} are needed (is the slice axis right?)"
            )

    def check_image_finite(self) -> None:
        """Raise :class:`AnnotationError` if the image holds NaN or infinite voxels."""
        data = np.asarray(self.image.data)
        if data.dtype.kind not in "iufb":
            raise AnnotationError(
                f"{self.image.name}: image voxels of dtype {data.dtype} are not real numbers"
            )
        if data.dtype.kind == "f":
            bad = int(data.size - np.count_nonzero(np.isfinite(data)))
            if bad:
                raise AnnotationError(
                    f"{self.image.name}: the image holds {bad} non-finite (NaN or Inf) voxels "
                    f"out of {data.size}"
                )

    def mark_empty(self, index: int) -> None:
        """Declare slice ``index`` annotated although it holds no label."""
        self.marked_empty.add(self._checked_index(index))

    def unmark(self, index: int) -> None:
        """Withdraw an annotated-but-empty mark (painted slices stay annotated)."""
        self.marked_empty.discard(self._checked_index(index))


@dataclass
class Project:
    """Volumes that are trained together, and the class names they share.

    Attributes:
        volumes: the annotated and unlabelled volumes.
        class_names: names of classes 1..C (index 0 of the list is class 1).
    """

    volumes: list[AnnotatedVolume]
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        """C, the number of foreground classes."""
        return len(self.class_names)

    @property
    def num_annotated_slices(self) -> int:
        return sum(len(v.annotated_slices) for v in self.volumes)

    def validate(self) -> None:
        """Raise :class:`AnnotationError` unless the project can be trained."""
        if not self.volumes:
            raise AnnotationError("the project holds no volume")
        if self.num_classes < 1:
            raise AnnotationError("at least one foreground class is needed")
        for volume in self.volumes:
            bad = sorted(v for v in volume.label_values() if not 0 <= v <= self.num_classes)
            if bad:
                raise AnnotationError(
                    f"{volume.image.name}: label values {bad} are outside the class "
                    f"set 0..{self.num_classes} ({', '.join(self.class_names)})"
                )
        if self.num_annotated_slices == 0:
            raise AnnotationError(
                "no annotated slice: label at least one slice (or mark one annotated-but-empty)"
            )
        for volume in self.volumes:
            volume.check_slice_size()
            volume.check_image_finite()

    def annotated_values(self) -> set[int]:
        """Label values (0 included) found on the annotated slices of every volume."""
        found: set[int] = set()
        for volume in self.volumes:
            found |= volume.annotated_label_values()
        return found

    def warnings(self, semi_supervised: bool = False) -> list[str]:
        """Problems that do not stop training but make its result poorer than the user expects.

        One line each: only background annotated (the model learns to predict nothing), classes
        on no annotated slice (never learnt, never predicted), no background annotated (class
        borders cannot be learnt) and, for a ``semi_supervised`` method, no unannotated slice
        left to learn from. Call after :meth:`validate`.
        """
        values = self.annotated_values()
        messages: list[str] = []
        classes = range(1, self.num_classes + 1)
        absent = [c for c in classes if c not in values]
        if len(absent) == self.num_classes:
            messages.append(
                "the annotated slices hold only background (0): the model will learn to predict "
                "nothing; paint at least one structure"
            )
        elif absent:
            names = ", ".join(f"{self.class_names[c - 1]!r} ({c})" for c in absent)
            messages.append(
                f"class {names} appears on no annotated slice: the model cannot learn it and "
                "will not predict it"
            )
        if 0 not in values and not absent:
            messages.append(
                "the annotated slices hold no background (0) voxel: the model cannot learn "
                "where the classes end"
            )
        if semi_supervised and all(not v.unannotated_slices for v in self.volumes):
            messages.append(
                "every slice is annotated, so the semi-supervised teachers have nothing to "
                "learn from: training is supervised only"
            )
        return messages


def infer_class_names(volumes: Sequence[AnnotatedVolume]) -> list[str]:
    """Generic names ``class 1..C`` with C the largest label value present (at least 1)."""
    largest = max((max(v.label_values(), default=0) for v in volumes), default=0)
    return [f"class {i}" for i in range(1, max(largest, 1) + 1)]
