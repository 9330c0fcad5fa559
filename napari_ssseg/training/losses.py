"""Loss terms of the training loop."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss


def supervised_loss() -> DiceCELoss:
    """Dice + cross-entropy on logits (B, K, S, S) against labels (B, 1, S, S)."""
    return DiceCELoss(to_onehot_y=True, softmax=True)


def gated_consistency_loss(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    uncertainty: torch.Tensor,
    threshold: float,
) -> torch.Tensor:
    """Squared error between student and teacher probabilities where the teacher is sure.

    Args:
        student_logits: (B, K, S, S).
        teacher_probs: (B, K, S, S) target probabilities (no gradient).
        uncertainty: (B, S, S) teacher uncertainty in [0, 1].
        threshold: pixels with uncertainty below it count.

    Returns:
        Mean over counted pixels of sum_k (p_student - p_teacher)^2; 0 when none counts.
    """
    mask = (uncertainty < threshold).float()
    error = (torch.softmax(student_logits, dim=1) - teacher_probs.detach()).pow(2).sum(dim=1)
    return (error * mask).sum() / mask.sum().clamp_min(1.0)


def gated_pseudo_label_loss(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    uncertainty: torch.Tensor,
    threshold: float,
) -> torch.Tensor:
    """Cross-entropy against the teacher's argmax where the teacher is sure.

    Args as :func:`gated_consistency_loss`. Returns the mean CE over counted pixels; 0 when
    none counts.
    """
    mask = (uncertainty < threshold).float()
    target = teacher_probs.detach().argmax(dim=1)
    error = torch.nn.functional.cross_entropy(student_logits, target, reduction="none")
    return (error * mask).sum() / mask.sum().clamp_min(1.0)


def weighted_pseudo_label_loss(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy against the teacher's argmax, weighted per pixel.

    Args:
        student_logits: (B, K, S, S).
        teacher_probs: (B, K, S, S) target probabilities (no gradient).
        weight: (B, S, S) in [0, 1], e.g. the teacher's confidence.

    Returns:
        Mean over all pixels of weight * CE, so a teacher that is unsure everywhere adds little.
    """
    target = teacher_probs.detach().argmax(dim=1)
    error = torch.nn.functional.cross_entropy(student_logits, target, reduction="none")
    return (error * weight.detach()).mean()
