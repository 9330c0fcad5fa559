"""Train a project into a :class:`TrainedModel` (the task behind CLI, plugin and benchmark)."""

from __future__ import annotations

from collections.abc import Callable

from napari_ssseg.annotation import Project
from napari_ssseg.model_store import TrainedModel
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.loop import TrainProgress, train


def train_model(
    project: Project,
    config: TrainConfig,
    init: TrainedModel | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainedModel:
    """Train on ``project`` (warm-starting from ``init`` when its architecture matches)."""
    init_state = None
    if init is not None:
        if init.config.channels != config.channels or init.num_classes != project.num_classes:
            raise ValueError("the model to warm-start from has another architecture or class set")
        init_state = init.state_dict
    result = train(project, config, init_state, on_progress, should_stop)
    summary = {
        "iterations": result.iterations,
        "seconds": round(result.elapsed, 2),
        "stopped_early": result.stopped_early,
        "volumes": [v.image.name for v in project.volumes],
        "annotated_slices": {v.image.name: v.annotated_slices for v in project.volumes},
        "weights": "student",
    }
    model = TrainedModel(result.state_dict, config, list(project.class_names), summary)
    for volume in project.volumes:
        model.remember(volume)
    return model


MIN_USEFUL_STEPS = 100


def undertrained_warning(summary: dict) -> str | None:
    """A warning when a time budget allowed too few steps for a usable model, else None."""
    if summary["iterations"] < MIN_USEFUL_STEPS and not summary["stopped_early"]:
        return (
            f"only {summary['iterations']} training steps fitted in the time budget; results "
            "will be poor (raise --max-time or free the CPU)"
        )
    return None
