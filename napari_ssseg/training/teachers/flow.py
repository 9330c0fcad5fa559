"""Slice propagation: annotated labels carried to neighbouring slices by optical flow.

Shape continuity (:mod:`~napari_ssseg.training.teachers.shape`) blends the annotated shapes
and knows nothing of the image between them, so it fades on thick slices whose shapes change
a lot (ACDC). Neighbouring slices still show the same structures moved and deformed: the
optical flow from an annotated slice to its neighbour, computed on the images, carries the
labels over (label propagation by registration). On the first 10 ACDC ``val`` volumes with
k = 2 the labels so carried to the adjacent slices reach a per-slice Dice of 0.85 at source
resolution (0.69 copying them unchanged; two slices away 0.76) and 0.82 on the network grid,
where this teacher works; on ACDC ``train`` volumes 0.78, about what the student itself
reaches there, so it is in no preset (README, How it learns).

Confidence per pixel: the label margin after warping (low on the carried contour), the match
of the warped annotated image with the neighbour's own image (low where the flow found no
counterpart: structures appearing, vanishing), and ``flow_decay`` per further slice.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.registration import optical_flow_ilk
from skimage.transform import warp

from napari_ssseg.annotation import Project
from napari_ssseg.data.slices import SlicePool, SliceRef
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.losses import weighted_pseudo_label_loss
from napari_ssseg.training.teachers.base import PrecomputedTeacher, slice_pixel_mm


def carry_labels(
    source: np.ndarray, target: np.ndarray, probs: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``probs`` from the ``source`` slice onto the ``target`` slice.

    Args:
        source: (H, W) float image whose labels are known.
        target: (H, W) float image of the neighbouring slice, same intensity scale.
        probs: (K, H, W) class probabilities on ``source`` (one-hot labels, or carried ones).
        radius: window radius in pixels of the Lucas-Kanade flow.

    Returns:
        (probabilities (K, H, W) on ``target``, warped ``source`` image (H, W)), both
        resampled bilinearly, the flow found by iterative Lucas-Kanade from ``target`` to
        ``source`` (``skimage.registration.optical_flow_ilk``).
    """
    rows, cols = np.meshgrid(np.arange(source.shape[0]), np.arange(source.shape[1]), indexing="ij")
    flow_rows, flow_cols = optical_flow_ilk(target, source, radius=radius)
    coords = np.array([rows + flow_rows, cols + flow_cols])
    carried = np.stack([warp(p, coords, order=1, mode="edge") for p in probs])
    return carried.astype(np.float32), warp(source, coords, order=1, mode="edge")


def carried_confidence(
    probs: np.ndarray, warped: np.ndarray, target: np.ndarray, sigma: float
) -> np.ndarray:
    """(H, W) confidence in [0, 1] of labels carried onto ``target``.

    The product of the margin between the two likeliest classes and
    exp(-r / ``sigma``), r the absolute difference of the warped and the target image
    smoothed over a few pixels (a single noisy pixel does not matter; a region the flow
    could not match does).
    """
    top = np.sort(probs, axis=0)
    margin = top[-1] - top[-2] if len(probs) > 1 else top[-1]
    residual = gaussian_filter(np.abs(warped - target), sigma=2.0)
    return (margin * np.exp(-residual / sigma)).astype(np.float32)


class FlowTeacher(PrecomputedTeacher):
    """Labels of each annotated slice carried by optical flow to the unannotated slices up to
    ``flow_reach`` slices away (chained slice by slice); where two annotated slices reach the
    same slice, each pixel takes the more confident of the two."""

    name = "flow"

    def __init__(self, project: Project, pool: SlicePool, config: TrainConfig):
        self.config = config
        # Its targets, like shape continuity's, do not depend on the student; it waits as
        # long for the same reason (a small structure learnt from the labels first).
        self.start = config.shape_start
        num_classes = project.num_classes + 1
        self._targets: dict[SliceRef, torch.Tensor] = {}
        for v, (volume, prepared) in enumerate(zip(project.volumes, pool.volumes, strict=True)):
            annotated = set(volume.annotated_slices)
            if not annotated or len(annotated) == prepared.num_slices:
                continue
            pixel_mm = float(np.mean(slice_pixel_mm(volume, prepared.grid)))
            radius = max(1, round(config.flow_radius_mm / pixel_mm))
            images = prepared.images.numpy()
            labels = prepared.labels.numpy()
            found: dict[int, list[np.ndarray]] = {}
            for a in sorted(annotated):
                for step in (-1, 1):
                    probs = np.eye(num_classes, dtype=np.float32)[labels[a]].transpose(2, 0, 1)
                    for d in range(1, config.flow_reach + 1):
                        z, previous = a + step * d, a + step * (d - 1)
                        if not 0 <= z < prepared.num_slices or z in annotated:
                            break
                        probs, warped = carry_labels(images[previous], images[z], probs, radius)
                        confidence = carried_confidence(
                            probs, warped, images[z], config.flow_sigma
                        ) * config.flow_decay ** (d - 1)
                        found.setdefault(z, []).append(np.concatenate([probs, confidence[None]]))
            for z, candidates in found.items():
                stacked = np.stack(candidates)  # (N, K + 1, S, S)
                best = stacked[:, -1].argmax(axis=0)[None, None]
                self._targets[(v, z)] = torch.from_numpy(
                    np.take_along_axis(stacked, best, axis=0)[0]
                )

    def loss(
        self, logits: torch.Tensor, target: torch.Tensor, fraction: float
    ) -> tuple[torch.Tensor, float]:
        """CE toward the carried labels weighted by their confidence, at ``flow_weight``."""
        loss = weighted_pseudo_label_loss(logits, target[:, :-1], target[:, -1])
        return loss, self.config.flow_weight
