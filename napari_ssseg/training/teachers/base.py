"""What every teacher offers the training loop, and helpers they share."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from napari_ssseg.annotation import AnnotatedVolume
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.data.slice_grid import SliceGrid
from napari_ssseg.data.slices import SliceRef
from napari_ssseg.settings.budget import Budget, sigmoid_rampup
from napari_ssseg.settings.teachers import EmaTeacherSettings
from napari_ssseg.training.ema import ema_teacher


@dataclass(frozen=True)
class TeacherSchedule:
    """When a teacher teaches: from progress ``start``, its weight ramped up (sigmoid) over
    ``rampup`` (both decided by the :class:`~napari_ssseg.settings.budget.Budget`)."""

    start: float
    rampup: float

    @classmethod
    def from_budget(cls, budget: Budget, warm_start: bool) -> TeacherSchedule:
        return cls(budget.teachers_from(warm_start), budget.rampup)

    def ramp(self, fraction: float) -> float:
        """The weight's ramp-up factor in [0, 1] at training progress ``fraction``."""
        return sigmoid_rampup(fraction - self.start, self.rampup)


class Teacher(ABC):
    """One source of targets for unannotated slices."""

    name: str
    schedule: TeacherSchedule
    """When the teacher's loss term is on, and its ramp-up."""

    @property
    def start(self) -> float:
        """Training progress in [0, 1] from which the teacher's loss term is on."""
        return self.schedule.start

    @abstractmethod
    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        """(B, K + 1, S, S) float32 on the CPU: K class probabilities, then confidence."""

    @abstractmethod
    def covers(self) -> list[SliceRef]:
        """The unannotated slices this teacher can say something about."""

    @abstractmethod
    def loss(
        self, logits: torch.Tensor, target: torch.Tensor, fraction: float
    ) -> tuple[torch.Tensor, float]:
        """This teacher's loss on the student's (B, K, S, S) logits for a (B, K + 1, S, S)
        target (probabilities, then confidence), and its weight at training progress
        ``fraction``."""

    version = 0
    """Bumped whenever the teacher's targets change, so cached targets are recomputed."""

    def update(self, student: torch.nn.Module) -> None:
        """Follow the student after an optimiser step (no-op unless the teacher learns)."""
        return None

    def prepare(self, student: torch.nn.Module, iteration: int, fraction: float) -> None:
        """Called before each step that uses the teacher, with the training progress in [0, 1]
        (no-op unless the teacher refreshes)."""
        return None

    def work(self) -> dict[str, float]:
        """What the teacher's own work came to (counts, seconds), for the run's summary;
        empty for a teacher with nothing worth reporting."""
        return {}

    def parts(self) -> list[Teacher]:
        """The single teachers this one is made of: itself, or a fused teacher's members."""
        return [self]


class EmaTeacher(Teacher):
    """A teacher that predicts with an exponential moving average of the student, following
    it after every optimiser step."""

    def __init__(
        self,
        student: torch.nn.Module,
        pool: SlicePool,
        settings: EmaTeacherSettings,
        schedule: TeacherSchedule,
        device: torch.device,
    ):
        self.model = ema_teacher(student, settings.ema_decay)
        self.pool = pool
        self.settings = settings
        self.schedule = schedule
        self.device = device

    def update(self, student: torch.nn.Module) -> None:
        self.model.update_parameters(student)


class PrecomputedTeacher(Teacher):
    """A teacher whose targets are made once, when it is built, from the annotation and the
    images (not from the student): ``_targets`` holds a (K + 1, S, S) target per slice it
    covers."""

    _targets: dict[SliceRef, torch.Tensor]

    def covers(self) -> list[SliceRef]:
        return list(self._targets)

    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        """Slices not covered get uniform probabilities and confidence 0."""
        blank = None
        out = []
        for ref in refs:
            target = self._targets.get(ref)
            if target is None:
                if blank is None:
                    blank = torch.zeros_like(next(iter(self._targets.values())))
                    blank[:-1] = 1.0 / (blank.shape[0] - 1)
                target = blank
            out.append(target)
        return torch.stack(out)


class GateSettings(Protocol):
    threshold_start: float
    threshold_end: float


def gate_threshold(settings: GateSettings, ramp: float) -> float:
    """The uncertainty below which a pixel counts, rising from ``threshold_start`` to
    ``threshold_end`` with the ramp-up."""
    return settings.threshold_start + (settings.threshold_end - settings.threshold_start) * ramp


def partially_annotated(pool: SlicePool) -> list[int]:
    """Indices of the pool's volumes with both annotated and unannotated slices."""
    return [
        v
        for v, prepared in enumerate(pool.volumes)
        if bool(prepared.annotated.any()) and not bool(prepared.annotated.all())
    ]


def with_unannotated(pool: SlicePool) -> list[int]:
    """Indices of the pool's volumes with at least one unannotated slice: the partially
    annotated ones and those nobody labelled."""
    return [v for v, prepared in enumerate(pool.volumes) if not bool(prepared.annotated.all())]


def interleaved(refs: list[SliceRef]) -> list[SliceRef]:
    """``refs`` reordered to take one slice of each volume in turn, each volume's slices
    from its middle outward, so that the first few of a project with many volumes spread
    over all of them and over the middle of each (where the anatomy is)."""
    by_volume: dict[int, list[SliceRef]] = {}
    for ref in refs:
        by_volume.setdefault(ref[0], []).append(ref)
    ordered = []
    for group in by_volume.values():
        middle = (group[0][1] + group[-1][1]) / 2
        ordered.append(sorted(group, key=lambda ref: (abs(ref[1] - middle), ref[1])))
    return [ref for turn in itertools.zip_longest(*ordered) for ref in turn if ref is not None]


def slice_pixel_mm(volume: AnnotatedVolume, grid: SliceGrid) -> tuple[float, float]:
    """The (row, column) size in mm of a pixel of ``volume``'s slices on the network grid."""
    in_plane = [s for i, s in enumerate(volume.image.spacing) if i != volume.axis]
    return tuple(  # type: ignore[return-value]
        float(s) * src / res
        for s, src, res in zip(in_plane, grid.source_shape, grid.resized_shape, strict=True)
    )


def blank_target(num_classes: int, size: tuple[int, int]) -> torch.Tensor:
    """(K + 1, S, S) target that says nothing: background with confidence 0."""
    target = torch.zeros(num_classes + 1, *size)
    target[0] = 1.0
    return target


PREDICT_CHUNK = 16
"""Slices per forward pass when a teacher predicts many slices (bounds activation memory)."""


def predict_slices(
    predict: Callable[[torch.Tensor], torch.Tensor],
    pool: SlicePool,
    refs: list[SliceRef],
    device: torch.device,
) -> torch.Tensor:
    """``predict`` on the inputs of ``refs``, a chunk of slices at a time on ``device``; the
    outputs concatenated on the CPU along the first (slice) axis."""
    chunks = [
        predict(pool.inputs(refs[first : first + PREDICT_CHUNK]).to(device)).cpu()
        for first in range(0, len(refs), PREDICT_CHUNK)
    ]
    return torch.cat(chunks)
