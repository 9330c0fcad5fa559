"""An annotated volume whose voxels live on disk, so a project of many volumes fits in memory.

:meth:`StoredVolume.write` saves a volume's image (float32) and labels (int16) at their own
resolution as ``.npy`` files and hands back a :class:`StoredVolume` that maps them read-only
(``np.load(mmap_mode="r")``, never pickle): the caller can then drop the in-memory volume.
What training asks of every volume (which slices are painted, which label values occur where,
whether the image is finite) is worked out once while the arrays are still in memory, so
validating and summarising a project of hundreds of volumes reads none of their voxels again;
the voxels are read (paged in by the kernel) only by what needs them: re-preparing at another
size, the foundation-model teacher, remembering the annotated slices in the model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_ssseg.annotation import AnnotatedVolume
from napari_ssseg.data.whole_folder import folder_written_whole
from napari_ssseg.io.volume import Volume

IMAGE_FILE = "image.npy"
LABELS_FILE = "labels.npy"


def content_digest(volume: AnnotatedVolume) -> str:
    """SHA-256 (hex) of a volume's image and label voxels, their shapes, dtypes and slice axis.

    Reads one slice at a time (no copy of the whole volume); a :class:`StoredVolume` answers
    with the digest taken when it was written (its arrays are read-only).
    """
    if isinstance(volume, StoredVolume):
        return volume.digest
    digest = hashlib.sha256()
    for array in (volume.image.data, volume.labels):
        digest.update(f"{array.shape}|{array.dtype.str}|".encode())
        for plane in array:
            digest.update(np.ascontiguousarray(plane).data)
    digest.update(f"axis {volume.axis}".encode())
    return digest.hexdigest()


def open_readonly(path: Path) -> np.memmap:
    """Map a ``.npy`` file read-only: no pickle, nothing read until indexed."""
    return np.load(path, mmap_mode="r", allow_pickle=False)


@dataclass(eq=False)
class StoredVolume(AnnotatedVolume):
    """An :class:`AnnotatedVolume` whose ``image.data`` and ``labels`` are read-only maps of
    ``.npy`` files, with what training asks about them computed when they were written.

    Attributes (beyond those of :class:`AnnotatedVolume`):
        digest: :func:`content_digest` of the voxels.
        presence: label value -> (Z,) bool, True on the slices (along ``axis``) holding it.
    """

    digest: str = ""
    presence: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def write(cls, volume: AnnotatedVolume, folder: Path, digest: str) -> StoredVolume:
        """Save ``volume``'s voxels into ``folder`` (reused when already complete: the folder
        is named by ``digest``) and map them; the image must have passed
        :meth:`~AnnotatedVolume.check_image_finite`."""
        if not (folder / LABELS_FILE).is_file():

            def failure(error: OSError) -> str:
                return (
                    f"cannot write {volume.image.name} to the slice store {folder.parent}: "
                    f"{error.strerror or error}"
                )

            # The labels are written last: their file marks a complete folder.
            with folder_written_whole(folder, LABELS_FILE, failure) as partial:
                np.save(partial / IMAGE_FILE, np.asarray(volume.image.data, dtype=np.float32))
                np.save(partial / LABELS_FILE, volume.labels)
        other = tuple(a for a in range(3) if a != volume.axis)
        presence = {
            value: np.any(volume.labels == value, axis=other) for value in volume.label_values()
        }
        source = volume.image
        data = open_readonly(folder / IMAGE_FILE)
        image = Volume(data, source.affine, source.header, source.path, source.name)
        return cls(
            image,
            open_readonly(folder / LABELS_FILE),
            volume.axis,
            set(volume.marked_empty),
            digest=digest,
            presence=presence,
        )

    def painted_slices(self) -> list[int]:
        painted = np.zeros(self.num_slices, dtype=bool)
        for value, slices in self.presence.items():
            if value != 0:
                painted |= slices
        return [int(i) for i in np.flatnonzero(painted)]

    def label_values(self) -> set[int]:
        return set(self.presence)

    def annotated_label_values(self) -> set[int]:
        annotated = self.annotated_slices
        return {value for value, slices in self.presence.items() if slices[annotated].any()}

    def check_image_finite(self) -> None:
        """Checked before the voxels were written; they are read-only since."""
        return None
