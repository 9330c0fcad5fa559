"""The uncertainty-aware mean teacher (UA-MT): an EMA of the student with MC dropout."""

from __future__ import annotations

import torch

from napari_ssseg.data.slices import SlicePool, SliceRef
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.ema import ema_teacher
from napari_ssseg.training.losses import gated_consistency_loss, gated_pseudo_label_loss
from napari_ssseg.training.teachers.base import (
    Teacher,
    gate_threshold,
    predict_slices,
    rampup,
)
from napari_ssseg.training.uncertainty import mc_dropout_probs, normalised_entropy


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
        probs = predict_slices(
            lambda batch: mc_dropout_probs(
                self.model.module, batch, self.config.teacher_passes, self.config.teacher_noise
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
        """Consistency (MSE, or CE with ``consistency_loss="ce"``) where the teacher's
        uncertainty is below the rising threshold, with the ramp-up."""
        ramp = rampup(self.config, fraction, self.start)
        gated = (
            gated_consistency_loss
            if self.config.consistency_loss == "mse"
            else gated_pseudo_label_loss
        )
        uncertainty = 1.0 - target[:, -1]
        loss = gated(logits, target[:, :-1], uncertainty, gate_threshold(self.config, ramp))
        return loss, self.config.consistency_weight * ramp

    def update(self, student: torch.nn.Module) -> None:
        self.model.update_parameters(student)
