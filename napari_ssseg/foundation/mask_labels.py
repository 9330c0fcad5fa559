"""From one foundation-model mask per class to labels or class probabilities.

A Segment-Anything-style model answers each class's prompt with a mask of its own, and the
masks of different classes overlap. Where they nest, the inner structure is the smaller mask:
a box around a wall (ACDC's myocardium round the left ventricle) prompts a filled mask that
holds the cavity too, while the cavity's box prompts the cavity alone. So where masks overlap
the smaller one wins, not the more confident one.
"""

from __future__ import annotations

import numpy as np
import torch


def labels_from_mask_logits(logits: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(H, W) int16 labels from one mask per class: ``logits`` (N, H, W) of the classes
    ``classes`` (N,).

    A pixel inside one mask (logit above 0: foundation-model probability above one half) takes
    its class; inside several, the class whose mask covers the fewest pixels of the slice (the
    inner one where masks nest; the more confident one would let a filled wall take its
    cavity); elsewhere background.
    """
    inside = np.asarray(logits) > 0
    labels = np.zeros(inside.shape[1:], np.int16)
    areas = inside.reshape(len(inside), -1).sum(axis=1)
    for i in np.argsort(-areas, kind="stable"):  # larger first: smaller masks paint over them
        labels[inside[i]] = classes[i]
    return labels


def nested_class_probabilities(masks: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, H, W) from per-class mask probabilities ``masks`` (N, H, W) in
    [0, 1], with the smaller masks first in line: each class keeps its probability times the
    chance that no smaller mask (fewer pixels above one half) claims the pixel. Where one mask
    lies inside another the inner class wins, as in :func:`labels_from_mask_logits`; away from
    the other masks (their probabilities near 0) a class keeps its own."""
    areas = (masks > 0.5).flatten(1).sum(dim=1)
    out = masks.clone()
    unclaimed = torch.ones_like(masks[0])
    for i in torch.argsort(areas, stable=True).tolist():  # smallest first
        out[i] = masks[i] * unclaimed
        unclaimed = unclaimed * (1 - masks[i])
    return out
