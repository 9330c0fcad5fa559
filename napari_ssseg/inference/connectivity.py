"""Keep only predicted structures that connect in 3-D to what the user annotated.

Anatomy is continuous across slices: the organ a user labelled on a few slices is one object
(or a few) that passes through those slices. A 2-D network seeing one slice at a time cannot
know that, and marks look-alike tissue on distant slices (a 2-D U-Net trained on five left
atrium slices also marks parts of the aorta and ventricles). Per class, every 3-D connected
component of the prediction that touches none of the user's voxels of that class is set to
background. A class with no annotated voxel is left as predicted.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


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
    structure = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity: touching at a corner counts
    for c in range(1, num_classes + 1):
        seed = seeds == c
        if not seed.any():
            continue
        components, count = ndimage.label(labels == c, structure=structure)
        if count == 0:
            continue
        kept = np.unique(components[seed])
        drop = ~np.isin(components, kept[kept > 0]) & (components > 0)
        out[drop] = 0
        removed |= drop
    return out, removed


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
