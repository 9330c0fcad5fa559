"""The uncertainty-aware mean teacher (UA-MT): an EMA of the student with MC dropout."""

from __future__ import annotations

import torch

from napari_ssseg.data.slices import SliceRef
from napari_ssseg.networks.uncertainty import mc_dropout_probs, normalised_entropy
from napari_ssseg.settings.teachers import MeanSettings
from napari_ssseg.training.losses import gated_consistency_loss
from napari_ssseg.training.teachers.base import (
    EmaTeacher,
    gate_threshold,
    predict_slices,
)


class MeanTeacher(EmaTeacher):
    """EMA teacher with MC-dropout uncertainty (UA-MT)."""

    name = "mean"
    settings: MeanSettings

    def covers(self) -> list[SliceRef]:
        return list(self.pool.unlabelled)

    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        probs = predict_slices(
            lambda batch: mc_dropout_probs(
                self.model.module, batch, self.settings.passes, self.settings.noise
            ),
            self.pool,
            refs,
            self.device,
        )
        confidence = 1.0 - normalised_entropy(probs)
        return torch.cat([probs, confidence[:, None]], dim=1)

    def loss(
        self, logits: torch.Tensor, target: torch.Tensor, fraction: float
    ) -> tuple[torch.Tensor, float]:
        """Squared error where the teacher's uncertainty is below the rising threshold, with
        the ramp-up."""
        ramp = self.schedule.ramp(fraction)
        uncertainty = 1.0 - target[:, -1]
        threshold = gate_threshold(self.settings, ramp)
        loss = gated_consistency_loss(logits, target[:, :-1], uncertainty, threshold)
        return loss, self.settings.weight * ramp
