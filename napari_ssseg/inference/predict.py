"""Whole-volume inference: pseudo-labels, uncertainty and a slice ranking.

Slices are processed in batches and written straight into the output volumes, so memory
holds the input, the outputs (int16 labels, float32 uncertainty) and one batch of
intermediates, never class probabilities or a float copy of the whole volume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_ssseg.annotation import AnnotatedVolume, default_slice_axis, slice_index
from napari_ssseg.data.connectivity import keep_connected_to_slices
from napari_ssseg.data.slice_grid import SliceGrid
from napari_ssseg.data.slices import prepare_image
from napari_ssseg.inference.sam_refine import (
    Refinement,
    load_refiner,
    refine_prediction,
    resolve_refine,
)
from napari_ssseg.io.volume import Volume
from napari_ssseg.model_store import TrainedModel
from napari_ssseg.networks.device import resolve_device
from napari_ssseg.networks.uncertainty import (
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
        uncertainty: (X, Y, Z) float32 in [0, 1]: normalised predictive entropy (on slices
            the foundation model refined, at least 1 where it and the U-Net disagree).
        slice_scores: (N,) float per slice along ``axis``: mean uncertainty.
        annotated: annotated slice indices (kept from the user).
        axis: slice axis.
        refinement: what the foundation-model refinement measured and chose; None when it
            was off.
    """

    labels: np.ndarray
    uncertainty: np.ndarray
    slice_scores: np.ndarray
    annotated: list[int]
    axis: int
    refinement: Refinement | None = None

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
    refine: str | None = None,
    foundation: Any = None,
    embedding_cache: Any = None,
) -> Prediction:
    """Predict every slice of ``annotation.image`` along ``annotation.axis``.

    The MC-dropout masks are drawn from torch's generator seeded with the model's training
    seed (in a fork of the random state, so the caller's is left as it was): the same model
    and volume give the same outputs on every run on the CPU.

    ``refine`` (:mod:`~napari_ssseg.inference.sam_refine`): ``"off"``, ``"auto"`` or
    ``"sam"``; None: the model's own (``TrainConfig.refine_mode``: ``auto`` for a model
    trained with the foundation model and for ``ssl`` with two classes or more, else
    ``off``). ``foundation`` and ``embedding_cache`` replace the model's configured foundation
    backend and embedding cache (loaded only when refinement needs them). ``on_progress``
    gets the fraction done (the U-Net pass is the first :data:`UNET_SHARE` of it when
    refining); an exception it raises stops the prediction.
    """
    config = model.config
    refine = resolve_refine(refine, config, model.num_classes)
    passes = config.prediction.passes if passes is None else passes
    torch_device = resolve_device(device or config.device)
    unet_progress = on_progress
    if refine != "off" and on_progress is not None:

        def unet_progress(fraction: float) -> None:
            on_progress(UNET_SHARE * fraction)

    network = model.network().to(torch_device)
    image = annotation.image
    images, grid = prepare_image(
        image, annotation.axis, config.student.image_size, config.student.intensity
    )

    # The outputs are the only whole-volume arrays made here: int16 labels and float32
    # uncertainty on the source grid. Class probabilities exist for one batch of slices on
    # the network grid and for a few slices at a time on the source grid.
    labels = np.zeros(image.shape, np.int16)
    uncertainty = np.zeros(image.shape, np.float32)
    num_slices = images.shape[0]
    scores = np.zeros(num_slices, np.float32)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        for first in range(0, num_slices, batch_size):
            indices = range(first, min(first + batch_size, num_slices))
            inputs = torch.stack([images[i : i + 1] for i in indices])
            probs = mc_dropout_probs(network, inputs.to(torch_device), passes).cpu()
            step = _source_batch(probs.shape[1], grid)
            for start in range(0, len(indices), step):
                part = indices[start : start + step]
                _write_on_source_grid(
                    probs[start : start + step],
                    part,
                    grid,
                    annotation.axis,
                    labels,
                    uncertainty,
                    scores,
                )
            if unet_progress is not None:
                unet_progress(indices.stop / num_slices)

    annotated = annotation.annotated_slices
    # Refinement is measured on the U-Net's own labels of the annotated slices.
    unet_on_annotated = (
        {}
        if refine == "off"
        else {i: labels[slice_index(annotation.axis, i)].copy() for i in annotated}
    )
    for i in annotated:
        key = slice_index(annotation.axis, i)
        labels[key] = annotation.labels[key]
        uncertainty[key] = 0.0
        scores[i] = 0.0
    if config.prediction.keep_connected:
        keep_connected_to_slices(labels, annotation.axis, annotated, model.num_classes)
    refinement = None
    if refine != "off":
        refinement = _refine(
            model,
            annotation,
            labels,
            uncertainty,
            scores,
            unet_on_annotated,
            refine,
            torch_device,
            foundation,
            embedding_cache,
            on_progress,
        )
    return Prediction(labels, uncertainty, scores, annotated, annotation.axis, refinement)


UNET_SHARE = 0.2
"""Part of the progress given to the U-Net pass when the foundation model refines (its
encoder, about 1 s a slice on a CPU, costs several times the U-Net's passes)."""


def _refine(
    model: TrainedModel,
    annotation: AnnotatedVolume,
    labels: np.ndarray,
    uncertainty: np.ndarray,
    scores: np.ndarray,
    unet_on_annotated: dict[int, np.ndarray],
    mode: str,
    device: torch.device,
    foundation: Any,
    embedding_cache: Any,
    on_progress: Callable[[float], None] | None,
) -> Refinement:
    """:func:`~napari_ssseg.inference.sam_refine.refine_prediction` in place, then the
    connectivity filter again (a refined mask may leave the component it came from)."""
    config = model.config
    progress = None
    if on_progress is not None:

        def progress(fraction: float) -> None:
            on_progress(UNET_SHARE + (1 - UNET_SHARE) * fraction)

    if mode == "auto" and not unet_on_annotated:
        # Nothing to measure on: every class keeps the U-Net's masks, no model is loaded.
        count = model.num_classes
        return Refinement(
            mode,
            config.foundation.model,
            list(model.class_names),
            [None] * count,
            [None] * count,
            [False] * count,
        )
    refiner = load_refiner(
        config.foundation, model.num_classes, device, config.seed, foundation, embedding_cache
    )
    refinement = refine_prediction(
        labels,
        uncertainty,
        scores,
        annotation,
        unet_on_annotated,
        refiner,
        mode,
        model.class_names,
        config.student.intensity,
        config.foundation.model,
        progress,
        trust=config.prediction.refine_trust,
        agreement=config.prediction.refine_agreement,
    )
    if config.prediction.keep_connected and refinement.refined_slices:
        keep_connected_to_slices(
            labels, annotation.axis, sorted(unet_on_annotated), model.num_classes
        )
    return refinement


SOURCE_CHUNK_VOXELS = 2**20
"""Class-probability voxels handled at once on the source grid (4 MiB as float32: one slice
of 512 x 512 with 3 classes + background, a whole batch of small slices); resampling,
normalising and the entropy hold about 7 such arrays at a time."""


def _source_batch(num_maps: int, grid: SliceGrid) -> int:
    """Slices whose (K, H, W) probability maps fit :data:`SOURCE_CHUNK_VOXELS` (at least 1)."""
    height, width = grid.source_shape
    return max(1, SOURCE_CHUNK_VOXELS // (num_maps * height * width))


def _write_on_source_grid(
    probs: torch.Tensor,
    indices: range,
    grid: SliceGrid,
    axis: int,
    labels: np.ndarray,
    uncertainty: np.ndarray,
    scores: np.ndarray,
) -> None:
    """Resample (B, K, S, S) network-grid probabilities of slices ``indices`` to the source
    grid and write their argmax into ``labels``, their normalised entropy into
    ``uncertainty`` (both (X, Y, Z)) and its slice means into ``scores`` (Z,)."""
    probs = grid.to_source(probs).clamp_min(0)
    probs = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-8)
    entropy = normalised_entropy(probs)
    scores[indices.start : indices.stop] = slice_uncertainty_scores(entropy).numpy()
    argmax = probs.argmax(dim=1).numpy().astype(np.int16)
    for j, i in enumerate(indices):
        labels[slice_index(axis, i)] = argmax[j]
        uncertainty[slice_index(axis, i)] = entropy[j].numpy()


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
