"""A PNG montage of a few slices: image, reference, pseudo-labels, uncertainty."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from napari_ssseg.annotation import slice_index

_LABEL_COLOURS = np.array(
    [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
    ],
    dtype=np.float32,
)


def _grey(plane: np.ndarray) -> np.ndarray:
    low, high = np.percentile(plane, (1, 99))
    scaled = np.clip((plane - low) / max(high - low, 1e-6), 0, 1)
    return np.repeat(scaled[..., None] * 255, 3, axis=-1)


def _overlay(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    colours = _LABEL_COLOURS[1 + (np.maximum(labels, 1) - 1) % (len(_LABEL_COLOURS) - 1)]
    mask = (labels > 0)[..., None]
    return np.where(mask, 0.5 * grey + 0.5 * colours, grey)


def _heat(values: np.ndarray) -> np.ndarray:
    """Black-red-yellow-white colour map for values in [0, 1]."""
    v = np.clip(values, 0, 1)[..., None]
    return (
        np.concatenate(
            [np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1
        )
        * 255
    )


def write_montage(
    path: str | Path,
    image: np.ndarray,
    reference: np.ndarray | None,
    prediction: np.ndarray,
    uncertainty: np.ndarray,
    slices: Sequence[int],
    axis: int,
) -> Path:
    """One row per slice in ``slices``; columns: image, reference overlay (if given),
    pseudo-label overlay, uncertainty heat map. Arrays are (X, Y, Z) volumes."""
    rows = []
    for index in slices:
        key = slice_index(axis, index)
        # Show slices with the first in-plane axis vertical and the image "up" on top.
        grey = _grey(np.rot90(image[key]))
        panels = [grey]
        if reference is not None:
            panels.append(_overlay(grey, np.rot90(reference[key])))
        panels += [_overlay(grey, np.rot90(prediction[key])), _heat(np.rot90(uncertainty[key]))]
        rows.append(np.concatenate([np.pad(p, ((2, 2), (2, 2), (0, 0))) for p in panels], axis=1))
    montage = np.concatenate(rows, axis=0).astype(np.uint8)
    scale = 2  # the sample slices are ~100 pixels: double them to be readable
    picture = Image.fromarray(montage).resize(
        (montage.shape[1] * scale, montage.shape[0] * scale), Image.NEAREST
    )
    path = Path(path)
    picture.save(path)
    return path
