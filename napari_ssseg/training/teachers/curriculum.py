"""Confidence curriculum: whole-volume EMA pseudo-labels admitted by image-level confidence."""

from __future__ import annotations

import numpy as np
import torch

from napari_ssseg.data.connectivity import keep_connected_with_labels
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.data.slices import SliceRef
from napari_ssseg.networks.uncertainty import mc_dropout_probs, normalised_entropy
from napari_ssseg.settings.teachers import CurriculumSettings
from napari_ssseg.training.losses import gated_pseudo_label_loss
from napari_ssseg.training.teachers.base import (
    EmaTeacher,
    TeacherSchedule,
    blank_target,
    gate_threshold,
    predict_slices,
    with_unannotated,
)


class CurriculumTeacher(EmaTeacher):
    """Whole-volume pseudo-labels from the EMA of the student, admitted by confidence.

    Every ``refresh`` steps the EMA model predicts, with MC dropout, every slice of
    the next volumes with an unannotated slice (partially annotated or unlabelled, in turn,
    whole volumes up to ``slices`` slices a refresh, so a project of many volumes
    costs a bounded time per refresh); the user's labels replace the prediction on annotated
    slices and, per class the user labelled in the volume, predicted components not connected
    in 3-D to the annotation become background (a volume nobody labelled keeps its
    prediction). The unannotated slices of every volume refreshed so far are ranked by
    image-level confidence (1 - mean normalised entropy) and the most confident fraction is
    admitted, growing linearly from ``first_share`` to all slices over
    training. Targets are the filtered labels, confidence 1 - entropy per pixel.
    """

    name = "self"

    def __init__(
        self,
        student: torch.nn.Module,
        pool: SlicePool,
        settings: CurriculumSettings,
        schedule: TeacherSchedule,
        device: torch.device,
    ):
        super().__init__(student, pool, settings, schedule, device)
        self.settings: CurriculumSettings = settings
        self.num_classes = pool.num_classes + 1
        self.volumes = with_unannotated(pool)
        self._targets: dict[SliceRef, torch.Tensor] = {}
        self._scores: dict[int, list[tuple[float, SliceRef]]] = {}  # per refreshed volume
        self._admitted: list[SliceRef] = []
        self._next = 0  # index into self.volumes of the next volume to refresh
        self.refreshed: int | None = None

    def covers(self) -> list[SliceRef]:
        if self.refreshed is None:
            return [ref for ref in self.pool.unlabelled if ref[0] in self.volumes]
        return list(self._admitted)

    def loss(
        self, logits: torch.Tensor, target: torch.Tensor, fraction: float
    ) -> tuple[torch.Tensor, float]:
        """CE toward the pseudo-labels where their uncertainty is below the rising threshold."""
        ramp = self.schedule.ramp(fraction)
        threshold = gate_threshold(self.settings, ramp)
        loss = gated_pseudo_label_loss(logits, target[:, :-1], 1.0 - target[:, -1], threshold)
        return loss, self.settings.weight * ramp

    @torch.no_grad()
    def prepare(self, student: torch.nn.Module, iteration: int, fraction: float) -> None:
        due = self.refreshed is None or iteration - self.refreshed >= self.settings.refresh
        if not due:
            return
        for v in self._due_volumes():
            self._scores[v] = self._refresh_volume(v)
        scores = [item for volume_scores in self._scores.values() for item in volume_scores]
        first = self.settings.first_share
        share = first + (1.0 - first) * min(max(fraction, 0.0), 1.0)
        scores.sort(key=lambda item: -item[0])
        self._admitted = [ref for _, ref in scores[: max(1, int(round(share * len(scores))))]]
        self.refreshed = iteration
        self.version += 1

    def _due_volumes(self) -> list[int]:
        """The next volumes in turn, whole, up to ``slices`` slices (at least one
        volume; each volume at most once a refresh)."""
        due: list[int] = []
        total = 0
        while len(due) < len(self.volumes):
            v = self.volumes[self._next]
            count = self.pool.volumes[v].num_slices
            if due and total + count > self.settings.slices:
                break
            due.append(v)
            total += count
            self._next = (self._next + 1) % len(self.volumes)
        return due

    def _refresh_volume(self, v: int) -> list[tuple[float, SliceRef]]:
        prepared = self.pool.volumes[v]
        prob = predict_slices(  # (Z, K, S, S)
            lambda batch: mc_dropout_probs(self.model.module, batch, self.settings.passes),
            self.pool,
            [(v, z) for z in range(prepared.num_slices)],
            self.device,
        )
        confidence = 1.0 - normalised_entropy(prob)  # (Z, S, S)
        labels, _ = keep_connected_with_labels(
            prob.argmax(dim=1).numpy(),
            prepared.labels.numpy(),
            prepared.annotated.numpy(),
            self.num_classes - 1,
        )
        onehot = np.eye(self.num_classes, dtype=np.float32)[labels].transpose(0, 3, 1, 2)
        out = []
        for z in np.flatnonzero(~prepared.annotated.numpy()):
            target = torch.cat([torch.from_numpy(onehot[z]), confidence[z][None]])
            self._targets[(v, int(z))] = target
            out.append((float(confidence[z].mean()), (v, int(z))))
        return out

    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        """Slices of volumes not refreshed yet (or another teacher's) get confidence 0."""
        size = self.pool.slice_shape
        return torch.stack(
            [self._targets.get(ref, blank_target(self.num_classes, size)) for ref in refs]
        )
