"""Intensity normalisation to [0, 1] for CT (Hounsfield window) and MRI (percentile clip)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from monai.transforms import ScaleIntensityRange, ScaleIntensityRangePercentiles

MODALITIES = ("auto", "ct", "mr")


@dataclass(frozen=True)
class IntensityConfig:
    """How voxel values become network inputs.

    Attributes:
        modality: ``"ct"``, ``"mr"`` or ``"auto"`` (CT when the volume reaches air, -500 HU).
        ct_window: Hounsfield window (low, high) mapped to [0, 1]; default soft tissue.
        mr_percentiles: percentiles (low, high) of the volume clipped and mapped to [0, 1].
    """

    modality: str = "auto"
    ct_window: tuple[float, float] = (-160.0, 240.0)
    mr_percentiles: tuple[float, float] = (0.5, 99.5)


def detect_modality(data: np.ndarray) -> str:
    """``"ct"`` if the volume holds air-like values (<= -500, as HU do), else ``"mr"``."""
    return "ct" if float(np.min(data)) <= -500.0 else "mr"


def normalise_intensity(data: np.ndarray, config: IntensityConfig) -> np.ndarray:
    """Map a volume (any shape) to float32 in [0, 1] according to ``config``."""
    modality = detect_modality(data) if config.modality == "auto" else config.modality
    if modality == "ct":
        low, high = config.ct_window
        scale = ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)
    elif modality == "mr":
        low, high = config.mr_percentiles
        scale = ScaleIntensityRangePercentiles(
            lower=low, upper=high, b_min=0.0, b_max=1.0, clip=True, relative=False
        )
    else:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    out = scale(np.asarray(data, dtype=np.float32)[None])[0]
    return np.asarray(out, dtype=np.float32)
