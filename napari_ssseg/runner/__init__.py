"""Background training runs: a job description, a local process runner and its events.

Qt-free; napari's widget polls a :class:`LocalRunner` from a timer, tests and scripts call
:meth:`LocalRunner.wait`.
"""

from napari_ssseg.runner.events import ProgressEvent, RunEvent, RunStatus, StatusEvent
from napari_ssseg.runner.job import TrainingJob, VolumeInput
from napari_ssseg.runner.local import LocalRunner
from napari_ssseg.runner.results import RunResult, VolumeResult

__all__ = [
    "LocalRunner",
    "ProgressEvent",
    "RunEvent",
    "RunResult",
    "RunStatus",
    "StatusEvent",
    "TrainingJob",
    "VolumeInput",
    "VolumeResult",
]
