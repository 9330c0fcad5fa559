"""The exponential-moving-average (mean) teacher."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel


def ema_teacher(model: torch.nn.Module, decay: float) -> AveragedModel:
    """A teacher whose weights follow ``model`` as an EMA with a warm-up.

    The averaging weight is min(1 - 1 / (n + 1), decay) after n updates, so early on the
    teacher tracks the student closely instead of lagging ~1 / (1 - decay) steps behind:
    on a CPU budget of a few hundred steps a plain 0.99 EMA would still be half the random
    initialisation after 70 steps.
    """

    def average(averaged: torch.Tensor, current: torch.Tensor, num_averaged) -> torch.Tensor:
        alpha = min(1.0 - 1.0 / (float(num_averaged) + 1.0), decay)
        return alpha * averaged + (1.0 - alpha) * current

    teacher = AveragedModel(model, avg_fn=average, use_buffers=True)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher
