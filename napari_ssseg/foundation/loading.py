"""The foundation model and embedding cache that a run's settings name, and the source
slices it embeds."""

from __future__ import annotations

import numpy as np

from napari_ssseg.annotation import AnnotatedVolume
from napari_ssseg.data.intensity import normalise_intensity
from napari_ssseg.foundation.backend import FoundationBackend
from napari_ssseg.foundation.embedding_cache import EmbeddingCache
from napari_ssseg.settings.prediction import FoundationSettings
from napari_ssseg.settings.student import IntensityConfig


def load_backend(settings: FoundationSettings) -> FoundationBackend:
    """The foundation model of ``settings`` (LiteMedSAM by default), on the CPU."""
    from napari_ssseg.foundation.litemedsam import LiteMedSamBackend
    from napari_ssseg.foundation.sam import SamBackend

    if settings.model == "litemedsam":
        return LiteMedSamBackend.load(settings.checkpoint)
    return SamBackend.load(settings.model, settings.checkpoint)


def embedding_cache(settings: FoundationSettings) -> EmbeddingCache:
    """The on-disk embedding cache of ``settings`` (default: the user cache folder)."""
    from napari_ssseg.foundation.checkpoints import default_cache_dir

    root = settings.embedding_cache or default_cache_dir() / "embeddings"
    return EmbeddingCache(root)


def volume_slices(volume: AnnotatedVolume, intensity: IntensityConfig) -> np.ndarray:
    """(N, H, W) slices of ``volume`` along its axis at source resolution, in [0, 1]: what the
    foundation model embeds of it (the teacher's targets, refined predictions)."""
    data = normalise_intensity(volume.image.data, intensity)
    return np.moveaxis(data, volume.axis, 0)
