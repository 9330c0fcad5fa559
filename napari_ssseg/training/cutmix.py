"""Imbalance-aware CutMix (DINO-Mix): boxes pasted between slices, placed on rare classes.

A box covering ``cutmix.area`` of the slice is cut from a source slice and pasted at the same
place into a destination slice, in the images and in their targets alike. Its centre is drawn
from a per-pixel distribution that weights each pixel of the source by the inverse frequency of
its class (the label, or on an unannotated slice the teachers' argmax), so small structures get
pasted into new contexts more often; that distribution is mixed with the uniform one by a weight
annealed from 1 (rare-class-favouring) to 0 (uniform) over training.

Two kinds of mixing, both after augmentation:

- labelled into labelled: labels are pasted with the image, so the supervised loss takes the
  mixed (B, 1, S, S) labels unchanged;
- labelled and unlabelled, in both directions (bidirectional copy-paste): half the unlabelled
  batch gets a box of a labelled slice pasted in, the other half is a labelled slice with a box
  of the unlabelled slice pasted in. Each teacher's (B, K + 1, S, S) target (K probabilities,
  then confidence) becomes the one-hot label with confidence 1 wherever the mixed pixel came
  from the labelled slice, and the teacher's own target (with its own confidence) elsewhere,
  so every teacher's loss consumes it unchanged.

MONAI's ``CutMix`` cannot serve here: it places one box corner uniformly for the whole batch,
draws the box size from a Beta distribution, clips the box at the border (so its area is not
the one asked for) and mixes labels as soft class weights (classification). The weighted
placement instead uses MONAI's class-ratio crop-centre sampler, which also keeps the box inside
the slice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.networks.utils import one_hot
from monai.transforms.utils import generate_label_classes_crop_centers, map_classes_to_indices

from napari_ssseg.data.pool import SlicePool
from napari_ssseg.settings.parts import CutMixSettings

RANDOM_STREAM = 0xC07
"""Spawn key of the CutMix random stream, so it is independent of the loop's slice draws and
augmentation (seeded with the same seed) and leaves them untouched."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box of a slice, in pixels (rows ``top:top + height``, columns
    ``left:left + width``)."""

    top: int
    left: int
    height: int
    width: int

    @property
    def region(self) -> tuple[object, slice, slice]:
        """Index of the box in the last two axes of any (..., S, S) tensor."""
        return (
            Ellipsis,
            slice(self.top, self.top + self.height),
            slice(self.left, self.left + self.width),
        )


def class_frequencies(labels: Sequence[torch.Tensor], num_classes: int) -> torch.Tensor:
    """(K,) float64 share of each class among the pixels of ``labels``.

    Args:
        labels: int tensors of any shape with values in 0..K-1, e.g. the (N, S, S) annotated
            slices of each volume.
        num_classes: K, background included.

    Counts are add-one smoothed, so a class missing from the annotation keeps a finite inverse.
    """
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for block in labels:
        counts += torch.bincount(block.flatten().cpu(), minlength=num_classes)[:num_classes]
    return (counts + 1.0) / (counts.sum() + num_classes)


def rare_weight(fraction: float, anneal: float) -> float:
    """Weight of the rare-class-favouring placement at training progress ``fraction``: 1 at
    the start, falling linearly to 0 (uniform placement) at progress ``anneal``; 0 throughout
    when ``anneal`` is 0."""
    if anneal <= 0:
        return 0.0
    return min(max(1.0 - fraction / anneal, 0.0), 1.0)


def box_size(shape: tuple[int, int], area: float) -> tuple[int, int]:
    """(height, width) of a box covering ``area`` of an (H, W) slice, same aspect ratio, at
    least one pixel."""
    side = math.sqrt(area)
    return tuple(min(n, max(1, round(n * side))) for n in shape)  # type: ignore[return-value]


def placement_ratios(
    classes: torch.Tensor, inverse_frequency: torch.Tensor, weight: float
) -> list[float]:
    """Probability that the box centre lands on a pixel of each class.

    Each pixel x of class c(x) has probability ``weight * p_rare(x) + (1 - weight) / N`` with
    p_rare(x) proportional to ``inverse_frequency[c(x)]``; summed over the pixels of a class.

    Args:
        classes: (S, S) int class of each pixel in 0..K-1.
        inverse_frequency: (K,) inverse class frequencies.
        weight: rare-class weight in [0, 1] (:func:`rare_weight`).
    """
    counts = torch.bincount(classes.flatten().cpu(), minlength=len(inverse_frequency))
    counts = counts[: len(inverse_frequency)].double()
    rare = counts * inverse_frequency.double()
    ratios = weight * rare / rare.sum() + (1.0 - weight) * counts / counts.sum()
    return ratios.tolist()


def sample_box(
    classes: torch.Tensor,
    inverse_frequency: torch.Tensor,
    area: float,
    weight: float,
    rand_state: np.random.RandomState,
) -> Box:
    """A box of ``area`` of the slice, inside it, centred on a pixel drawn by
    :func:`placement_ratios` (moved inward where the box would cross the border).

    Args:
        classes: (S, S) int class of each pixel of the slice the box is cut from.
        inverse_frequency: (K,) inverse class frequencies.
        area: fraction of the slice the box covers, in (0, 1).
        weight: rare-class weight in [0, 1].
        rand_state: the random stream to draw from.
    """
    shape = (int(classes.shape[0]), int(classes.shape[1]))
    height, width = box_size(shape, area)
    flat = classes.cpu().numpy()
    indices = map_classes_to_indices(flat[None], len(inverse_frequency))
    ratios = placement_ratios(classes, inverse_frequency, weight)
    ((row, column),) = generate_label_classes_crop_centers(
        (height, width), 1, shape, indices, ratios, rand_state, warn=False
    )
    return Box(row - height // 2, column - width // 2, height, width)


def paste(destination: torch.Tensor, source: torch.Tensor, box: Box) -> torch.Tensor:
    """A copy of (..., S, S) ``destination`` with ``box`` taken from ``source`` (same shape)."""
    mixed = destination.clone()
    mixed[box.region] = source[box.region]
    return mixed


def labels_as_target(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K + 1, S, S) teacher-style target of (B, 1, S, S) int labels: one-hot class
    probabilities, then confidence 1."""
    probs = one_hot(labels, num_classes).float()
    return torch.cat([probs, torch.ones_like(probs[:, :1])], dim=1)


def target_classes(targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, S, S) class of each pixel by the teachers: argmax of their probabilities weighted by
    their confidence; background where no teacher is confident.

    Args:
        targets: each teacher's (B, K + 1, S, S) target (probabilities, then confidence).
    """
    votes = sum(target[:, :-1] * target[:, -1:] for target in targets)
    return torch.as_tensor(votes).argmax(dim=1)


class ImbalanceCutMix:
    """The loop's CutMix step: decides whether a step mixes, pairs slices and mixes them.

    Uses its own random stream (seeded from the loop's seed), so with ``prob`` 0 a run
    is identical to one without CutMix.
    """

    def __init__(self, frequencies: torch.Tensor, settings: CutMixSettings, seed: int):
        """``frequencies``: (K,) class frequencies (:func:`class_frequencies`)."""
        self.inverse_frequency = 1.0 / frequencies.double()
        self.num_classes = len(frequencies)
        self.area = settings.area
        self.prob = settings.prob
        self.anneal = settings.anneal
        stream = np.random.SeedSequence(seed, spawn_key=(RANDOM_STREAM,))
        self.rand_state = np.random.RandomState(stream.generate_state(1)[0])

    @classmethod
    def from_pool(cls, pool: SlicePool, settings: CutMixSettings, seed: int) -> ImbalanceCutMix:
        """Class frequencies from the annotated slices of ``pool``."""
        annotated = [prepared.labels[prepared.annotated] for prepared in pool.volumes]
        return cls(class_frequencies(annotated, pool.num_classes + 1), settings, seed)

    def fires(self) -> bool:
        """Whether this step mixes (probability ``cutmix.prob``)."""
        return bool(self.rand_state.random_sample() < self.prob)

    def box(self, classes: torch.Tensor, fraction: float) -> Box:
        """A box cut from a slice whose (S, S) pixel ``classes`` are given, at progress
        ``fraction``."""
        weight = rare_weight(fraction, self.anneal)
        return sample_box(classes, self.inverse_frequency, self.area, weight, self.rand_state)

    def mix(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        unlabelled: torch.Tensor | None,
        targets: list[torch.Tensor],
        fraction: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        """Mix a step's batches.

        Args:
            images: (B, C, S, S) labelled inputs; labels: their (B, 1, S, S) int labels.
            unlabelled: (U, C, S, S) unlabelled inputs, or None when no teacher is active.
            targets: each active teacher's (U, K + 1, S, S) target for ``unlabelled``.
            fraction: training progress in [0, 1] (anneals the placement).

        Returns:
            The mixed images, labels, unlabelled inputs and targets, same shapes. The
            unlabelled batch is mixed with the labelled one as given (before labelled slices
            are mixed among themselves).
        """
        if unlabelled is not None:
            unlabelled, targets = self._mix_with_unlabelled(
                images, labels, unlabelled, targets, fraction
            )
        images, labels = self._mix_labelled(images, labels, fraction)
        return images, labels, unlabelled, targets

    def _mix_labelled(
        self, images: torch.Tensor, labels: torch.Tensor, fraction: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each labelled slice gets a box of another one of the batch (a random shift of the
        batch order pairs them, so no slice is paired with itself)."""
        count = len(images)
        if count < 2:
            return images, labels
        shift = self.rand_state.randint(1, count)
        classes = labels[:, 0].cpu()
        mixed_images, mixed_labels = images.clone(), labels.clone()
        for i in range(count):
            j = (i + shift) % count
            box = self.box(classes[j], fraction)
            mixed_images[i] = paste(images[i], images[j], box)
            mixed_labels[i] = paste(labels[i], labels[j], box)
        return mixed_images, mixed_labels

    def _mix_with_unlabelled(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        unlabelled: torch.Tensor,
        targets: list[torch.Tensor],
        fraction: float,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Bidirectional copy-paste: even positions of the unlabelled batch get a labelled box
        pasted in; odd ones become a labelled slice with a box of the unlabelled one. Each is
        paired with a random labelled slice; the box is placed on the classes of the slice it
        is cut from (labels, or the teachers' argmax)."""
        label_targets = labels_as_target(labels, self.num_classes)
        label_classes = labels[:, 0].cpu()
        teacher_classes = target_classes(targets).cpu()
        mixed = unlabelled.clone()
        mixed_targets = [target.clone() for target in targets]
        for j in range(len(unlabelled)):
            i = self.rand_state.randint(len(images))
            if j % 2 == 0:
                box = self.box(label_classes[i], fraction)
                mixed[j] = paste(unlabelled[j], images[i], box)
                for out, target in zip(mixed_targets, targets, strict=True):
                    out[j] = paste(target[j], label_targets[i], box)
            else:
                box = self.box(teacher_classes[j], fraction)
                mixed[j] = paste(images[i], unlabelled[j], box)
                for out, target in zip(mixed_targets, targets, strict=True):
                    out[j] = paste(label_targets[i], target[j], box)
        return mixed, mixed_targets
