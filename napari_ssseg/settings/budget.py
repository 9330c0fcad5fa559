"""The training budget and how a run's phases share it, decided here and nowhere else.

Progress is a fraction in [0, 1]: the larger of steps done over ``max_iters`` and seconds
spent over ``max_time``, so a run stopped by the clock still completes its schedules. The
learning rate decays with progress; teachers teach from ``teacher_start`` (at once in a
warm-started run, whose student has learnt the labels already), their weight ramped up over
``rampup``; distillation before the first labelled step stops at :data:`PRETRAIN_SHARE` of
the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from napari_ssseg.settings.values import in_range, require

PRETRAIN_SHARE = 0.5
"""At most this share of ``max_time`` goes to feature distillation before the labelled
steps, so the labels get at least the rest."""


@dataclass
class Budget:
    """Attributes:
    max_iters: steps; the run ends at whichever of the two bounds comes first.
    max_time: seconds (None: no time bound; a step-bounded run is deterministic on the CPU
        for a given seed). The budget covers the teachers' set-up, not only the steps.
    teacher_start: progress from which teachers teach (in a fresh run).
    rampup: progress over which a teacher's weight ramps up (sigmoid) once it starts.
    gate_dice: teachers also wait until the student reproduces every class on the labelled
        slices with at least this Dice (0: no wait): pseudo-labels of a student that has not
        learnt a small class yet lack it and would teach it away.
    """

    max_iters: int = 3000
    max_time: float | None = None
    teacher_start: float = 0.5
    rampup: float = 0.4
    gate_dice: float = 0.8

    def validate(self) -> None:
        require(self.max_iters >= 1, "budget.max_iters must be at least 1")
        require(
            self.max_time is None or self.max_time > 0,
            f"budget.max_time must be positive, not {self.max_time}",
        )
        in_range("budget.teacher_start", self.teacher_start, 0.0, 1.0, open_high=True)
        require(self.rampup >= 0, f"budget.rampup must be 0 or more, not {self.rampup}")
        in_range("budget.gate_dice", self.gate_dice, 0.0, 1.0)

    def progress(self, iteration: int, elapsed: float) -> float:
        """Training progress after ``iteration`` steps and ``elapsed`` seconds (may pass 1)."""
        fraction = iteration / self.max_iters
        if self.max_time is not None:
            fraction = max(fraction, elapsed / self.max_time)
        return fraction

    def teachers_from(self, warm_start: bool) -> float:
        """The progress from which teachers teach."""
        return 0.0 if warm_start else self.teacher_start

    def ramp(self, fraction: float, start: float) -> float:
        """The sigmoid ramp-up of a teacher switched on at ``start``, at progress
        ``fraction``."""
        return sigmoid_rampup(fraction - start, self.rampup)

    def pretrain_seconds(self) -> float | None:
        """Seconds feature distillation before the labelled steps may take (None: no
        bound)."""
        return None if self.max_time is None else PRETRAIN_SHARE * self.max_time


def sigmoid_rampup(progress: float, length: float) -> float:
    """exp(-5 (1 - t)^2) with t = progress / length clipped to [0, 1]; 1 once t reaches 1."""
    if length <= 0:
        return 1.0
    t = min(max(progress / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def poly_lr(base_lr: float, progress: float, power: float = 0.9) -> float:
    """Polynomial decay base_lr * (1 - progress)^power."""
    return base_lr * (1.0 - min(max(progress, 0.0), 1.0)) ** power
