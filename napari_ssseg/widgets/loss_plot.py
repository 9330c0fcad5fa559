"""A small live plot of the training loss and of the agreement with the user's labels on
annotated slices, painted with QPainter (no plotting library)."""

from __future__ import annotations

from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget


class LossPlot(QWidget):
    """Total loss (orange, own scale) and agreement in [0, 1] (green) against training step;
    the latest values are printed in the corners."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.agreement_steps: list[int] = []
        self.agreement: list[float] = []
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(
            "orange: training loss per step; green: Dice of the model with your labels on "
            "annotated slices (0 to 1)"
        )

    def clear(self) -> None:
        self.steps, self.losses = [], []
        self.agreement_steps, self.agreement = [], []
        self.update()

    def add_agreement(self, step: int, value: float) -> None:
        self.agreement_steps.append(int(step))
        self.agreement.append(float(value))
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
        if self.agreement:
            agreement = QPolygonF(
                [
                    QPointF(4 + (width - 8) * s / last, 4 + (height - 20) * (1.0 - v))
                    for s, v in zip(self.agreement_steps, self.agreement, strict=True)
                ]
            )
            painter.setPen(QPen(QColor(90, 200, 120), 1.5))
            painter.drawPolyline(agreement)
            painter.drawText(width - 120, height - 4, f"agreement {self.agreement[-1]:.2f}")
        painter.setPen(QColor(220, 220, 220))
        painter.drawText(6, height - 4, f"loss {self.losses[-1]:.3f} at step {self.steps[-1]}")
        painter.drawText(width - 80, 14, f"max {top:.2f}")
        painter.end()
