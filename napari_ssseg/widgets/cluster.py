"""A Ray cluster connection for the dock: connecting happens off the Qt thread (it can take
seconds, or fail after a timeout), so napari keeps responding."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QTimer, Signal

from napari_ssseg.errors import SsSegError


class ClusterConnection(QObject):
    """One :class:`~napari_ssseg.runner.ray_runner.RayRunner` for an address and a worker
    count. ``failed(message)`` is emitted when the cluster cannot be reached."""

    failed = Signal(str)

    def __init__(self, address: str, workers: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        from napari_ssseg.runner.ray_runner import RayRunner  # imports nothing of Ray yet

        self.address, self.workers = address, workers
        self.runner = RayRunner(address=address, workers=workers)
        self.connected = False
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._then: Callable[[], Any] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._check)

    def serves(self, address: str, workers: int) -> bool:
        return (self.address, self.workers) == (address, workers)

    def when_connected(self, then: Callable[[], Any]) -> None:
        """Call ``then`` on the Qt thread once connected (at once if already)."""
        if self.connected:
            then()
            return
        self._then, self._error = then, None
        self._thread = threading.Thread(target=self._connect, daemon=True)
        self._thread.start()
        self._timer.start()

    def _connect(self) -> None:
        try:
            self.runner.connect()
        except (SsSegError, ImportError, ConnectionError, RuntimeError, ValueError) as error:
            self._error = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)

    def _check(self) -> None:
        if self._thread is None or self._thread.is_alive():
            return
        self._timer.stop()
        self._thread = None
        if self._error is not None:
            self.failed.emit(self._error)
            return
        self.connected = True
        then, self._then = self._then, None
        if then is not None:
            then()

    def close(self) -> None:
        self._timer.stop()
        self.runner.close()
