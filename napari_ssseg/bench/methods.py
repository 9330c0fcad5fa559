"""Segmentation methods the benchmark compares, behind one small interface.

A method segments one volume of the sparse protocol from its revealed slices
(:meth:`Method.segment_sparse`), and for the cases protocol learns from a project once
(:meth:`Method.fit`) and then segments unseen volumes (:meth:`Method.segment`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.baselines.interpolation import interpolate_between_slices
from napari_ssseg.inference.predict import predict_volume
from napari_ssseg.model_store import TrainedModel
from napari_ssseg.pipeline import train_model
from napari_ssseg.training.config import METHODS, TrainConfig


class Method:
    """Base class: ``name`` plus the protocol hooks it supports."""

    name = "method"
    learns = False
    last_steps: int | None = None
    """Training steps of the last model fitted (None for methods that do not train)."""

    def segment_sparse(self, volume: AnnotatedVolume, num_classes: int) -> np.ndarray:
        """(X, Y, Z) labels from the annotated slices of ``volume``."""
        raise NotImplementedError

    def fit(self, project: Project) -> None:
        raise NotImplementedError(f"{self.name} does not support the cases protocol")

    def segment(self, volume: AnnotatedVolume) -> np.ndarray:
        raise NotImplementedError(f"{self.name} does not support the cases protocol")


@dataclass
class Interpolation(Method):
    """Shape-based interpolation of signed distances between annotated slices."""

    extrapolate: bool = False

    @property
    def name(self) -> str:  # type: ignore[override]
        return "interp-nn" if self.extrapolate else "interp"

    def segment_sparse(self, volume: AnnotatedVolume, num_classes: int) -> np.ndarray:
        spacing = tuple(s for i, s in enumerate(volume.image.spacing) if i != volume.axis)
        return interpolate_between_slices(
            volume.labels,
            volume.annotated_slices,
            volume.axis,
            num_classes,
            extrapolate=self.extrapolate,
            spacing=spacing,
        )


REFINED_SUFFIX = "+refine"
"""A learned method's name with this suffix predicts with ``refine="auto"`` (the foundation
model's refined masks where they measure better on the annotated slices)."""


@dataclass
class Learned(Method):
    """A trained U-Net; ``config.method`` names the preset (see ``training.config.METHODS``);
    ``refine`` is the prediction's refine mode (None: the model's default)."""

    config: TrainConfig
    model: TrainedModel | None = None
    refine: str | None = None
    learns = True

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.config.method + (REFINED_SUFFIX if self.refine == "auto" else "")

    def segment_sparse(self, volume: AnnotatedVolume, num_classes: int) -> np.ndarray:
        project = Project([volume], [f"class {i}" for i in range(1, num_classes + 1)])
        model = train_model(project, self.config)
        self.last_steps = model.summary["iterations"]
        return predict_volume(model, volume, refine=self.refine).labels

    def fit(self, project: Project) -> None:
        self.model = train_model(project, self.config)
        self.last_steps = self.model.summary["iterations"]

    def segment(self, volume: AnnotatedVolume) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit() must run before segment()")
        return predict_volume(self.model, volume, refine=self.refine).labels


@dataclass
class SamBox(Method):
    """LiteMedSAM alone, prompted with boxes of the shapes interpolated between annotated
    slices (see :mod:`napari_ssseg.foundation.box_propagation`)."""

    config: TrainConfig
    name = "sam-box"

    def __post_init__(self) -> None:
        self._backend = None
        self._cache = None

    def segment_sparse(self, volume: AnnotatedVolume, num_classes: int) -> np.ndarray:
        from napari_ssseg.foundation.box_propagation import segment_with_propagated_boxes
        from napari_ssseg.foundation.checkpoints import default_cache_dir
        from napari_ssseg.foundation.embedding_cache import EmbeddingCache
        from napari_ssseg.foundation.litemedsam import LiteMedSamBackend

        if self._backend is None:
            self._backend = LiteMedSamBackend.load()
            self._cache = EmbeddingCache(default_cache_dir() / "embeddings")
        return segment_with_propagated_boxes(
            volume, num_classes, self._backend, self._cache, self.config.intensity
        )


METHOD_NAMES = (
    "interp",
    "interp-nn",
    "sam-box",
    *METHODS,
    *(method + REFINED_SUFFIX for method in METHODS),
)


def make_method(name: str, config: TrainConfig) -> Method:
    """Build a method by its benchmark name; ``config`` is the base training settings."""
    if name == "interp":
        return Interpolation(extrapolate=False)
    if name == "interp-nn":
        return Interpolation(extrapolate=True)
    if name == "sam-box":
        return SamBox(config)
    if name in METHODS:
        return Learned(replace(config, method=name))
    if name.endswith(REFINED_SUFFIX) and name.removesuffix(REFINED_SUFFIX) in METHODS:
        return Learned(replace(config, method=name.removesuffix(REFINED_SUFFIX)), refine="auto")
    raise ValueError(name)
