"""Feature-level losses between the student's projected features and a frozen foundation
model's image embeddings of the same slices (pure functions, no state).

- :func:`distillation_loss` (UnCoL's feature distillation): 1 - cosine similarity at every
  location, averaged with per-location weights;
- :func:`prototype_loss` (BARL's region prototypes): per class, the weighted average feature of
  the class's region in each space; 1 - cosine between the two averages, mean over the classes
  present.

Shapes: B slices, D feature channels (256 for Segment-Anything embeddings, fewer for a
reduced :class:`~napari_ssseg.training.embedding_bank.EmbeddingBank`), K classes
(background included), h x w the feature grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

COSINE_EPS = 1e-8


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Weighted mean cosine distance between two feature maps.

    Args:
        student: (B, D, h, w) projected student features (gradients flow).
        teacher: (B, D, h, w) foundation embeddings (treated as constants).
        weight: (B, h, w) in [0, 1]: how much each location counts (0 where the augmentation
            moved in areas from outside the slice).

    Returns:
        sum(weight * (1 - cos)) / sum(weight), a scalar in [0, 2]; 0 when no location counts.
    """
    cosine = F.cosine_similarity(student, teacher.detach(), dim=1, eps=COSINE_EPS)
    weight = weight.detach()
    return (weight * (1.0 - cosine)).sum() / weight.sum().clamp_min(1e-6)


def class_prototypes(
    features: torch.Tensor, masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked average features per class, pooled over the batch.

    Args:
        features: (B, D, h, w).
        masks: (B, K, h, w) non-negative weights of each location for each class.

    Returns:
        prototypes (K, D) (zero for a class without mass) and each class's mass (K,).
    """
    mass = masks.sum(dim=(0, 2, 3))
    sums = torch.einsum("bkhw,bdhw->kd", masks, features)
    return sums / mass.clamp_min(1e-6)[:, None], mass


def prototype_loss(
    student: torch.Tensor, teacher: torch.Tensor, masks: torch.Tensor, min_mass: float = 1.0
) -> torch.Tensor:
    """Mean over present classes of 1 - cos(student prototype, teacher prototype).

    Args:
        student: (B, D, h, w) projected student features (gradients flow).
        teacher: (B, D, h, w) foundation embeddings (treated as constants).
        masks: (B, K, h, w) non-negative class weights (see :func:`region_masks`).
        min_mass: a class counts when its mask sums to at least this (about one location).

    Returns:
        A scalar in [0, 2]; 0 (still attached to ``student``) when no class is present.
    """
    masks = masks.detach()
    student_protos, mass = class_prototypes(student, masks)
    teacher_protos, _ = class_prototypes(teacher.detach(), masks)
    present = mass >= min_mass
    if not bool(present.any()):
        return student.sum() * 0.0
    cosine = F.cosine_similarity(
        student_protos[present], teacher_protos[present], dim=1, eps=COSINE_EPS
    )
    return (1.0 - cosine).mean()


def region_masks(
    labels: torch.Tensor, keep: torch.Tensor, num_classes: int, size: tuple[int, int]
) -> torch.Tensor:
    """Class regions on the feature grid from a label map on the image grid.

    Args:
        labels: (B, 1, S, S) int64 class indices.
        keep: (B, 1, S, S) weights in [0, 1] of the labels (0: unknown or outside the slice).
        num_classes: K, background included.
        size: (h, w) of the feature grid.

    Returns:
        (B, K, h, w): the kept fraction of each feature cell labelled with each class
        (area averaging, so a cell on a boundary belongs partly to both sides).
    """
    onehot = F.one_hot(labels[:, 0].clamp_min(0), num_classes).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(onehot * keep.float(), size)
