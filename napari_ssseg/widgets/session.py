"""The state of one annotation session, without Qt: what the dock widget shows and edits.

Arrays are in volume order (X, Y, Z); ``labels`` may be a view of a napari labels layer
(layer order (Z, Y, X)), so the user's painting and :meth:`AnnotationSession.accept` change
the same memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_ssseg.annotation import AnnotatedVolume, default_slice_axis, slice_index
from napari_ssseg.bench.metrics import dice_per_class, mean_dice
from napari_ssseg.errors import AnnotationError, InputError
from napari_ssseg.inference.predict import Prediction
from napari_ssseg.io.volume import Volume
from napari_ssseg.project_store import SavedProject, load_project, save_project
from napari_ssseg.runner.job import TrainingJob, VolumeInput
from napari_ssseg.runner.results import RunResult
from napari_ssseg.settings import TrainConfig


def parse_class_names(text: str) -> list[str]:
    """``"liver, spleen"`` -> ``["liver", "spleen"]``; blanks are dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


@dataclass
class Agreement:
    """Mean Dice on the slices accepted since the previous run, against what was accepted
    there: the previous model's prediction (``before``) and the new model's (``after``)."""

    slices: list[int]
    before: float
    after: float


class AnnotationSession:
    """One image, the user's labels on it and the results of the last training run.

    Attributes:
        image: the image volume (X, Y, Z).
        labels: (X, Y, Z) integer labels, possibly a view of a napari layer's data.
        axis: the slice axis.
        marked_empty: slices declared annotated although unpainted.
        class_names: names of classes 1..C.
        model_dir: the last trained model, used to warm-start the next run.
        prediction: the last run's prediction, or None before the first run.
        agreement: the last retraining's agreement on accepted slices, or None.
    """

    def __init__(
        self,
        image: Volume,
        labels: np.ndarray,
        class_names: Sequence[str] = (),
        axis: int | None = None,
    ) -> None:
        if tuple(labels.shape) != image.shape:
            raise InputError(
                f"{image.name}: the labels layer grid {tuple(labels.shape)} differs from the "
                f"image grid {image.shape}"
            )
        self.image = image
        self.labels = labels
        self.axis = default_slice_axis(image.spacing) if axis is None else int(axis)
        self.marked_empty: set[int] = set()
        self.class_names = list(class_names)
        self.model_dir: Path | None = None
        self.prediction: Prediction | None = None
        self.agreement: Agreement | None = None
        self._accepted_before: dict[int, np.ndarray] = {}

    # -- annotated slices -----------------------------------------------------------------

    def annotation(self) -> AnnotatedVolume:
        """A snapshot (copy) of the annotation state for training or saving."""
        return AnnotatedVolume(self.image, np.array(self.labels), self.axis, set(self.marked_empty))

    @property
    def num_slices(self) -> int:
        return self.image.shape[self.axis]

    def painted_slices(self) -> list[int]:
        other = tuple(a for a in range(3) if a != self.axis)
        return [int(i) for i in np.flatnonzero(np.any(self.labels != 0, axis=other))]

    @property
    def annotated_slices(self) -> list[int]:
        """Painted slices plus annotated-but-empty ones, sorted."""
        return sorted(set(self.painted_slices()) | self.marked_empty)

    def toggle_empty_mark(self, index: int) -> bool:
        """Mark slice ``index`` annotated-but-empty, or withdraw the mark; returns the new
        state. A painted slice is annotated by its labels: erase them to un-annotate it."""
        index = self._checked(index)
        if index in self.marked_empty:
            self.marked_empty.discard(index)
            return False
        if index in self.painted_slices():
            raise AnnotationError(
                f"slice {index} holds labels and so is annotated already; erase them to "
                "un-annotate it"
            )
        self.marked_empty.add(index)
        return True

    def _checked(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < self.num_slices:
            raise AnnotationError(
                f"slice {index} is out of range; axis {self.axis} has slices "
                f"0..{self.num_slices - 1}"
            )
        return index

    # -- review -----------------------------------------------------------------------------

    def review_queue(self) -> list[int]:
        """Unannotated slices, most uncertain first (empty before the first run)."""
        if self.prediction is None:
            return []
        annotated = set(self.annotated_slices)
        return [i for i in self.prediction.review_order() if i not in annotated]

    def accept(self, index: int) -> None:
        """Copy the pseudo-labels of slice ``index`` into the user's labels and count the
        slice as annotated (annotated-but-empty when the prediction there is empty)."""
        index = self._checked(index)
        if self.prediction is None:
            raise AnnotationError("there are no pseudo-labels yet: train first")
        if index in self.annotated_slices:
            raise AnnotationError(f"slice {index} is annotated already")
        key = slice_index(self.axis, index)
        plane = self.prediction.labels[key]
        self._accepted_before[index] = plane.copy()
        self.labels[key] = plane
        if not np.any(plane):
            self.marked_empty.add(index)

    # -- training -----------------------------------------------------------------------------

    def volume_input(self) -> VolumeInput:
        """This volume as a job input (a copy of the labels; probes = slices accepted since
        the last run)."""
        annotated = self.annotated_slices
        return VolumeInput(
            labels=np.array(self.labels, dtype=np.int16),
            annotated_slices=annotated,
            axis=self.axis,
            image=self.image.data,
            affine=self.image.affine,
            name=self.image.name,
            probe_slices=[i for i in self._accepted_before if i in annotated],
        )

    def job(
        self,
        config: TrainConfig,
        model_dir: Path,
        threads: int | None = None,
        others: Sequence[AnnotationSession] = (),
    ) -> TrainingJob:
        """A job training on this session and ``others`` (the project's other volumes,
        labelled or not), warm-started from the last model when it has the same classes;
        slices accepted since then are probed for :class:`Agreement`."""
        names = [self.image.name, *(other.image.name for other in others)]
        if len(set(names)) != len(names):
            raise InputError(f"two volumes of the project share a name: {', '.join(names)}")
        volumes = [self.volume_input(), *(other.volume_input() for other in others)]
        init = self.model_dir if self._can_warm_start(config) else None
        return TrainingJob(volumes, list(self.class_names), config, model_dir, init, threads)

    def embedding_job(self, config: TrainConfig, model_dir: Path) -> TrainingJob:
        """A job embedding every slice of this volume for the foundation model of ``config``
        (while the user labels: no annotated slice is needed; ``model_dir`` is left alone)."""
        volume = self.volume_input()
        volume.probe_slices, volume.predict = [], False
        return TrainingJob([volume], list(self.class_names), config, model_dir, task="embed")

    def _can_warm_start(self, config: TrainConfig) -> bool:
        if self.model_dir is None or not (self.model_dir / "model.json").is_file():
            return False
        from napari_ssseg.model_store import load_model
        from napari_ssseg.tasks.train import warm_start_problem

        try:
            model = load_model(self.model_dir)
        except InputError:
            return False
        return warm_start_problem(model, config, self.class_names) is None

    def apply(self, result: RunResult) -> None:
        """Take this volume's prediction from a finished run, and its model; compute the
        agreement on probes. A run that did not predict this volume changes nothing."""
        mine = [v for v in result.volumes if v.name == self.image.name]
        if not mine:
            return
        volume = mine[0]
        self.prediction = volume.prediction
        self.model_dir = result.model_dir
        self.agreement = None
        if volume.probe_labels is not None and volume.probe_slices:
            reference = np.stack(
                [self.labels[slice_index(self.axis, i)] for i in volume.probe_slices]
            )
            before = np.stack([self._accepted_before[i] for i in volume.probe_slices])
            self.agreement = Agreement(
                list(volume.probe_slices),
                self._dice(before, reference),
                self._dice(volume.probe_labels, reference),
            )
        self._accepted_before.clear()

    def _dice(self, pred: np.ndarray, ref: np.ndarray) -> float:
        """Mean Dice over classes of (P, H, W) label stacks (NaN if no class is present)."""
        return mean_dice(dice_per_class(pred, ref, len(self.class_names), axis=0))

    # -- results and autosave ---------------------------------------------------------------

    def final_prediction(self) -> Prediction:
        """The outputs to export: the user's labels on annotated slices, pseudo-labels
        elsewhere; uncertainty 0 on annotated slices."""
        if self.prediction is None:
            raise AnnotationError("there is nothing to export yet: train first")
        labels = self.prediction.labels.copy()
        uncertainty = self.prediction.uncertainty.copy()
        annotated = self.annotated_slices
        for i in annotated:
            key = slice_index(self.axis, i)
            labels[key] = self.labels[key]
            uncertainty[key] = 0.0
        return Prediction(labels, uncertainty, self.prediction.slice_scores, annotated, self.axis)

    def save(self, folder: Path) -> Path:
        """Autosave into ``folder`` (see :mod:`napari_ssseg.project_store`)."""
        return save_project(folder, self.annotation(), self.class_names, self.model_dir)

    def restore(self, folder: Path) -> SavedProject:
        """Load the autosave in ``folder`` into this session (labels are written in place)."""
        saved = load_project(folder, self.image)
        self.labels[...] = saved.annotation.labels
        self.axis = saved.annotation.axis
        self.marked_empty = set(saved.annotation.marked_empty)
        self.class_names = list(saved.class_names)
        if saved.model_dir is not None and saved.model_dir.is_dir():
            self.model_dir = saved.model_dir
        return saved
