"""Benchmark scores: per-class 3-D Dice (via MONAI) and their aggregation.

Label volumes are int arrays of shape (X, Y, Z) with classes 1..C and 0 for background.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot

from napari_ssseg.errors import InputError


def _one_hot(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """(X, Y, Z) class indices -> (1, C + 1, X, Y, Z) float one-hot, background in channel 0."""
    indices = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))[None, None]
    return one_hot(indices, num_classes=num_classes + 1, dim=1)


def dice_per_class(
    pred: np.ndarray,
    ref: np.ndarray,
    num_classes: int,
    exclude_slices: Sequence[int] = (),
    axis: int = 2,
) -> np.ndarray:
    """3-D Dice of each class 1..C over every slice along ``axis`` except ``exclude_slices``.

    The kept slices are scored together as one sub-volume (one Dice per class, not a mean
    over slices); excluding the annotated slices keeps the score on what the method inferred.

    Args:
        pred: predicted labels, int (X, Y, Z).
        ref: reference labels, same shape.
        num_classes: C.
        exclude_slices: slice indices along ``axis`` left out of the score.
        axis: the slicing axis.

    Returns:
        float64 array of shape (C,). A class absent from the reference in the scored region is
        NaN, even when the prediction has it (MONAI's ``ignore_empty``): such a class has no
        defined overlap, and :func:`mean_dice` skips it.
    """
    if pred.shape != ref.shape or pred.ndim != 3:
        raise InputError(f"pred {pred.shape} and ref {ref.shape} must be 3-D of the same shape")
    if axis not in (0, 1, 2):
        raise InputError(f"axis must be 0, 1 or 2, got {axis}")
    for name, labels in (("pred", pred), ("ref", ref)):
        if labels.size and (labels.min() < 0 or labels.max() > num_classes):
            raise InputError(
                f"{name} holds labels {labels.min()}..{labels.max()}, expected 0..{num_classes}"
            )
    depth = pred.shape[axis]
    excluded = sorted({int(i) for i in exclude_slices})
    bad = [i for i in excluded if not 0 <= i < depth]
    if bad:
        raise InputError(f"excluded slices {bad} are outside 0..{depth - 1} on axis {axis}")
    if len(excluded) == depth:
        raise InputError("every slice is excluded: nothing left to score")
    pred_kept = np.delete(pred, excluded, axis=axis)
    ref_kept = np.delete(ref, excluded, axis=axis)
    scores = compute_dice(
        _one_hot(pred_kept, num_classes),
        _one_hot(ref_kept, num_classes),
        include_background=False,
        ignore_empty=True,
    )
    return scores[0].double().numpy()


def mean_dice(per_class: np.ndarray | Sequence[float]) -> float:
    """Mean over classes ignoring NaN; NaN when every entry is NaN (or there is none)."""
    values = np.asarray(per_class, dtype=np.float64)
    if values.size == 0 or np.all(np.isnan(values)):
        return float("nan")
    return float(np.nanmean(values))


def summarise(values: Sequence[float]) -> tuple[float, float]:
    """(mean, population std) over volumes, ignoring NaN; (nan, nan) if nothing is finite."""
    array = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        # All-NaN input is an expected outcome here (it yields NaN), not a problem to report.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(array)), float(np.nanstd(array))
