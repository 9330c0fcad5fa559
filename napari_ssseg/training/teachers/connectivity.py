"""3-D continuity: predicted components not connected to the annotation are background."""

from __future__ import annotations

import numpy as np
import torch

from napari_ssseg.data.slices import SlicePool, SliceRef
from napari_ssseg.inference.connectivity import keep_connected_with_labels
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.losses import gated_pseudo_label_loss
from napari_ssseg.training.teachers.base import (
    Teacher,
    blank_target,
    partially_annotated,
    predict_slices,
)


class ConnectivityTeacher(Teacher):
    """Background targets on predicted components not connected to the annotation."""

    name = "connect"

    def __init__(self, pool: SlicePool, config: TrainConfig, device: torch.device):
        self.pool = pool
        self.config = config
        self.device = device
        self.start = config.ssl_start
        self.num_classes = pool.num_classes + 1
        self.volumes = partially_annotated(pool)
        self._targets: dict[SliceRef, torch.Tensor] = {}
        self.refreshed: int | None = None

    def covers(self) -> list[SliceRef]:
        # Before the first refresh every slice of the volumes might be corrected.
        if self.refreshed is None:
            return [ref for ref in self.pool.unlabelled if ref[0] in self.volumes]
        return list(self._targets)

    def loss(
        self, logits: torch.Tensor, target: torch.Tensor, fraction: float
    ) -> tuple[torch.Tensor, float]:
        """Mean CE over the corrected pixels only: they are few, and all of them count."""
        loss = gated_pseudo_label_loss(logits, target[:, :-1], 1.0 - target[:, -1], 0.5)
        return loss, self.config.connect_weight

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
        predicted = predict_slices(
            lambda batch: student(batch).argmax(dim=1),
            self.pool,
            [(v, z) for z in range(prepared.num_slices)],
            self.device,
        )
        # As at inference, the user's labels replace the prediction on annotated slices.
        _, removed = keep_connected_with_labels(
            predicted.numpy(),
            prepared.labels.numpy(),
            prepared.annotated.numpy(),
            self.num_classes - 1,
        )
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
                target = blank_target(self.num_classes, self.pool.slice_shape)
            out.append(target)
        return torch.stack(out)
