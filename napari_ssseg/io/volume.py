"""The in-memory volume: voxels plus the geometry needed to write results back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np


def strip_nifti_suffix(name: str) -> str:
    """``"case_01.nii.gz"`` -> ``"case_01"``; other names are returned without their suffix."""
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


@dataclass
class Volume:
    """A 3-D image on a voxel grid.

    Attributes:
        data: voxel array of shape (X, Y, Z) in the file's storage order (nibabel's order).
        affine: (4, 4) voxel-to-world matrix of the source file.
        header: the source NIfTI header, kept so written results carry the same metadata.
        path: the file it was read from, if any.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    path: Path | None = None
    name: str = field(default="")

    def __post_init__(self) -> None:
        if not self.name:
            self.name = strip_nifti_suffix(self.path.name) if self.path else "volume"

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (X, Y, Z): header zooms if present, else affine column norms."""
        if self.header is not None:
            zooms = self.header.get_zooms()[:3]
            if len(zooms) == 3 and all(z > 0 for z in zooms):
                return tuple(float(z) for z in zooms)  # type: ignore[return-value]
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> tuple[str, str, str]:
        """Anatomical axis codes of (X, Y, Z), e.g. ``('R', 'A', 'S')``."""
        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]
