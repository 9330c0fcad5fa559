"""Train a project into a :class:`TrainedModel` (the task behind CLI, plugin and benchmark).

A project of several volumes is trained from a temporary disk store of its prepared slices
(:mod:`napari_ssseg.data.slice_store`) rather than from memory; a
:class:`~napari_ssseg.data.slice_store.StreamedProject` brings its own store.
"""

from __future__ import annotations

from collections.abc import Callable

from napari_ssseg.annotation import Project
from napari_ssseg.data.slice_store import SliceStore, StreamedProject
from napari_ssseg.errors import InputError
from napari_ssseg.model_store import TrainedModel
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.loop import TrainProgress, TrainResult, train
from napari_ssseg.training.pretraining import PretrainedStudent
from napari_ssseg.training.replica import Replica


def train_model(
    project: Project,
    config: TrainConfig,
    init: TrainedModel | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    replica: Replica | None = None,
    stream: bool | None = None,
    pretrained: PretrainedStudent | None = None,
) -> TrainedModel:
    """Train on ``project`` (warm-starting from ``init`` when its architecture matches);
    ``replica`` places this process among data-parallel copies (None: the only one);
    ``pretrained``: a fresh run starts from this student, distilled before the run
    (:mod:`~napari_ssseg.training.pretraining`), and does not pretrain again; without it a
    fresh run with ``pretrain_steps`` looks for one stored for this project and settings
    (:mod:`~napari_ssseg.training.student_store`).

    ``stream``: prepare the slices into a temporary :class:`SliceStore` (deleted when training
    ends, also on error or cancel) and read batches from it, instead of holding every
    prepared volume in memory; None streams a project of more than one volume. A
    :class:`StreamedProject` is always read from its own store. Either way the same seed
    gives the same weights.
    """
    init_state = None
    if init is not None:
        if init.config.channels != config.channels or init.num_classes != project.num_classes:
            raise InputError(
                f"the model to warm-start from has channels {list(init.config.channels)} and "
                f"{init.num_classes} classes; this run needs {list(config.channels)} and "
                f"{project.num_classes}"
            )
        init_state = init.state_dict
    if init is None and pretrained is None and config.pretrain_steps > 0:
        from napari_ssseg.training.student_store import stored_student

        # One made while the user labelled (the dock's preparation job), if any.
        pretrained = stored_student(project, config)
    if stream is None:
        stream = len(project.volumes) > 1

    def run(data: Project) -> TrainResult:
        return train(
            data,
            config,
            init_state,
            on_progress,
            should_stop,
            replica=replica,
            pretrained=pretrained,
        )

    if stream and not isinstance(project, StreamedProject):
        with SliceStore.temporary() as store:
            result = run(StreamedProject(project.volumes, project.class_names, store))
    else:
        result = run(project)
    summary = {
        "iterations": result.iterations,
        "seconds": round(result.elapsed, 2),
        "stopped_early": result.stopped_early,
        "teachers_from": result.teachers_from,
        "pretrained": result.pretrained,
        "teacher_work": result.teacher_work,
        "volumes": [v.image.name for v in project.volumes],
        "annotated_slices": {v.image.name: v.annotated_slices for v in project.volumes},
        "weights": "student",
    }
    model = TrainedModel(result.state_dict, config, list(project.class_names), summary)
    for volume in project.volumes:
        model.remember(volume)
    return model


MIN_USEFUL_STEPS = 100


def undertrained_warning(summary: dict, config: TrainConfig) -> str | None:
    """A warning when the time budget (not ``max_iters``, nor a stop) ended training after
    too few steps for a usable model, else None."""
    steps = summary["iterations"]
    if config.max_time is None or summary["stopped_early"] or steps >= config.max_iters:
        return None
    if steps < MIN_USEFUL_STEPS:
        return (
            f"only {summary['iterations']} training steps fitted in the time budget; results "
            "will be poor (raise --max-time or free the CPU)"
        )
    return None
