"""Segmentation methods the benchmark compares, behind one small interface.

A method segments one volume of the sparse protocol from its revealed slices
(:meth:`Method.segment_sparse`), and for the cases protocol learns from a project once
(:meth:`Method.fit`) and then segments unseen volumes (:meth:`Method.segment`).

Methods that use the foundation model start every volume (sparse) and every fit (cases)
with an empty embedding cache of their own, so each is timed, and given its budget, as a
first run on that data: no method gets embeddings another one made.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.baselines.interpolation import interpolate_between_slices
from napari_ssseg.model_store import TrainedModel
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.presets import parse_method
from napari_ssseg.tasks.predict import predict
from napari_ssseg.tasks.train import train_model


class Method:
    """Base class: ``name`` plus the protocol hooks it supports."""

    name = "method"
    learns = False
    last_steps: int | None = None
    """Training steps of the last model fitted (None for methods that do not train)."""
    last_untimed: float = 0.0
    """Seconds of the last call spent on work left out of its time (precomputed embeddings)."""
    last_teachers_from: int | None = None
    """The step from which the last run's teachers taught (None: never, or no teachers)."""
    last_pretrained: int = 0
    """Feature-distillation steps the last run made before its first labelled step."""
    last_teacher_work: dict | None = None
    """Per teacher, what its own work came to in the last run (refreshes, seconds)."""

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


@dataclass
class Learned(Method):
    """A trained U-Net; ``config.method`` names the preset (``settings.presets.PRESETS``);
    ``refine`` is the prediction's refine mode (None: the model's default); ``label`` the name
    in tables (default: the preset's)."""

    config: TrainConfig
    model: TrainedModel | None = None
    refine: str | None = None
    label: str | None = None
    learns = True
    precompute: bool = False
    """Embed every slice the run needs before it starts, untimed (see ``last_untimed``)."""
    pretrain_before: bool = False
    """With ``precompute``: the run's pretraining (``features.pretrain_steps``) too, before it
    starts and untimed, as the dock does while the user labels."""
    _fit_cache: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.label or self.config.method

    def segment_sparse(self, volume: AnnotatedVolume, num_classes: int) -> np.ndarray:
        project = Project([volume], [f"class {i}" for i in range(1, num_classes + 1)])
        with tempfile.TemporaryDirectory(prefix="ssseg-bench-embeddings-") as cache:
            config = self.config.with_values({"foundation": {"embedding_cache": cache}})
            self.last_untimed = 0.0
            if self.precompute:
                from napari_ssseg.tasks.embeddings import precompute_embeddings

                start = time.perf_counter()
                if config.features.pretrain_steps > 0 and self.pretrain_before:
                    from napari_ssseg.training.student_store import prepare_student

                    # The run itself embeds only what its method needs besides; it finds
                    # the student in the cache, as after the dock's preparation job.
                    unprepared = config.with_values({"features": {"pretrain_steps": 0}})
                    precompute_embeddings(project, unprepared)
                    prepare_student(project, config)
                else:
                    precompute_embeddings(project, config)
                self.last_untimed = time.perf_counter() - start
            model = train_model(project, config)
            self._remember_run(model.summary)
            return predict(model, volume.image, volume, refine=self.refine).labels

    def fit(self, project: Project) -> None:
        # The cache lives until the next fit: segment() refines with it.
        self._fit_cache = tempfile.TemporaryDirectory(prefix="ssseg-bench-embeddings-")
        config = self.config.with_values({"foundation": {"embedding_cache": self._fit_cache.name}})
        self.model = train_model(project, config)
        self._remember_run(self.model.summary)

    def _remember_run(self, summary: dict) -> None:
        """Keep what the benchmark reports of a run (its model's ``summary``)."""
        self.last_steps = summary["iterations"]
        self.last_teachers_from = summary.get("teachers_from")
        self.last_pretrained = summary.get("pretrained", 0)
        self.last_teacher_work = summary.get("teacher_work") or None

    def segment(self, volume: AnnotatedVolume) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit() must run before segment()")
        return predict(self.model, volume.image, volume, refine=self.refine).labels


@dataclass
class SamBox(Method):
    """LiteMedSAM alone, prompted with boxes of the shapes interpolated between annotated
    slices (see :mod:`napari_ssseg.foundation.box_propagation`)."""

    config: TrainConfig
    name = "sam-box"

    def __post_init__(self) -> None:
        self._backend = None

    def segment_sparse(self, volume: AnnotatedVolume, num_classes: int) -> np.ndarray:
        from napari_ssseg.foundation.box_propagation import segment_with_propagated_boxes
        from napari_ssseg.foundation.embedding_cache import EmbeddingCache
        from napari_ssseg.foundation.litemedsam import LiteMedSamBackend

        if self._backend is None:
            self._backend = LiteMedSamBackend.load()
        with tempfile.TemporaryDirectory(prefix="ssseg-bench-embeddings-") as folder:
            return segment_with_propagated_boxes(
                volume,
                num_classes,
                self._backend,
                EmbeddingCache(folder),
                self.config.student.intensity,
            )


FIXED_METHODS = ("interp", "interp-nn", "sam-box")


def make_method(name: str, config: TrainConfig) -> Method:
    """Build a method by its benchmark name; ``config`` is the base training settings.

    Learned methods are a preset followed by any number of ``+part`` / ``-part`` switches
    (:func:`~napari_ssseg.settings.presets.parse_method`): ``ssl+sam`` (ssl with the
    foundation-model teacher added), ``full-cutmix``, ``unet+refine``; the benchmark's own
    ``+precompute`` and ``+prepare`` make embeddings (and the pretrained student) before the
    run, outside its time. Raises :class:`SsSegError` naming what is not understood.
    """
    if name == "interp":
        return Interpolation(extrapolate=False)
    if name == "interp-nn":
        return Interpolation(extrapolate=True)
    if name == "sam-box":
        return SamBox(config)
    method = parse_method(name)
    refine = method.settings.get("prediction", {}).get("refine")
    return Learned(
        config.with_values(method.values()),
        refine=refine,
        label=name,
        precompute=bool(method.flags),
        pretrain_before="prepare" in method.flags,
    )
