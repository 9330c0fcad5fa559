"""Prompts for a promptable decoder, sampled from a predicted mask.

Given one class's prediction on a slice (probabilities or a 0/1 mask, (H, W)), we draw

* positive points inside the predicted region, among its most confident pixels: the confident
  core holds the pixels whose probability is at least halfway between the threshold and the
  region's peak (all of a 0/1 mask), and points are drawn from the half of the core furthest
  from the core's boundary (centres of mass can lie outside non-convex shapes; these cannot);
* negative points outside the region, preferably in a ring around it, where the decoder most
  needs to know where the object stops;
* the region's bounding box.

Points are (x, y) = (column, row), SAM's order. Sampling is deterministic for a given seed.
An empty region gives ``None``: there is nothing to prompt, the caller skips that class.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from napari_ssseg.errors import InputError
from napari_ssseg.foundation.transforms import SliceTransform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptSet:
    """Prompts for one object in one coordinate frame.

    Attributes:
        points: (N, 2) float32, (x, y) pixels; N may be 0.
        labels: (N,) int64, 1 for positive and 0 for negative points.
        box: (4,) float32 (x0, y0, x1, y1) or None.
    """

    points: torch.Tensor
    labels: torch.Tensor
    box: torch.Tensor | None

    @property
    def positives(self) -> torch.Tensor:
        """(P, 2) positive points."""
        return self.points[self.labels == 1]

    @property
    def negatives(self) -> torch.Tensor:
        """(Q, 2) negative points."""
        return self.points[self.labels == 0]

    def to_input(self, transform: SliceTransform) -> PromptSet:
        """The same prompts in the encoder input frame of ``transform``."""
        box = None if self.box is None else transform.boxes_to_input(self.box)
        return PromptSet(transform.points_to_input(self.points), self.labels.clone(), box)


def _as_probability(prediction: np.ndarray) -> np.ndarray:
    prob = np.asarray(prediction)
    if prob.ndim != 2:
        raise InputError(f"a class prediction must be (H, W), got shape {prob.shape}")
    prob = prob.astype(np.float32)
    if not np.isfinite(prob).all() or prob.min() < 0 or prob.max() > 1:
        raise InputError("a class prediction must hold probabilities in [0, 1] or a 0/1 mask")
    return prob


def _pick(candidates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` rows of ``candidates`` (K, 2) without replacement (all of them if K <= count)."""
    if count <= 0 or len(candidates) == 0:
        return candidates[:0]
    if len(candidates) <= count:
        return candidates
    return candidates[np.sort(rng.choice(len(candidates), size=count, replace=False))]


def prompts_from_mask(
    prediction: np.ndarray,
    n_positive: int = 5,
    n_negative: int = 5,
    with_box: bool = True,
    threshold: float = 0.5,
    seed: int | np.random.Generator = 0,
    transform: SliceTransform | None = None,
) -> PromptSet | None:
    """Sample prompts for one object from its predicted probability or 0/1 mask (H, W).

    Args:
        prediction: (H, W) probabilities in [0, 1] or a boolean/0-1 mask, in slice pixels.
        n_positive: positive points wanted (fewer if the region has fewer pixels).
        n_negative: negative points wanted (fewer if little lies outside the region).
        with_box: add the region's bounding box.
        threshold: probability at or above which a pixel belongs to the region.
        seed: seed or generator; the same seed gives the same prompts.
        transform: when given, the prompts are returned in its encoder input frame.

    Returns:
        The prompts, or None when the region is empty (logged; nothing to prompt).
    """
    prob = _as_probability(prediction)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    region = prob >= threshold
    if not region.any():
        log.info("empty predicted region (no pixel >= %.2f): no prompt", threshold)
        return None

    core = prob >= 0.5 * (threshold + prob[region].max())
    depth = distance_transform_edt(core)
    core_rows, core_cols = np.nonzero(core)
    keep = max(n_positive, math.ceil(0.5 * len(core_rows)))
    deepest = np.argsort(-depth[core_rows, core_cols], kind="stable")[:keep]
    positives = _pick(np.stack([core_cols[deepest], core_rows[deepest]], axis=1), n_positive, rng)

    rows, cols = np.nonzero(region)
    y0, y1, x0, x1 = rows.min(), rows.max(), cols.min(), cols.max()
    margin = max(3.0, 0.25 * max(y1 - y0 + 1, x1 - x0 + 1))
    outside = distance_transform_edt(~region)
    ring = (outside > 1) & (outside <= margin + 1)
    if not ring.any():
        ring = ~region
    neg_rows, neg_cols = np.nonzero(ring)
    negatives = _pick(np.stack([neg_cols, neg_rows], axis=1), n_negative, rng)

    points = torch.from_numpy(np.concatenate([positives, negatives]).astype(np.float32))
    labels = torch.from_numpy(np.repeat([1, 0], [len(positives), len(negatives)]).astype(np.int64))
    box = torch.tensor([x0, y0, x1, y1], dtype=torch.float32) if with_box else None
    prompts = PromptSet(points, labels, box)
    return prompts if transform is None else prompts.to_input(transform)


def prompts_per_class(
    probabilities: np.ndarray,
    classes: list[int] | None = None,
    **kwargs,
) -> dict[int, PromptSet | None]:
    """:func:`prompts_from_mask` for each foreground class of (C, H, W) probabilities.

    ``classes`` defaults to 1..C-1 (channel 0 is background); keyword arguments are passed on.
    Each class draws from its own generator seeded by ``seed + class`` so classes do not
    depend on each other's draws.
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 3:
        raise InputError(f"class probabilities must be (C, H, W), got {probabilities.shape}")
    seed = kwargs.pop("seed", 0)
    if isinstance(seed, np.random.Generator):
        raise InputError("prompts_per_class takes an integer seed (one generator per class)")
    chosen = list(range(1, probabilities.shape[0])) if classes is None else classes
    return {c: prompts_from_mask(probabilities[c], seed=seed + c, **kwargs) for c in chosen}


def class_prompts(
    labels: np.ndarray,
    num_classes: int,
    transform: SliceTransform,
    points: int = 0,
    seed: int = 0,
) -> tuple[list[PromptSet], list[int]]:
    """The prompt of each class 1..``num_classes`` present in ``labels`` (H, W): its box and
    ``points`` positive and ``points`` negative points (:func:`prompts_from_mask`), in
    ``transform``'s encoder frame; and the classes they belong to."""
    prompts, classes = [], []
    for c in range(1, num_classes + 1):
        mask = (labels == c).astype(np.float32)
        prompt = prompts_from_mask(
            mask, n_positive=points, n_negative=points, transform=transform, seed=seed
        )
        if prompt is not None:
            prompts.append(prompt)
            classes.append(c)
    return prompts, classes
