"""The predict task: a trained model on one volume, the one way the command line, the
background worker, the Ray workers, the benchmark, the dock and the demo predict.

It picks the annotation to predict with (the user's labels, the model's memory of a
training volume, or none), checks the slices fit, and predicts with the model's prediction
settings (MC-dropout passes, connectivity filter, refinement) unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_ssseg.annotation import AnnotatedVolume
from napari_ssseg.inference.predict import Prediction, annotation_for_prediction, predict_volume
from napari_ssseg.io.volume import Volume
from napari_ssseg.model_store import TrainedModel
from napari_ssseg.tasks.outputs import write_prediction


def predict(
    model: TrainedModel,
    image: Volume,
    annotation: AnnotatedVolume | None = None,
    axis: int | None = None,
    passes: int | None = None,
    device: str | None = None,
    refine: str | None = None,
    on_progress: Callable[[float], None] | None = None,
    foundation: Any = None,
    embedding_cache: Any = None,
) -> Prediction:
    """Predict every slice of ``image``.

    ``annotation``: the user's labels and annotated slices on ``image`` (kept exactly there);
    None: the model's memory of ``image`` if it was a training volume, else none, along
    ``axis`` (default: the training axis, else the largest-spacing one). ``passes``,
    ``device`` and ``refine`` override the model's settings; ``foundation`` and
    ``embedding_cache`` replace its foundation model and cache (loaded only to refine).
    """
    annotation = annotation_for_prediction(model, annotation, axis, image)
    annotation.check_slice_size()
    return predict_volume(
        model,
        annotation,
        passes=passes,
        device=device,
        on_progress=on_progress,
        refine=refine,
        foundation=foundation,
        embedding_cache=embedding_cache,
    )


def predict_to_folder(
    model: TrainedModel, image: Volume, out_dir: str | Path, **options: Any
) -> dict[str, Path]:
    """:func:`predict`, then its outputs written into ``out_dir``
    (:func:`~napari_ssseg.tasks.outputs.write_prediction`); returns their paths."""
    prediction = predict(model, image, **options)
    return write_prediction(prediction, image, Path(out_dir))
