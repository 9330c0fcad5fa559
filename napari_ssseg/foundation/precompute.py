"""Embeddings made ahead of a run: every slice a training run with the foundation model will
give its encoder, embedded before the run starts and left in the run's embedding cache.

The encoder is the slow part on a CPU (seconds per slice); made while the user labels, or
before a timed benchmark run, the embeddings leave the whole training budget to steps. The
slices are those the run itself embeds: each slice of the partially annotated volumes at its
source resolution (the foundation teacher's targets and the refinement of predictions) and
the feature bank's network-size slices (distillation, prototypes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from napari_ssseg.annotation import Project
from napari_ssseg.training.config import TrainConfig


def precompute_embeddings(
    project: Project,
    config: TrainConfig,
    on_progress: Callable[[float], None] | None = None,
) -> int:
    """Fill ``config``'s embedding cache for a run of ``config`` on ``project``.

    Returns the number of slices the encoder embedded (those already cached cost nothing).
    Nothing happens for a run without the foundation model.
    """
    if not config.uses_foundation_model:
        return 0
    from napari_ssseg.data.slices import SlicePool
    from napari_ssseg.foundation.embedding_cache import embed_slices
    from napari_ssseg.training.embedding_bank import bank_squares, choose_slices
    from napari_ssseg.training.teachers.foundation import (
        embedding_cache,
        load_backend,
        source_slices,
    )

    backend = load_backend(config)
    cache = embedding_cache(config)
    pool = SlicePool(project, config.image_size, config.intensity, config.context)
    slices: list[np.ndarray] = []
    for data in source_slices(project, pool, config).values():
        slices.extend(data)
    if config.part("distill_weight") > 0 or config.part("prototype_weight") > 0:
        slices.extend(bank_squares(pool, choose_slices(pool, config.distill_slices)))
    before = cache.misses
    for i, image in enumerate(slices):
        embed_slices(backend, [image], cache)
        if on_progress is not None:
            on_progress((i + 1) / len(slices))
    return cache.misses - before
