"""What every teacher offers the training loop, and helpers they share."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from napari_ssseg.data.slices import SlicePool, SliceRef


class Teacher(ABC):
    """One source of targets for unannotated slices."""

    name: str
    start: float
    """Training progress in [0, 1] from which the teacher's loss term is on."""

    @abstractmethod
    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        """(B, K + 1, S, S) float32 on the CPU: K class probabilities, then confidence."""

    @abstractmethod
    def covers(self) -> list[SliceRef]:
        """The unannotated slices this teacher can say something about."""

    version = 0
    """Bumped whenever the teacher's targets change, so cached targets are recomputed."""

    def update(self, student: torch.nn.Module) -> None:
        """Follow the student after an optimiser step (no-op unless the teacher learns)."""
        return None

    def prepare(self, student: torch.nn.Module, iteration: int, fraction: float) -> None:
        """Called before each step that uses the teacher, with the training progress in [0, 1]
        (no-op unless the teacher refreshes)."""
        return None


def partially_annotated(pool: SlicePool) -> list[int]:
    """Indices of the pool's volumes with both annotated and unannotated slices."""
    return [
        v
        for v, prepared in enumerate(pool.volumes)
        if bool(prepared.annotated.any()) and not bool(prepared.annotated.all())
    ]


def blank_target(num_classes: int, size: tuple[int, int]) -> torch.Tensor:
    """(K + 1, S, S) target that says nothing: background with confidence 0."""
    target = torch.zeros(num_classes + 1, *size)
    target[0] = 1.0
    return target
