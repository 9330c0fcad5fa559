"""Intensity normalisation to [0, 1] for CT (Hounsfield window) and MRI (percentile clip)."""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import ScaleIntensityRange, Transform
from monai.transforms.utils_pytorch_numpy_unification import percentile

from napari_ssseg.settings.student import MODALITIES, IntensityConfig


def detect_modality(data: np.ndarray) -> str:
    """``"ct"`` if the volume holds air-like values (<= -500, as HU do), else ``"mr"``."""
    return "ct" if float(np.min(data)) <= -500.0 else "mr"


def intensity_transform(data: np.ndarray, config: IntensityConfig) -> Transform:
    """The MONAI transform mapping voxels of ``data`` to [0, 1] according to ``config``.

    Volume-wide statistics (the modality, MRI percentiles) are taken from the whole of
    ``data`` here, so the transform can then be applied to any part of it (a few slices at a
    time, see :func:`apply_intensity`) with the same result as to the whole.
    """
    modality = detect_modality(data) if config.modality == "auto" else config.modality
    if modality == "ct":
        low, high = config.ct_window
        return ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)
    if modality == "mr":
        # The same percentiles ScaleIntensityRangePercentiles would take of the whole volume
        # (MONAI's own percentile on the same float32 values), fixed once.
        # A read-only map (a streamed volume) is copied: torch refuses to share one silently.
        volume = torch.from_numpy(np.require(data, np.float32, ["W"]))
        low, high = (percentile(volume, q) for q in config.mr_percentiles)
        return ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)
    raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")


def apply_intensity(transform: Transform, data: np.ndarray) -> np.ndarray:
    """``transform`` (from :func:`intensity_transform`) on an array of any shape: float32."""
    out = transform(np.asarray(data, dtype=np.float32)[None])[0]
    return np.asarray(out, dtype=np.float32)


def normalise_intensity(data: np.ndarray, config: IntensityConfig) -> np.ndarray:
    """Map a volume (any shape) to float32 in [0, 1] according to ``config``."""
    return apply_intensity(intensity_transform(data, config), data)
