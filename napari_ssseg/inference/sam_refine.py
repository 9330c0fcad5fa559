"""Refine the U-Net's prediction with the foundation model, class by class, where it measures
better on the user's annotated slices.

On each slice with predicted foreground, every class's predicted region prompts the foundation
model (the one the model was configured with, LiteMedSAM by default) with its bounding box,
plus points where the model's card says it was trained with points, as the SAM teacher
prompts it during training. A pixel inside several classes' masks takes the class with the
smaller mask (:mod:`~napari_ssseg.foundation.mask_labels`: a wall's box gives a filled mask
that holds the cavity inside it).

Measured choice: on the annotated slices the U-Net's own prediction (before the user's labels
replace it) and its refinement are both scored against the user's labels, per class, by Dice
pooled over those slices. In ``auto`` mode a class uses its refined masks where they score
strictly higher, or where they reach ``trust`` (``prediction.refine_trust``): the U-Net
trained on those slices and reproduces them almost exactly, so beating it there says little,
while the foundation model never saw the labels and scores there about as elsewhere. A tie
below ``trust``, and a class with no voxel on any annotated slice, keep the U-Net's. Then,
slice by slice, a class that takes the refined masks keeps the U-Net's where the two masks
agree (Dice) less than ``agreement`` (``prediction.refine_agreement``): where the foundation
model fails it leaks or loses the object, where it helps it moves the boundary. ``sam`` uses
every class's refined masks on every slice. On an annotated slice the prompts come from the
U-Net's own labels there (the user's replace them only in the output); on the other slices
from the U-Net's labels after the connectivity filter (``keep_connected``), which the
annotated slices, holding the filter's seeds, cannot go through.

Memory: one slice at a time (its image normalised on the fly, the masks of its classes); the
whole-volume arrays are the prediction's own, changed in place.

Uncertainty from both: on refined slices a voxel's uncertainty is the larger of the U-Net's
normalised entropy and the disagreement of the two models (1 where the U-Net's label and the
refined label differ, else 0). A hard 1 rather than a softer score: the entropy already
carries the U-Net's graded confidence, and a voxel the two models label differently is one the
user should look at whatever either model's confidence, so it ranks with the most uncertain.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_ssseg.annotation import AnnotatedVolume, slice_index
from napari_ssseg.data.intensity import apply_intensity, intensity_transform
from napari_ssseg.errors import InputError
from napari_ssseg.foundation.prompts import class_prompts
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.prediction import REFINE_MODES, FoundationSettings
from napari_ssseg.settings.student import IntensityConfig


def resolve_refine(mode: str | None, config: TrainConfig, num_classes: int) -> str:
    """The refine mode to use for a model of ``num_classes`` classes: ``mode``, else the
    model's own (:meth:`TrainConfig.refine_mode`). An unknown mode raises
    :class:`InputError`."""
    if mode is None:
        return config.refine_mode(num_classes)
    if mode not in REFINE_MODES:
        raise InputError(f"refine must be one of {', '.join(REFINE_MODES)}, not {mode!r}")
    return mode


@dataclass
class Refinement:
    """What refinement chose, and why.

    Attributes:
        mode: ``"auto"`` or ``"sam"``.
        foundation_model: the foundation model's id.
        class_names: names of classes 1..C.
        unet_dice: (C,) Dice of the U-Net on the annotated slices, None for a class with no
            voxel there.
        refined_dice: (C,) Dice of the refined masks on the same slices, None likewise.
        use_refined: (C,) whether the output takes the class from the refined masks.
        measured_on: the annotated slices the Dice values come from.
        refined_slices: unannotated slices whose labels the refinement may have changed.
        seconds: wall time of the refinement.
        trust: refined Dice at which ``auto`` took a class's refined masks regardless.
        agreement: U-Net/refined Dice on a slice below which a refined class kept the U-Net's
            masks there (``auto``).
        guarded: (C,) slices where the guard kept the U-Net's masks, per class (empty: no
            class refined).
    """

    mode: str
    foundation_model: str
    class_names: list[str]
    unet_dice: list[float | None]
    refined_dice: list[float | None]
    use_refined: list[bool]
    measured_on: list[int] = field(default_factory=list)
    refined_slices: list[int] = field(default_factory=list)
    seconds: float = 0.0
    trust: float = 1.0
    agreement: float = 0.0
    guarded: list[int] = field(default_factory=list)

    def _per_class(self) -> list[tuple[str, float | None, float | None, bool, int]]:
        """(name, U-Net Dice, refined Dice, refined used, slices guarded) per class."""
        guarded = self.guarded or [0] * len(self.class_names)
        return list(
            zip(
                self.class_names,
                self.unet_dice,
                self.refined_dice,
                self.use_refined,
                guarded,
                strict=True,
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (Dice rounded to 4 digits)."""

        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "mode": self.mode,
            "foundation_model": self.foundation_model,
            "measured_on_slices": list(self.measured_on),
            "refined_slices": list(self.refined_slices),
            "seconds": round(self.seconds, 2),
            "trust": self.trust,
            "agreement": self.agreement,
            "classes": {
                name: {
                    "unet_dice": rounded(unet),
                    "refined_dice": rounded(refined),
                    "used": "refined" if used else "unet",
                    "unet_kept_on_slices": guarded,
                }
                for name, unet, refined, used, guarded in self._per_class()
            },
        }

    def summary(self) -> str:
        """One line: per class, both Dice values and the masks used."""

        def shown(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        def used_masks(used: bool, guarded: int) -> str:
            if not used:
                return "unet"
            return f"refined (unet kept on {guarded} slice(s))" if guarded else "refined"

        parts = [
            f"{name}: unet {shown(unet)} refined {shown(refined)} -> {used_masks(used, guarded)}"
            for name, unet, refined, used, guarded in self._per_class()
        ]
        return (
            f"refine {self.mode} ({self.foundation_model}, Dice on {len(self.measured_on)} "
            f"annotated slice(s), {len(self.refined_slices)} slice(s) refined, "
            f"{self.seconds:.1f} s): " + "; ".join(parts)
        )


class DiceTally:
    """Per-class overlap counts pooled over slices: Dice = 2 sum |P & R| / (sum |P| + sum |R|)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.intersection = np.zeros(num_classes + 1, np.int64)
        self.predicted = np.zeros(num_classes + 1, np.int64)
        self.reference = np.zeros(num_classes + 1, np.int64)

    def add(self, predicted: np.ndarray, reference: np.ndarray) -> None:
        """Count one slice: predicted and reference labels (H, W) int in 0..C."""
        size = self.num_classes + 1
        predicted = np.asarray(predicted).ravel()
        reference = np.asarray(reference).ravel()
        self.intersection += np.bincount(predicted[predicted == reference], minlength=size)[:size]
        self.predicted += np.bincount(predicted, minlength=size)[:size]
        self.reference += np.bincount(reference, minlength=size)[:size]

    def dice(self) -> list[float | None]:
        """(C,) Dice of classes 1..C; None for a class the reference never holds."""
        return [
            None
            if self.reference[c] == 0
            else 2.0 * self.intersection[c] / (self.predicted[c] + self.reference[c])
            for c in range(1, self.num_classes + 1)
        ]


def choose_refined(
    unet_dice: Sequence[float | None],
    refined_dice: Sequence[float | None],
    mode: str,
    trust: float = 1.0,
) -> list[bool]:
    """Per class, whether to use the refined masks: always with ``sam``; with ``auto`` where
    the refined Dice exists and reaches ``trust`` or is strictly higher than the U-Net's."""
    if mode == "sam":
        return [True] * len(unet_dice)
    return [
        refined is not None and (refined >= trust or (unet is not None and refined > unet))
        for unet, refined in zip(unet_dice, refined_dice, strict=True)
    ]


def compose(unet: np.ndarray, refined: np.ndarray, use_refined: Sequence[bool]) -> np.ndarray:
    """The output slice (H, W) int16 from the U-Net's and the refined labels (H, W).

    Classes not chosen keep the U-Net's pixels; each chosen class takes its refined pixels
    that no kept class holds (the measured-better class does not overwrite a class whose U-Net
    masks measured better).
    """
    chosen = np.array([False, *use_refined])
    out = np.where(chosen[unet], 0, unet).astype(np.int16)
    paint = chosen[refined] & (out == 0)
    out[paint] = refined[paint]
    return out


def _pixels_per_class(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) pixel counts of classes 1..C in ``labels`` (any shape, int)."""
    size = num_classes + 1
    return np.bincount(np.asarray(labels).ravel(), minlength=size)[1:size]


def slice_agreement(unet: np.ndarray, refined: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) Dice between the U-Net's and the refined labels (H, W) of one slice, per class
    1..C; 1 for a class neither holds."""
    unet, refined = np.asarray(unet).ravel(), np.asarray(refined).ravel()
    both = _pixels_per_class(unet[unet == refined], num_classes)
    total = _pixels_per_class(unet, num_classes) + _pixels_per_class(refined, num_classes)
    return np.divide(2.0 * both, total, out=np.ones(num_classes), where=total > 0)


def combine_uncertainty(entropy: np.ndarray, unet: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """Voxel uncertainty (H, W) float32: max(U-Net entropy, 1 where the labels differ)."""
    return np.maximum(entropy, (unet != refined).astype(np.float32))


class SliceRefiner:
    """Prompts a foundation model per class with the box of each predicted region.

    Args:
        backend: a :class:`~napari_ssseg.foundation.backend.FoundationBackend` (or anything
            with its ``card``, ``slice_transform``, ``decode_prompts`` and what
            :func:`~napari_ssseg.foundation.embedding_cache.embed_slices` uses).
        cache: embedding cache or None.
        num_classes: C (classes 1..C).
        seed: base seed of point sampling (slice z draws with ``seed + z``).
    """

    def __init__(self, backend: Any, cache: Any, num_classes: int, seed: int = 0) -> None:
        self.backend = backend
        self.cache = cache
        self.num_classes = num_classes
        self.seed = seed
        self.use_points = "point" in backend.card.trained_prompts

    def refine(self, image: np.ndarray, labels: np.ndarray, z: int = 0) -> np.ndarray:
        """Refined labels (H, W) int16 of one slice.

        Args:
            image: (H, W) float in [0, 1], the slice at its source resolution.
            labels: (H, W) int, the prediction whose regions give the prompts.
            z: slice index (seeds the point sampling).

        A slice without foreground comes back as background without running the model.
        """
        from napari_ssseg.foundation.embedding_cache import embed_slices
        from napari_ssseg.foundation.mask_labels import labels_from_mask_logits

        transform = self.backend.slice_transform(image.shape)
        points = 3 if self.use_points else 0
        prompts, classes = class_prompts(labels, self.num_classes, transform, points, self.seed + z)
        if not prompts:
            return np.zeros(labels.shape, np.int16)
        embedding, _ = embed_slices(self.backend, [image], self.cache)
        logits = self.backend.decode_prompts(embedding.expand(len(prompts), -1, -1, -1), prompts)
        logits = transform.logits_to_slice(logits.float().cpu())[:, 0].numpy()  # (N, H, W)
        return labels_from_mask_logits(logits, np.asarray(classes))


def refine_prediction(
    labels: np.ndarray,
    uncertainty: np.ndarray,
    scores: np.ndarray,
    annotation: AnnotatedVolume,
    unet_on_annotated: dict[int, np.ndarray],
    refiner: SliceRefiner,
    mode: str,
    class_names: Sequence[str],
    intensity: IntensityConfig,
    foundation_model: str,
    on_progress: Callable[[float], None] | None = None,
    trust: float = 1.0,
    agreement: float = 0.0,
) -> Refinement:
    """Measure, choose and apply the refinement, in place, one slice at a time.

    Args:
        labels: (X, Y, Z) int16, the U-Net's labels with the user's on annotated slices;
            refined classes replace the U-Net's on unannotated slices.
        uncertainty: (X, Y, Z) float32 entropy; raised to 1 where the two models disagree.
        scores: (N,) slice scores along ``annotation.axis``, recomputed on refined slices.
        annotation: the image, the user's labels and the annotated slices.
        unet_on_annotated: annotated slice index -> (H, W) the U-Net's own labels there.
        refiner: prompts the foundation model.
        mode: ``"auto"`` or ``"sam"``.
        class_names: names of classes 1..C.
        intensity: how the image was normalised for the U-Net (the foundation model takes
            the same [0, 1] slices at their source resolution).
        foundation_model: id reported in the result.
        on_progress: called with the fraction done after each slice; may raise to cancel.
        trust: with ``auto``, refined Dice on the annotated slices at which a class takes the
            refined masks whatever the U-Net's (:func:`choose_refined`).
        agreement: with ``auto``, a refined class keeps the U-Net's masks on a slice where the
            two agree less than this (:func:`slice_agreement`); 0 never.
    """
    if mode not in ("auto", "sam"):
        raise InputError(f"refine_prediction takes mode auto or sam, not {mode!r}")
    started = time.perf_counter()
    axis = annotation.axis
    data = annotation.image.data
    transform = intensity_transform(data, intensity)
    annotated = sorted(unet_on_annotated)
    candidates = [
        z
        for z in range(annotation.num_slices)
        if z not in unet_on_annotated and labels[slice_index(axis, z)].any()
    ]
    done, total = 0, len(annotated) + len(candidates)

    def advance() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done / max(total, 1))

    def image_slice(z: int) -> np.ndarray:
        return apply_intensity(transform, data[slice_index(axis, z)])

    unet_tally, refined_tally = DiceTally(refiner.num_classes), DiceTally(refiner.num_classes)
    for z in annotated:
        unet = unet_on_annotated[z]
        user = annotation.labels[slice_index(axis, z)]
        refined = refiner.refine(image_slice(z), unet, z) if unet.any() else unet
        unet_tally.add(unet, user)
        refined_tally.add(refined, user)
        advance()
    unet_dice, refined_dice = unet_tally.dice(), refined_tally.dice()
    use_refined = choose_refined(unet_dice, refined_dice, mode, trust)

    chosen = np.array([False, *use_refined])
    todo = [z for z in candidates if chosen[labels[slice_index(axis, z)]].any()]
    total = len(annotated) + len(todo)
    guard = agreement if mode == "auto" else 0.0
    refined_classes = np.asarray(use_refined)
    guarded = np.zeros(refiner.num_classes, np.int64)
    for z in todo:
        key = slice_index(axis, z)
        unet = labels[key]
        refined = refiner.refine(image_slice(z), unet, z)
        agrees = slice_agreement(unet, refined, refiner.num_classes) >= guard
        guarded += refined_classes & ~agrees
        out = compose(unet, refined, list(refined_classes & agrees))
        uncertainty[key] = combine_uncertainty(uncertainty[key], unet, out)
        scores[z] = float(uncertainty[key].mean(dtype=np.float64))
        labels[key] = out
        advance()
    if on_progress is not None:
        on_progress(1.0)
    return Refinement(
        mode=mode,
        foundation_model=foundation_model,
        class_names=list(class_names),
        unet_dice=unet_dice,
        refined_dice=refined_dice,
        use_refined=use_refined,
        measured_on=annotated,
        refined_slices=todo,
        seconds=time.perf_counter() - started,
        trust=trust,
        agreement=guard,
        guarded=[int(g) for g in guarded],
    )


def load_refiner(
    foundation: FoundationSettings,
    num_classes: int,
    device: torch.device,
    seed: int = 0,
    backend: Any = None,
    cache: Any = None,
) -> SliceRefiner:
    """A :class:`SliceRefiner` for the foundation model and embedding cache of
    ``foundation`` (loaded here unless given); ``seed`` seeds the prompts' points."""
    from napari_ssseg.foundation.loading import embedding_cache, load_backend

    if backend is None:
        backend = load_backend(foundation).to(device)
    if cache is None:
        cache = embedding_cache(foundation)
    return SliceRefiner(backend, cache, num_classes, seed)
