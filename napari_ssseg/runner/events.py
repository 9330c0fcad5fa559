"""What a background run reports: its status and its progress (small, picklable messages)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class RunStatus(str, Enum):
    """Life of a run: ``pending`` until the child process has started, then ``running``, and
    finally one of ``done``, ``error`` or ``stopped``."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    STOPPED = "stopped"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.DONE, RunStatus.ERROR, RunStatus.STOPPED)


@dataclass(frozen=True)
class StatusEvent:
    """The run entered ``status``; ``message`` explains an error or where the results are."""

    status: RunStatus
    message: str = ""


@dataclass(frozen=True)
class ProgressEvent:
    """A progress snapshot.

    Attributes:
        stage: ``"train"``, ``"predict"``, or in an embedding job ``"embed"`` then
            ``"pretrain"`` (its student, for settings with ``pretrain_steps``).
        fraction: progress of the stage in [0, 1].
        elapsed: seconds since the stage began.
        iteration: training step (0 while predicting; slices done while embedding;
            distillation steps done while pretraining).
        losses: the latest training losses by name (empty while predicting).
    """

    stage: str
    fraction: float
    elapsed: float
    iteration: int = 0
    losses: dict[str, float] = field(default_factory=dict)


RunEvent = StatusEvent | ProgressEvent
