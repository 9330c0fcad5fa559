"""Work made before a run, while the user labels: the foundation model's embeddings of every
slice a run could give its encoder and, for settings with ``pretrain_steps``, the student
distilled from the images alone.

Both land where a later run looks: embeddings in the config's embedding cache (keyed by the
slice's content), the student in the store beside it (keyed by the volumes and the settings
that shape it, :mod:`~napari_ssseg.training.student_store`). Neither reads the labels, so the
work can start before the first stroke. The dock's preparation job
(:mod:`napari_ssseg.runner.worker`, task ``embed``) and ``napari-ssseg prepare`` both run
:func:`prepare_volumes`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.settings import TrainConfig


@dataclass(frozen=True)
class PreparationProgress:
    """A progress snapshot of :func:`prepare_volumes`.

    Attributes:
        stage: ``"embed"`` (the encoder, volume after volume) then ``"pretrain"``.
        fraction: progress of the stage in [0, 1].
        elapsed: seconds since the stage began.
        done: slices embedded in the current volume, or distillation steps made.
        loss: the distillation loss of the last step (None while embedding).
    """

    stage: str
    fraction: float
    elapsed: float
    done: int
    loss: float | None = None


@dataclass(frozen=True)
class Preparation:
    """What :func:`prepare_volumes` made.

    Attributes:
        slices: slices a run of the settings could embed, over all volumes.
        embedded: those the encoder embedded now (the rest were cached already).
        embed_seconds: time spent embedding.
        pretrained_steps: steps of the stored student (0 when none was asked for).
    """

    slices: int
    embedded: int
    embed_seconds: float
    pretrained_steps: int = 0

    def summary(self) -> str:
        text = (
            f"{self.slices} slices ready for the foundation model ({self.embedded} embedded in "
            f"{self.embed_seconds:.0f} s)"
        )
        if self.pretrained_steps:
            text += f"; network pretrained ({self.pretrained_steps} steps)"
        return text


def prepare_volumes(
    volumes: Sequence[Callable[[], AnnotatedVolume]],
    class_names: Sequence[str],
    config: TrainConfig,
    pretrain: bool = True,
    on_progress: Callable[[PreparationProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Preparation | None:
    """Embed every slice of each volume a run of ``config`` could embed, whatever is labelled
    next (:func:`~napari_ssseg.tasks.embeddings.embed_volume`), then, with ``pretrain``
    and ``features.pretrain_steps``, distil and store the student a fresh run of exactly these
    volumes starts from (:func:`~napari_ssseg.training.student_store.prepare_student`).

    ``volumes`` are loaders, called one at a time while embedding so that memory holds one
    volume (the pretraining then reads them all again, as its run will); ``class_names``
    give the project's class count (the student's, and whether predictions are refined).
    Returns None when ``should_stop`` said so: the embeddings made so far stay cached, a
    student stopped early is not stored.
    """
    from napari_ssseg.tasks.embeddings import EmbeddingStopped, embed_volume
    from napari_ssseg.training.student_store import prepare_student

    stop = should_stop or (lambda: False)
    start = time.monotonic()
    made = total = 0
    last: AnnotatedVolume | None = None
    for i, load in enumerate(volumes):

        def on_slice(done: int, count: int, i: int = i) -> None:
            if on_progress is not None:
                fraction = (i + done / count) / len(volumes)
                on_progress(PreparationProgress("embed", fraction, time.monotonic() - start, done))

        last = load()
        try:
            new, count = embed_volume(last, config, len(class_names), on_slice, stop)
        except EmbeddingStopped:
            return None
        made, total = made + new, total + count
    embedded = Preparation(total, made, time.monotonic() - start)
    steps = config.features.pretrain_steps
    if not pretrain or steps <= 0:
        return embedded
    start = time.monotonic()

    def on_step(done: int, loss: float) -> None:
        if on_progress is not None:
            elapsed = time.monotonic() - start
            on_progress(PreparationProgress("pretrain", done / steps, elapsed, done, loss))

    # One volume is still in memory; more are read again (the student is keyed by them all).
    loaded = [last] if len(volumes) == 1 and last is not None else [load() for load in volumes]
    student = prepare_student(
        Project(loaded, list(class_names)), config, lambda: not stop(), on_step
    )
    if student.steps < steps:
        return None
    return replace(embedded, pretrained_steps=student.steps)
