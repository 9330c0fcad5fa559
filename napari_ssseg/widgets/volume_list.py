"""The list of the project's volumes: which one is worked on, which train with it."""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QListWidget, QListWidgetItem, QWidget

from napari_ssseg.widgets.project_volumes import VolumeEntry


def entry_text(entry: VolumeEntry) -> str:
    if entry.annotated is None:
        text = f"{entry.name}: no labels layer (unlabelled)"
    else:
        text = f"{entry.name}: {entry.annotated} annotated slice{'s' * (entry.annotated != 1)}"
    return f"{text}  (current)" if entry.current else text


class VolumeList(QListWidget):
    """Checkable volume lines; ``picked(name)`` on a click, ``toggled(name, checked)`` when
    the user checks or unchecks a volume. The current volume is always checked."""

    picked = Signal(str)
    toggled = Signal(str, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMaximumHeight(72)
        self.setToolTip(
            "Volumes trained together: the checked ones join the current one in each run, "
            "labelled or not (unlabelled volumes teach through the semi-supervised teachers). "
            "Click one to work on it."
        )
        self.itemClicked.connect(self._on_clicked)
        self.itemChanged.connect(self._on_changed)

    def show_entries(self, entries: list[VolumeEntry]) -> None:
        self.blockSignals(True)
        self.clear()
        for entry in entries:
            item = QListWidgetItem(entry_text(entry))
            item.setData(Qt.ItemDataRole.UserRole, entry.name)
            if entry.current:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsUserCheckable)
            else:
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            checked = entry.current or entry.in_project
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            self.addItem(item)
        self.blockSignals(False)

    def update_entry(self, entry: VolumeEntry) -> None:
        """Rewrite one volume's line (cheap: called on every paint)."""
        for row in range(self.count()):
            item = self.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == entry.name:
                self.blockSignals(True)
                item.setText(entry_text(entry))
                self.blockSignals(False)
                return

    def _on_clicked(self, item: QListWidgetItem) -> None:
        self.picked.emit(str(item.data(Qt.ItemDataRole.UserRole)))

    def _on_changed(self, item: QListWidgetItem) -> None:
        checked = item.checkState() == Qt.CheckState.Checked
        self.toggled.emit(str(item.data(Qt.ItemDataRole.UserRole)), checked)
