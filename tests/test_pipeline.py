"""The warning after a run the clock cut short, and only then."""

from napari_ssseg.pipeline import undertrained_warning
from napari_ssseg.training.config import TrainConfig


def summary(steps: int, stopped: bool = False) -> dict:
    return {"iterations": steps, "stopped_early": stopped}


def test_undertrained_warning_only_when_the_time_budget_ended_a_short_run():
    timed = TrainConfig(max_time=10.0, max_iters=5000)
    assert "only 40 training steps" in undertrained_warning(summary(40), timed)
    assert undertrained_warning(summary(400), timed) is None
    assert undertrained_warning(summary(40, stopped=True), timed) is None  # the user stopped
    assert undertrained_warning(summary(30), TrainConfig(max_time=10.0, max_iters=30)) is None
    assert undertrained_warning(summary(40), TrainConfig(max_time=None, max_iters=5000)) is None
