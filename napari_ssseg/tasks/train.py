"""The train task: from a project and settings to a :class:`TrainedModel`, the one way the
command line, the background worker, the Ray workers, the benchmark and the demo train.

It checks and loads the model to warm-start from, finds a student pretrained while the user
labelled, trains (a project of several volumes from a temporary disk store of its prepared
slices, :mod:`napari_ssseg.data.slice_store`), and says what the user should know (a
warning about the data, a budget too short for a usable model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from napari_ssseg.annotation import Project
from napari_ssseg.data.slice_store import SliceStore, StreamedProject
from napari_ssseg.errors import InputError
from napari_ssseg.model_store import TrainedModel, load_model
from napari_ssseg.settings import TrainConfig
from napari_ssseg.training.loop import TrainProgress, TrainResult, train
from napari_ssseg.training.pretraining import PretrainedStudent
from napari_ssseg.training.replica import Replica
from napari_ssseg.training.student_store import stored_student

MIN_USEFUL_STEPS = 100

Notify = Callable[[str], None]
"""Receives a line the user should read (the CLI prints it, the dock shows it)."""


def warm_start_problem(
    init: TrainedModel, config: TrainConfig, class_names: Sequence[str]
) -> str | None:
    """Why a run of ``config`` on classes ``class_names`` cannot start from ``init``'s
    weights (a different network or other classes), or None when it can."""
    if init.config.student.channels != config.student.channels:
        return (
            f"it has U-Net channels {list(init.config.student.channels)}; this run has "
            f"{list(config.student.channels)}"
        )
    if list(init.class_names) != list(class_names):
        return (
            f"it has the classes {', '.join(init.class_names)}; this run has "
            f"{', '.join(class_names)}"
        )
    return None


def start_model(
    init: TrainedModel | str | Path | None, config: TrainConfig, project: Project
) -> TrainedModel | None:
    """The model to warm-start from (read from its folder when a path is given), checked
    against the run; raises :class:`InputError` naming the model and the mismatch."""
    if init is None:
        return None
    model = init if isinstance(init, TrainedModel) else load_model(init)
    problem = warm_start_problem(model, config, project.class_names)
    if problem is not None:
        where = "" if isinstance(init, TrainedModel) else f" {init}"
        raise InputError(f"cannot warm-start from the model{where}: {problem}")
    return model


def train_model(
    project: Project,
    config: TrainConfig,
    init: TrainedModel | str | Path | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    replica: Replica | None = None,
    stream: bool | None = None,
    pretrained: PretrainedStudent | None = None,
    notify: Notify | None = None,
) -> TrainedModel:
    """Train on ``project``, warm-starting from ``init`` (a model or its folder, checked by
    :func:`start_model`); ``replica`` places this process among data-parallel copies (None:
    the only one); ``pretrained``: a fresh run starts from this student, distilled before the
    run, and does not pretrain again; without it a fresh run with ``pretrain_steps`` uses one
    stored for this project and settings (:mod:`~napari_ssseg.training.student_store`).

    ``stream``: prepare the slices into a temporary :class:`SliceStore` (deleted when
    training ends, also on error or cancel) and read batches from it, instead of holding
    every prepared volume in memory; None streams a project of more than one volume. Either
    way the same seed gives the same weights. ``notify`` receives warnings for the user.
    """
    say = notify or (lambda line: None)
    init_model = start_model(init, config, project)
    # Read from the annotated slices of every volume: only when someone listens.
    if notify is not None and (replica is None or replica.reports):
        for warning in project.warnings(semi_supervised=bool(config.active_teachers)):
            say(f"warning: {warning}")
    if init_model is None and pretrained is None and config.features.pretrain_steps > 0:
        # One made while the user labelled (the dock's preparation, 'napari-ssseg prepare').
        pretrained = stored_student(project, config)
        if pretrained is not None:
            say("starting from the network made while preparing (napari-ssseg prepare)")
    init_state = None if init_model is None else init_model.state_dict
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
    warning = undertrained_warning(summary, config)
    if warning is not None:
        say(f"warning: {warning}")
    return model


def undertrained_warning(summary: dict, config: TrainConfig) -> str | None:
    """A warning when the time budget (not ``max_iters``, nor a stop) ended training after
    too few steps for a usable model, else None."""
    steps = summary["iterations"]
    budget = config.budget
    if budget.max_time is None or summary["stopped_early"] or steps >= budget.max_iters:
        return None
    if steps < MIN_USEFUL_STEPS:
        return (
            f"only {steps} training steps fitted in the time budget; results will be poor "
            "(raise --max-time or free the CPU)"
        )
    return None
