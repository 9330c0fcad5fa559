"""Embeddings made ahead of a run: every slice a training run with the foundation model will
give its encoder, embedded before the run starts and left in the run's embedding cache.

The encoder is the slow part on a CPU (seconds per slice); made while the user labels, or
before a timed benchmark run, the embeddings leave the whole training budget to steps. The
slices are those the run itself may embed: each slice of every volume with an unannotated or
a labelled slice at its source resolution (the foundation teacher's targets and the
refinement of predictions) and the feature bank's network-size slices (distillation,
prototypes).

:func:`embed_volume` serves the dock while the user is still labelling: which slices a run
will embed depends on the labels, so it embeds every slice of the volume, at source
resolution and (for the feature terms) as the network's padded square.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.foundation import loading
from napari_ssseg.settings import TrainConfig


class EmbeddingStopped(Exception):
    """Raised by :func:`embed_volume` when ``should_stop`` said so; what was embedded stays."""


def needs_embeddings(config: TrainConfig, num_classes: int) -> bool:
    """Whether a run of ``config`` on a project of ``num_classes`` classes gives slices to
    the foundation model's encoder: a foundation-model teacher or feature term, or
    predictions refined by it."""
    return needs_source_slices(config, num_classes) or config.uses_feature_bank


def needs_source_slices(config: TrainConfig, num_classes: int) -> bool:
    """Whether a run of ``config`` on a project of ``num_classes`` classes embeds slices at
    their source resolution: the foundation teacher's targets and refined predictions do;
    the feature bank takes network squares."""
    return config.uses_foundation_teacher or config.refine_mode(num_classes) != "off"


def precompute_embeddings(
    project: Project,
    config: TrainConfig,
    on_progress: Callable[[float], None] | None = None,
) -> int:
    """Fill ``config``'s embedding cache for a run of ``config`` on ``project``.

    Returns the number of slices the encoder embedded (those already cached cost nothing).
    Nothing happens for a run that does not need the foundation model
    (:func:`needs_embeddings`).
    """
    num_classes = len(project.class_names)
    if not needs_embeddings(config, num_classes):
        return 0
    from napari_ssseg.data.pool import SlicePool
    from napari_ssseg.training.embedding_bank import bank_squares, choose_slices
    from napari_ssseg.training.teachers.foundation import source_slices

    pool = SlicePool(project, config.student.image_size, config.student.intensity)
    slices: list[np.ndarray] = []
    if needs_source_slices(config, num_classes):
        for data in source_slices(project, pool).values():
            slices.extend(data)
    if config.uses_feature_bank:
        slices.extend(bank_squares(pool, choose_slices(pool, config.features.slices)))
    progress = None if on_progress is None else lambda done, total: on_progress(done / total)
    return _embed_into_cache(config, slices, progress)


def embed_volume(
    volume: AnnotatedVolume,
    config: TrainConfig,
    num_classes: int,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[int, int]:
    """Fill ``config``'s embedding cache with every slice of ``volume`` a run of ``config``
    on a project of ``num_classes`` classes could embed, whatever the user labels next: each
    slice along ``volume.axis`` at source resolution (the foundation teacher, refined
    predictions) and, when a feature term is on, each slice as the network's padded square
    (the feature bank); with pretraining alone (``features.pretrain_steps``), the squares of the
    label-free bank it distils from.

    ``on_progress(done, total)`` follows each slice; ``should_stop`` is asked before each
    one and raises :class:`EmbeddingStopped` (the embeddings made so far stay cached).
    Returns (slices embedded now, slices in all); nothing happens for a run that does not
    need the foundation model (:func:`needs_embeddings`).
    """
    if not needs_embeddings(config, num_classes):
        return 0, 0
    from napari_ssseg.data.pool import SlicePool
    from napari_ssseg.training.embedding_bank import bank_squares, choose_slices

    source = needs_source_slices(config, num_classes)
    slices = list(loading.volume_slices(volume, config.student.intensity)) if source else []
    if config.uses_feature_bank:
        # Only the images matter for the squares: a label-free copy needs no class names.
        blank = AnnotatedVolume.unlabelled(volume.image, volume.axis)
        pool = SlicePool(
            Project([blank], ["foreground"]), config.student.image_size, config.student.intensity
        )
        # Distillation in the steps takes the run's bank, which depends on the labels: every
        # square. Pretraining alone takes the label-free bank (training/pretraining.py).
        refs = (
            sorted(pool.labelled + pool.unlabelled)
            if config.uses_feature_terms
            else choose_slices(pool, config.features.slices)
        )
        slices.extend(bank_squares(pool, refs))
    return _embed_into_cache(config, slices, on_progress, should_stop), len(slices)


def _embed_into_cache(
    config: TrainConfig,
    slices: list[np.ndarray],
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Embed each (H, W) slice into ``config``'s cache with its foundation model, one at a
    time (``on_progress(done, total)`` after each, ``should_stop`` before each: raises
    :class:`EmbeddingStopped`); returns how many were not cached already."""
    from napari_ssseg.foundation.embedding_cache import embed_slices

    backend = loading.load_backend(config.foundation)
    cache = loading.embedding_cache(config.foundation)
    before = cache.misses
    for i, image in enumerate(slices):
        if should_stop is not None and should_stop():
            raise EmbeddingStopped(f"stopped after {i} of {len(slices)} slices")
        embed_slices(backend, [image], cache)
        if on_progress is not None:
            on_progress(i + 1, len(slices))
    return cache.misses - before
