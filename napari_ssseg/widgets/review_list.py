"""The review queue: unannotated slices, most uncertain first."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QListWidget, QListWidgetItem, QWidget


class ReviewList(QListWidget):
    """One line per slice of the queue; ``picked(index)`` when the user clicks one."""

    picked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMaximumHeight(130)
        self.itemClicked.connect(lambda item: self.picked.emit(self._index(item)))

    @staticmethod
    def _index(item: QListWidgetItem) -> int:
        return int(item.data(Qt.ItemDataRole.UserRole))

    def show_queue(self, queue: Sequence[int], scores: np.ndarray) -> None:
        """List ``queue`` (slice indices, in order) with their uncertainty ``scores``."""
        self.clear()
        for index in queue:
            item = QListWidgetItem(f"slice {index}   uncertainty {scores[index]:.3f}")
            item.setData(Qt.ItemDataRole.UserRole, int(index))
            self.addItem(item)

    def select(self, index: int) -> None:
        """Highlight slice ``index`` if it is listed."""
        for row in range(self.count()):
            if self._index(self.item(row)) == index:
                self.setCurrentRow(row)
                return
