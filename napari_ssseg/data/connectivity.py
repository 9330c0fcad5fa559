"""Keep only predicted structures that connect in 3-D to what the user annotated.

Anatomy is continuous across slices: the organ a user labelled on a few slices is one object
(or a few) that passes through those slices. A 2-D network seeing one slice at a time cannot
know that, and marks look-alike tissue on distant slices (a 2-D U-Net trained on five left
atrium slices also marks parts of the aorta and ventricles). Per class, every 3-D connected
component of the prediction that touches none of the user's voxels of that class is set to
background. A class with no annotated voxel is left as predicted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_ssseg.annotation import slice_index

STRUCTURE = np.ones((3, 3, 3), dtype=bool)
"""26-connectivity: voxels touching at a corner are connected."""


def connected_to_seeds(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` in a 3-D connected component of ``mask`` holding a ``seed`` voxel.

    Geodesic reconstruction (seed dilated within the mask until stable): the union of the
    components touching a seed, found without an integer component map of the whole volume
    (4 bytes a voxel) that labelling every component would need. Both arguments (X, Y, Z)
    bool; returns (X, Y, Z) bool.
    """
    return ndimage.binary_propagation(seed & mask, structure=STRUCTURE, mask=mask)


def keep_connected_to_annotation(
    labels: np.ndarray, seeds: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop predicted components that no annotated voxel of their class touches.

    Args:
        labels: (X, Y, Z) int predicted labels; the user's labels must already be in place
            on the annotated slices, or components cannot reach the seeds.
        seeds: (X, Y, Z) int, the user's labels on annotated slices, 0 elsewhere.
        num_classes: C (classes 1..C).

    Returns:
        (filtered labels, same shape and dtype; bool mask of the voxels set to background).
    """
    out = labels.copy()
    removed = np.zeros(labels.shape, dtype=bool)
    for c in range(1, num_classes + 1):
        seed = seeds == c
        if not seed.any():
            continue
        mask = labels == c
        # In place: mask becomes the voxels of class c not connected to a seed.
        np.greater(mask, connected_to_seeds(mask, seed), out=mask)
        out[mask] = 0
        removed |= mask
    return out, removed


def keep_connected_to_slices(
    labels: np.ndarray, axis: int, annotated: Sequence[int], num_classes: int
) -> None:
    """:func:`keep_connected_to_annotation` in place, for labels that already hold the user's
    labels on the ``annotated`` slices along ``axis`` (those are the seeds).

    Needs no seed volume and no copy of ``labels``: beyond them it holds three (X, Y, Z)
    bool masks (a quarter of an int32 component map each).
    """
    for c in range(1, num_classes + 1):
        seed = np.zeros(labels.shape, dtype=bool)
        for i in annotated:
            key = slice_index(axis, i)
            seed[key] = labels[key] == c
        if not seed.any():
            continue
        mask = labels == c
        np.greater(mask, connected_to_seeds(mask, seed), out=mask)
        labels[mask] = 0


def keep_connected_with_labels(
    predicted: np.ndarray, labels: np.ndarray, annotated: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`keep_connected_to_annotation` for a prediction with slices first.

    Args:
        predicted: (Z, H, W) int predicted labels.
        labels: (Z, H, W) int, the user's labels (read on annotated slices only).
        annotated: (Z,) bool, the annotated slices.
        num_classes: C.

    Returns:
        (filtered labels with the user's labels on annotated slices, bool mask of the voxels
        set to background).
    """
    on_annotated = annotated[:, None, None]
    seeds = np.where(on_annotated, labels, 0)
    return keep_connected_to_annotation(
        np.where(on_annotated, seeds, predicted), seeds, num_classes
    )
