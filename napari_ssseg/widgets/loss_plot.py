"""A small live plot of the training loss, painted with QPainter (no plotting library)."""

from __future__ import annotations

from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget


class LossPlot(QWidget):
    """Total loss against training step; the latest value is printed in the corner."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("training loss (Dice + cross-entropy) per step")

    def clear(self) -> None:
        self.steps, self.losses = [], []
        self.update()

    def add(self, step: int, loss: float) -> None:
        self.steps.append(int(step))
        self.losses.append(float(loss))
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        width, height = self.width(), self.height()
        painter.fillRect(0, 0, width, height, QColor(30, 32, 38))
        painter.setPen(QColor(150, 150, 150))
        if not self.losses:
            painter.drawText(6, height - 8, "loss: no run yet")
            painter.end()
            return
        top, bottom = max(self.losses), min(min(self.losses), 0.0)
        span = max(top - bottom, 1e-6)
        last = max(self.steps[-1], 1)
        points = QPolygonF(
            [
                QPointF(4 + (width - 8) * s / last, 4 + (height - 20) * (top - v) / span)
                for s, v in zip(self.steps, self.losses, strict=True)
            ]
        )
        painter.setPen(QPen(QColor(255, 170, 60), 1.5))
        painter.drawPolyline(points)
        painter.setPen(QColor(220, 220, 220))
        painter.drawText(6, height - 4, f"loss {self.losses[-1]:.3f} at step {self.steps[-1]}")
        painter.drawText(width - 80, 14, f"max {top:.2f}")
        painter.end()
