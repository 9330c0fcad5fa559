"""Schedules driven by training progress in [0, 1] (iterations or time, whichever is further)."""

from __future__ import annotations

import math


def sigmoid_rampup(progress: float, length: float) -> float:
    """exp(-5 (1 - t)^2) with t = progress / length clipped to [0, 1]; 1 once t reaches 1."""
    if length <= 0:
        return 1.0
    t = min(max(progress / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def poly_lr(base_lr: float, progress: float, power: float = 0.9) -> float:
    """Polynomial decay base_lr * (1 - progress)^power."""
    return base_lr * (1.0 - min(max(progress, 0.0), 1.0)) ** power
