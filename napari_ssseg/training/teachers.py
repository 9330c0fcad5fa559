"""Teachers: sources of soft targets for the slices nobody annotated.

A teacher answers, for a batch of unannotated slices, with class probabilities and a per-pixel
confidence in [0, 1] packed as one (B, K + 1, S, S) tensor (channels 0..K-1 probabilities,
channel K confidence), so an augmentation moves targets and confidence together. The loop
turns each teacher's targets into its own weighted loss term.

- :class:`MeanTeacher`: an EMA of the student predicting with MC dropout and input noise;
  confidence is 1 - normalised predictive entropy (uncertainty-aware mean teacher).
- :class:`ShapeTeacher`: shape continuity. Between two annotated slices the signed distance
  maps of each class are blended (what "fill between slices" does); confidence grows with the
  distance of a pixel from the interpolated contour and falls with the physical distance to
  the nearer annotated slice, so it counts on smooth, finely sliced anatomy and fades on
  thick slices. It says nothing outside the annotated range.
- :class:`ConnectivityTeacher`: 3-D continuity. Every ``connect_refresh`` steps the student
  predicts every slice of the partially annotated volumes; predicted components that touch no
  annotated voxel of their class (look-alike tissue on distant slices) are taught as
  background, with full confidence there and none elsewhere.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch

from napari_ssseg.annotation import Project
from napari_ssseg.baselines.interpolation import blended_distances
from napari_ssseg.data.slices import SlicePool, SliceRef
from napari_ssseg.inference.connectivity import keep_connected_to_annotation
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.ema import ema_teacher
from napari_ssseg.training.uncertainty import mc_dropout_probs, normalised_entropy


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


class MeanTeacher(Teacher):
    """EMA teacher with MC-dropout uncertainty (UA-MT)."""

    name = "mean"

    def __init__(
        self, student: torch.nn.Module, pool: SlicePool, config: TrainConfig, device: torch.device
    ):
        self.model = ema_teacher(student, config.ema_decay)
        self.pool = pool
        self.config = config
        self.device = device
        self.start = config.ssl_start

    def covers(self) -> list[SliceRef]:
        return list(self.pool.unlabelled)

    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        inputs = self.pool.inputs(refs)
        chunks = []
        for first in range(0, len(inputs), 16):
            batch = inputs[first : first + 16].to(self.device)
            probs = mc_dropout_probs(
                self.model.module, batch, self.config.teacher_passes, self.config.teacher_noise
            )
            confidence = 1.0 - normalised_entropy(probs)
            chunks.append(torch.cat([probs, confidence[:, None]], dim=1).cpu())
        return torch.cat(chunks)

    def update(self, student: torch.nn.Module) -> None:
        self.model.update_parameters(student)


def shape_confidence(
    maps: np.ndarray, gap_mm: float, margin_mm: float, range_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and confidence from blended signed distances.

    Args:
        maps: (C, H, W) blended signed distances in mm, class c at index c - 1.
        gap_mm: distance from the slice to the nearer annotated slice.
        margin_mm: distance from the interpolated contour at which a pixel is fully trusted.
        range_mm: the confidence falls as exp(-gap_mm / range_mm).

    Returns:
        (labels (H, W) int64 in 0..C, confidence (H, W) float32 in [0, 1]).
    """
    best = maps.argmax(axis=0)
    value = np.take_along_axis(maps, best[None], axis=0)[0]
    labels = np.where(value > 0, best + 1, 0)
    margin = np.clip(np.abs(value) / margin_mm, 0.0, 1.0)
    return labels.astype(np.int64), (margin * math.exp(-gap_mm / range_mm)).astype(np.float32)


class ShapeTeacher(Teacher):
    """Targets interpolated between annotated slices (shape continuity)."""

    name = "shape"
    start = 0.0

    def __init__(self, project: Project, pool: SlicePool, config: TrainConfig):
        self.num_classes = project.num_classes + 1
        self._targets: dict[SliceRef, torch.Tensor] = {}
        for v, (volume, prepared) in enumerate(zip(project.volumes, pool.volumes, strict=True)):
            annotated = volume.annotated_slices
            if len(annotated) < 2:
                continue
            in_plane = [s for i, s in enumerate(volume.image.spacing) if i != volume.axis]
            grid = prepared.grid
            pixel_mm = tuple(
                float(s) * src / res
                for s, src, res in zip(in_plane, grid.source_shape, grid.resized_shape, strict=True)
            )
            slice_mm = float(volume.image.spacing[volume.axis])
            maps = blended_distances(
                prepared.labels.numpy(), annotated, project.num_classes, pixel_mm
            )
            for z, (blended, gap) in maps.items():
                labels, confidence = shape_confidence(
                    blended, gap * slice_mm, config.shape_margin_mm, config.shape_range_mm
                )
                onehot = np.eye(self.num_classes, dtype=np.float32)[labels].transpose(2, 0, 1)
                self._targets[(v, z)] = torch.from_numpy(np.concatenate([onehot, confidence[None]]))

    def covers(self) -> list[SliceRef]:
        return list(self._targets)

    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        """Slices outside the annotated range get uniform probabilities and confidence 0."""
        blank = None
        out = []
        for ref in refs:
            target = self._targets.get(ref)
            if target is None:
                if blank is None:
                    any_target = next(iter(self._targets.values()))
                    blank = torch.zeros_like(any_target)
                    blank[:-1] = 1.0 / self.num_classes
                target = blank
            out.append(target)
        return torch.stack(out)


class ConnectivityTeacher(Teacher):
    """Background targets on predicted components not connected to the annotation."""

    name = "connect"

    def __init__(self, pool: SlicePool, config: TrainConfig, device: torch.device):
        self.pool = pool
        self.config = config
        self.device = device
        self.start = config.ssl_start
        self.num_classes = pool.num_classes + 1
        self.volumes = [
            v
            for v, prepared in enumerate(pool.volumes)
            if bool(prepared.annotated.any()) and not bool(prepared.annotated.all())
        ]
        self._targets: dict[SliceRef, torch.Tensor] = {}
        self.refreshed: int | None = None

    def covers(self) -> list[SliceRef]:
        # Before the first refresh every slice of the volumes might be corrected.
        if self.refreshed is None:
            return [ref for ref in self.pool.unlabelled if ref[0] in self.volumes]
        return list(self._targets)

    @torch.no_grad()
    def prepare(self, student: torch.nn.Module, iteration: int, fraction: float) -> None:
        due = self.refreshed is None or iteration - self.refreshed >= self.config.connect_refresh
        if not due:
            return
        was_training = student.training
        student.eval()
        try:
            self._targets = {}
            for v in self.volumes:
                self._refresh_volume(student, v)
        finally:
            student.train(was_training)
        self.refreshed = iteration
        self.version += 1

    def _refresh_volume(self, student: torch.nn.Module, v: int) -> None:
        prepared = self.pool.volumes[v]
        depth = prepared.images.shape[0]
        predicted = []
        for first in range(0, depth, 16):
            refs = [(v, z) for z in range(first, min(first + 16, depth))]
            logits = student(self.pool.inputs(refs).to(self.device))
            predicted.append(logits.argmax(dim=1).cpu())
        annotated = prepared.annotated.numpy()[:, None, None]
        seeds = np.where(annotated, prepared.labels.numpy(), 0)
        # As at inference, the user's labels replace the prediction on annotated slices.
        labels = np.where(annotated, seeds, torch.cat(predicted).numpy())
        _, removed = keep_connected_to_annotation(labels, seeds, self.num_classes - 1)
        for z in np.flatnonzero(removed.any(axis=(1, 2)) & ~prepared.annotated.numpy()):
            target = torch.zeros(self.num_classes + 1, *removed.shape[1:])
            target[0] = 1.0  # background
            target[-1] = torch.from_numpy(removed[z].astype(np.float32))
            self._targets[(v, int(z))] = target

    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        """Slices without a correction get confidence 0."""
        out = []
        for ref in refs:
            target = self._targets.get(ref)
            if target is None:
                target = torch.zeros(self.num_classes + 1, *self.pool.volumes[0].images.shape[1:])
                target[0] = 1.0
            out.append(target)
        return torch.stack(out)


class CurriculumTeacher(Teacher):
    """Whole-volume pseudo-labels from the EMA of the student, admitted by confidence.

    Every ``connect_refresh`` steps the EMA model predicts every slice of the partially
    annotated volumes with MC dropout; the user's labels replace the prediction on annotated
    slices and predicted components not connected in 3-D to the annotation become background.
    Slices are ranked by image-level confidence (1 - mean normalised entropy) and the most
    confident fraction is admitted, growing linearly from ``curriculum_start_fraction`` to all
    slices over training. Targets are the filtered labels, confidence 1 - entropy per pixel.
    """

    name = "self"

    def __init__(
        self, student: torch.nn.Module, pool: SlicePool, config: TrainConfig, device: torch.device
    ):
        self.model = ema_teacher(student, config.ema_decay)
        self.pool = pool
        self.config = config
        self.device = device
        self.start = config.ssl_start
        self.num_classes = pool.num_classes + 1
        self.volumes = [
            v
            for v, prepared in enumerate(pool.volumes)
            if bool(prepared.annotated.any()) and not bool(prepared.annotated.all())
        ]
        self._targets: dict[SliceRef, torch.Tensor] = {}
        self._admitted: list[SliceRef] = []
        self.refreshed: int | None = None

    def covers(self) -> list[SliceRef]:
        if self.refreshed is None:
            return [ref for ref in self.pool.unlabelled if ref[0] in self.volumes]
        return list(self._admitted)

    def update(self, student: torch.nn.Module) -> None:
        self.model.update_parameters(student)

    @torch.no_grad()
    def prepare(self, student: torch.nn.Module, iteration: int, fraction: float) -> None:
        due = self.refreshed is None or iteration - self.refreshed >= self.config.connect_refresh
        if not due:
            return
        self._targets = {}
        scores: list[tuple[float, SliceRef]] = []
        for v in self.volumes:
            scores.extend(self._refresh_volume(v))
        first = self.config.curriculum_start_fraction
        share = first + (1.0 - first) * min(max(fraction, 0.0), 1.0)
        scores.sort(key=lambda item: -item[0])
        self._admitted = [ref for _, ref in scores[: max(1, int(round(share * len(scores))))]]
        self.refreshed = iteration
        self.version += 1

    def _refresh_volume(self, v: int) -> list[tuple[float, SliceRef]]:
        prepared = self.pool.volumes[v]
        depth = prepared.images.shape[0]
        probs = []
        for first in range(0, depth, 16):
            refs = [(v, z) for z in range(first, min(first + 16, depth))]
            inputs = self.pool.inputs(refs).to(self.device)
            probs.append(
                mc_dropout_probs(self.model.module, inputs, self.config.teacher_passes).cpu()
            )
        prob = torch.cat(probs)  # (Z, K, S, S)
        confidence = 1.0 - normalised_entropy(prob)  # (Z, S, S)
        annotated = prepared.annotated.numpy()[:, None, None]
        seeds = np.where(annotated, prepared.labels.numpy(), 0)
        labels = np.where(annotated, seeds, prob.argmax(dim=1).numpy())
        labels, _ = keep_connected_to_annotation(labels, seeds, self.num_classes - 1)
        onehot = np.eye(self.num_classes, dtype=np.float32)[labels].transpose(0, 3, 1, 2)
        out = []
        for z in np.flatnonzero(~prepared.annotated.numpy()):
            target = torch.cat([torch.from_numpy(onehot[z]), confidence[z][None]])
            self._targets[(v, int(z))] = target
            out.append((float(confidence[z].mean()), (v, int(z))))
        return out

    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        return torch.stack([self._targets[ref] for ref in refs])


def build_teachers(
    names: tuple[str, ...],
    project: Project,
    pool: SlicePool,
    student: torch.nn.Module,
    config: TrainConfig,
    device: torch.device,
) -> list[Teacher]:
    """The teachers named by the method, leaving out those with nothing to teach."""
    teachers: list[Teacher] = []
    for name in names:
        if name == "mean":
            teacher: Teacher = MeanTeacher(student, pool, config, device)
        elif name == "shape":
            teacher = ShapeTeacher(project, pool, config)
        elif name == "connect":
            teacher = ConnectivityTeacher(pool, config, device)
        elif name == "self":
            teacher = CurriculumTeacher(student, pool, config, device)
        elif name == "sam":
            from napari_ssseg.training.sam_teacher import SamTeacher

            teacher = SamTeacher(project, pool, config, device)
        else:
            raise ValueError(f"unknown teacher {name!r}")
        if teacher.covers():
            teachers.append(teacher)
    return teachers
