"""Whole-volume inference: pseudo-labels, uncertainty and a slice ranking.

Slices are processed in batches and written straight into the output volumes, so memory
holds the outputs plus one batch of intermediates, not every pass of every slice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from napari_ssseg.annotation import AnnotatedVolume, default_slice_axis, slice_index
from napari_ssseg.data.slices import prepare_image, stack_context
from napari_ssseg.inference.connectivity import keep_connected_to_annotation
from napari_ssseg.io.volume import Volume
from napari_ssseg.model_store import TrainedModel
from napari_ssseg.training.loop import resolve_device
from napari_ssseg.training.uncertainty import (
    mc_dropout_probs,
    normalised_entropy,
    slice_uncertainty_scores,
)


@dataclass
class Prediction:
    """Results on the source grid of one volume.

    Attributes:
        labels: (X, Y, Z) int16: the user's labels on annotated slices, argmax elsewhere
            (with ``keep_connected``, components touching no annotated voxel of their class
            are background).
        uncertainty: (X, Y, Z) float32 in [0, 1]: normalised predictive entropy.
        slice_scores: (N,) float per slice along ``axis``: mean uncertainty.
        annotated: annotated slice indices (kept from the user).
        axis: slice axis.
    """

    labels: np.ndarray
    uncertainty: np.ndarray
    slice_scores: np.ndarray
    annotated: list[int]
    axis: int

    def review_order(self) -> list[int]:
        """Unannotated slices, most uncertain first."""
        annotated = set(self.annotated)
        order = np.argsort(-self.slice_scores, kind="stable")
        return [int(i) for i in order if int(i) not in annotated]


@torch.no_grad()
def predict_volume(
    model: TrainedModel,
    annotation: AnnotatedVolume,
    passes: int | None = None,
    batch_size: int = 16,
    device: str | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> Prediction:
    """Predict every slice of ``annotation.image`` along ``annotation.axis``."""
    config = model.config
    passes = config.inference_passes if passes is None else passes
    torch_device = resolve_device(device or config.device)
    network = model.network().to(torch_device)
    image = annotation.image
    images, grid = prepare_image(image, annotation.axis, config.image_size, config.intensity)

    labels = np.zeros(image.shape, np.int16)
    uncertainty = np.zeros(image.shape, np.float32)
    num_slices = images.shape[0]
    for first in range(0, num_slices, batch_size):
        indices = range(first, min(first + batch_size, num_slices))
        inputs = torch.stack([stack_context(images, i, config.context) for i in indices])
        probs = mc_dropout_probs(network, inputs.to(torch_device), passes).cpu()
        probs = grid.to_source(probs).clamp_min(0)
        probs = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-8)
        entropy = normalised_entropy(probs).numpy()
        argmax = probs.argmax(dim=1).numpy().astype(np.int16)
        for j, i in enumerate(indices):
            labels[slice_index(annotation.axis, i)] = argmax[j]
            uncertainty[slice_index(annotation.axis, i)] = entropy[j]
        if on_progress is not None:
            on_progress(indices.stop / num_slices)

    seeds = np.zeros_like(labels)
    for i in annotation.annotated_slices:
        key = slice_index(annotation.axis, i)
        labels[key] = annotation.labels[key]
        seeds[key] = annotation.labels[key]
        uncertainty[key] = 0.0
    if config.keep_connected:
        labels, _ = keep_connected_to_annotation(labels, seeds, model.num_classes)
    per_slice = torch.from_numpy(np.moveaxis(uncertainty, annotation.axis, 0).copy())
    scores = slice_uncertainty_scores(per_slice).numpy()
    return Prediction(labels, uncertainty, scores, annotation.annotated_slices, annotation.axis)


def annotation_for_prediction(
    model: TrainedModel, annotation: AnnotatedVolume | None, image_axis: int | None, image: Volume
) -> AnnotatedVolume:
    """The annotation to predict with: the given one, the model's memory of a training
    volume, or an empty one on ``image_axis`` (default: the largest-spacing axis)."""
    if annotation is not None:
        return annotation
    known = model.annotation_for(image)
    if known is not None and (image_axis is None or image_axis == known.axis):
        return known
    axis = default_slice_axis(image.spacing) if image_axis is None else image_axis
    return AnnotatedVolume.unlabelled(image, axis)
