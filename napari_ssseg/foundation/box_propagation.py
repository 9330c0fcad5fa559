"""Segment a volume with a foundation model alone, prompted by boxes propagated between
annotated slices (the ``sam-box`` baseline).

Shapes are interpolated between annotated slices (signed distances, as ``interp`` does); on
each unannotated slice inside the annotated range, each class's interpolated region gives a
box, and the foundation model segments that box on the slice's own image; where masks overlap
the smaller one wins (:mod:`~napari_ssseg.foundation.mask_labels`). Slices outside the
annotated range stay background, as with ``interp``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from napari_ssseg.annotation import AnnotatedVolume, slice_index
from napari_ssseg.baselines.interpolation import interpolate_between_slices
from napari_ssseg.data.intensity import normalise_intensity
from napari_ssseg.foundation.backend import FoundationBackend
from napari_ssseg.foundation.embedding_cache import EmbeddingCache, embed_slices
from napari_ssseg.foundation.mask_labels import labels_from_mask_logits
from napari_ssseg.settings.student import IntensityConfig


def mask_box(mask: np.ndarray, margin: float = 2.0) -> np.ndarray | None:
    """Bounding box (x0, y0, x1, y1) of a 2-D mask (H, W) in SAM's (column, row) order,
    widened by ``margin`` pixels and clipped to the slice; None for an empty mask."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    height, width = mask.shape
    return np.array(
        [
            max(cols.min() - margin, 0.0),
            max(rows.min() - margin, 0.0),
            min(cols.max() + margin, width - 1.0),
            min(rows.max() + margin, height - 1.0),
        ],
        dtype=np.float32,
    )


@torch.no_grad()
def segment_with_propagated_boxes(
    volume: AnnotatedVolume,
    num_classes: int,
    backend: FoundationBackend,
    cache: EmbeddingCache | None = None,
    intensity: IntensityConfig | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Labels (X, Y, Z) int16 for ``volume`` from its annotated slices and the backend.

    Annotated slices keep the user's labels; slices where the interpolation holds no class
    are background.
    """
    axis = volume.axis
    spacing = tuple(s for i, s in enumerate(volume.image.spacing) if i != axis)
    shapes = interpolate_between_slices(
        volume.labels, volume.annotated_slices, axis, num_classes, spacing=spacing
    )
    images = normalise_intensity(volume.image.data, intensity or IntensityConfig())
    out = np.zeros(volume.labels.shape, dtype=np.int16)
    annotated = set(volume.annotated_slices)
    todo = [
        z
        for z in range(volume.num_slices)
        if z not in annotated and shapes[slice_index(axis, z)].any()
    ]
    for done, z in enumerate(todo):
        key = slice_index(axis, z)
        plane, image = shapes[key], images[key]
        boxes = [(c, mask_box(plane == c)) for c in range(1, num_classes + 1)]
        boxes = [(c, box) for c, box in boxes if box is not None]
        embedding, transforms = embed_slices(backend, [image], cache)
        transform = transforms[0]
        prompts = torch.stack([transform.boxes_to_input(box) for _, box in boxes])
        logits = backend.decode(embedding.expand(len(boxes), -1, -1, -1), boxes=prompts)
        logits = transform.logits_to_slice(logits)[:, 0].cpu().numpy()  # (N, H, W)
        out[key] = labels_from_mask_logits(logits, np.array([c for c, _ in boxes]))
        if on_progress is not None:
            on_progress((done + 1) / len(todo))
    for z in annotated:
        out[slice_index(axis, z)] = volume.labels[slice_index(axis, z)]
    return out
