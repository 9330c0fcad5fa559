"""Shape-based interpolation between annotated slices (3D Slicer's "fill between slices").

Every class is turned into a signed distance map on each annotated slice (positive inside,
negative outside); slices between two consecutive annotated slices get the linear blend of the
two maps, weighted by position, and a voxel takes the class whose blended distance is largest,
provided it is positive. A label volume has shape (X, Y, Z); slices are taken along ``axis``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt

from napari_ssseg.errors import AnnotationError, InputError


def signed_distance(mask: np.ndarray, spacing: tuple[float, float], far: float) -> np.ndarray:
    """Signed distance of a 2-D mask of shape (H, W): > 0 inside, < 0 outside, float32 (H, W).

    Distances are shifted by half a pixel so that the map is continuous across the contour and
    its zero level lies on the pixel border; otherwise blending two maps biases the size by one
    pixel. A slice without the class gets ``-far`` everywhere (the shape shrinks away toward it),
    a slice entirely of the class gets ``+far`` (the EDT has no background to measure to).
    """
    if not mask.any():
        return np.full(mask.shape, -far, dtype=np.float32)
    if mask.all():
        return np.full(mask.shape, far, dtype=np.float32)
    half = 0.5 * float(np.mean(spacing))
    inside = distance_transform_edt(mask, sampling=spacing)
    outside = distance_transform_edt(~mask, sampling=spacing)
    return np.where(mask, inside - half, half - outside).astype(np.float32)


def _check_inputs(
    labels: np.ndarray, annotated: Sequence[int], axis: int, num_classes: int
) -> list[int]:
    """Validate the arguments; returns the annotated indices sorted and deduplicated."""
    if labels.ndim != 3:
        raise InputError(f"labels must be a 3-D array, got shape {labels.shape}")
    if axis not in (0, 1, 2):
        raise InputError(f"axis must be 0, 1 or 2, got {axis}")
    if num_classes < 1:
        raise InputError(f"num_classes must be at least 1, got {num_classes}")
    slices = sorted({int(i) for i in annotated})
    if not slices:
        raise AnnotationError("no annotated slice: label at least one slice to interpolate")
    depth = labels.shape[axis]
    bad = [i for i in slices if not 0 <= i < depth]
    if bad:
        raise AnnotationError(f"annotated slices {bad} are outside 0..{depth - 1} on axis {axis}")
    return slices


def interpolate_between_slices(
    labels: np.ndarray,
    annotated: Sequence[int],
    axis: int,
    num_classes: int,
    extrapolate: bool = False,
    spacing: tuple[float, float] | None = None,
) -> np.ndarray:
    """Fill the slices between annotated slices by signed-distance interpolation.

    Args:
        labels: int array (X, Y, Z); only the slices listed in ``annotated`` are read.
        annotated: indices along ``axis`` of the labelled slices (any order, duplicates ok).
        axis: the slicing axis, 0, 1 or 2.
        num_classes: C; labels hold 0 (background) and classes 1..C.
        extrapolate: outside the annotated range, copy the nearest annotated slice instead of
            leaving background.
        spacing: in-plane voxel size of the two remaining axes (in their order), so distances
            are physical; ``None`` means unit pixels.

    Returns:
        Array with the shape and (integer) dtype of ``labels``: annotated slices are copied
        exactly, slices strictly between two annotated slices are interpolated.
    """
    slices = _check_inputs(labels, annotated, axis, num_classes)
    moved = np.moveaxis(labels, axis, -1)  # (H, W, D) view: slice i is moved[..., i]
    sparse = moved[..., slices]
    if sparse.min() < 0 or sparse.max() > num_classes:
        raise AnnotationError(
            f"annotated slices hold labels {sparse.min()}..{sparse.max()}, "
            f"expected 0..{num_classes}"
        )
    if not np.array_equal(sparse, np.round(sparse)):
        raise AnnotationError("annotated slices hold non-integer label values")
    out_dtype = labels.dtype if np.issubdtype(labels.dtype, np.integer) else np.int32
    out = np.zeros(labels.shape, dtype=out_dtype)
    out_moved = np.moveaxis(out, axis, -1)  # a view, so writes land in ``out``
    sampling = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    far = float(max(moved.shape[0] * sampling[0], moved.shape[1] * sampling[1]))

    def class_maps(index: int) -> np.ndarray:
        """Signed distance maps (C, H, W) of every class on annotated slice ``index``."""
        plane = moved[..., index]
        return np.stack(
            [signed_distance(plane == c, sampling, far) for c in range(1, num_classes + 1)]
        )

    maps = class_maps(slices[0])
    for lo, hi in zip(slices[:-1], slices[1:], strict=True):
        next_maps = class_maps(hi)
        for index in range(lo + 1, hi):
            weight = (index - lo) / (hi - lo)
            blended = (1.0 - weight) * maps + weight * next_maps
            best = np.argmax(blended, axis=0)
            # Largest distance wins where classes overlap; none positive means background.
            inside = np.take_along_axis(blended, best[None], axis=0)[0] > 0
            out_moved[..., index] = np.where(inside, best + 1, 0)
        maps = next_maps
    out_moved[..., slices] = sparse
    if extrapolate:
        out_moved[..., : slices[0]] = moved[..., slices[0], None]
        out_moved[..., slices[-1] + 1 :] = moved[..., slices[-1], None]
    return out


def blended_distances(
    labels: np.ndarray,
    annotated: Sequence[int],
    num_classes: int,
    spacing: tuple[float, float] = (1.0, 1.0),
) -> dict[int, tuple[np.ndarray, float]]:
    """Interpolated signed distances of every slice strictly between two annotated slices.

    Args:
        labels: int array (Z, H, W), slices first; only annotated slices are read.
        annotated: indices of the annotated slices along Z.
        num_classes: C (classes 1..C).
        spacing: in-plane pixel size (H, W) so distances are physical.

    Returns:
        ``{z: (maps, gap)}`` with ``maps`` float32 (C, H, W), class c's blended signed
        distance at index c - 1 (> 0 inside), and ``gap`` the distance in slices from ``z`` to
        the nearer of its two annotated neighbours.
    """
    slices = sorted({int(i) for i in annotated})
    far = float(max(labels.shape[1] * spacing[0], labels.shape[2] * spacing[1]))

    def class_maps(index: int) -> np.ndarray:
        return np.stack(
            [signed_distance(labels[index] == c, spacing, far) for c in range(1, num_classes + 1)]
        )

    out: dict[int, tuple[np.ndarray, float]] = {}
    if len(slices) < 2:
        return out
    maps = class_maps(slices[0])
    for lo, hi in zip(slices[:-1], slices[1:], strict=True):
        next_maps = class_maps(hi)
        for index in range(lo + 1, hi):
            weight = (index - lo) / (hi - lo)
            blended = ((1.0 - weight) * maps + weight * next_maps).astype(np.float32)
            out[index] = (blended, float(min(index - lo, hi - index)))
        maps = next_maps
    return out
