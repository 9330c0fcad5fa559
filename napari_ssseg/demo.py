"""``napari-ssseg demo``: the whole job on the bundled sample, end to end.

Takes one organ of the sample's reference labels, reveals k of its slices as if a
clinician had labelled them, trains, predicts the whole volume, writes the outputs and a
montage, and prints Dice on the slices that were not revealed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from napari_ssseg.annotation import AnnotatedVolume, Project, default_slice_axis
from napari_ssseg.bench.metrics import dice_per_class
from napari_ssseg.bench.protocols import reveal_slices, sparse_slice_indices
from napari_ssseg.errors import SsSegError
from napari_ssseg.io.nifti import read_labels, read_volume, write_labels
from napari_ssseg.model_store import save_model
from napari_ssseg.sample_data import load_sample
from napari_ssseg.settings import TrainConfig
from napari_ssseg.tasks.montage import write_montage
from napari_ssseg.tasks.outputs import write_prediction
from napari_ssseg.tasks.predict import predict
from napari_ssseg.tasks.train import train_model
from napari_ssseg.training.loop import TrainProgress


def organ_id(class_names: dict[int, str], organ: str) -> int:
    """The label id of ``organ`` in the sample's label names."""
    for label, name in class_names.items():
        if name == organ:
            return label
    raise SsSegError(
        f"organ {organ!r} is not in the sample; it has {', '.join(class_names.values())}"
    )


def run_demo(out_dir: Path, sample: str, organ: str, k: int, config: TrainConfig) -> dict:
    """Run the demo; returns a summary (Dice, annotated slices, paths)."""
    case = load_sample(sample)
    image = read_volume(case.image)
    reference = read_labels(case.labels, like=image) == organ_id(case.class_names, organ)
    reference = reference.astype(np.int16)
    axis = default_slice_axis(image.spacing)
    annotated = sparse_slice_indices(reference, axis, k)
    revealed = reveal_slices(reference, annotated, axis)
    volume = AnnotatedVolume.from_labels(image, revealed, axis, annotated)
    project = Project([volume], [organ])
    print(
        f"{image.name}: {organ}, {volume.num_slices} slices along axis {axis}; "
        f"the 'clinician' labelled slices {annotated}",
        flush=True,
    )

    def show(snapshot: TrainProgress) -> None:
        if snapshot.iteration % 50 == 0:
            print(
                f"  step {snapshot.iteration} ({100 * snapshot.fraction:.0f}%) "
                f"{snapshot.elapsed:.0f} s loss {snapshot.losses['total']:.3f}",
                file=sys.stderr,
                flush=True,
            )

    model = train_model(
        project, config, on_progress=show, notify=lambda line: print(line, file=sys.stderr)
    )
    prediction = predict(model, image, volume)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = write_prediction(prediction, image, out_dir)
    paths["model"] = save_model(model, out_dir / "model")
    paths["revealed"] = write_labels(out_dir / f"{image.name}_revealed.nii.gz", revealed, image)
    review = prediction.review_order()[:2]
    shown = sorted(set(annotated[:1] + review + [annotated[len(annotated) // 2] + 1]))
    paths["montage"] = write_montage(
        out_dir / f"{image.name}_montage.png",
        image.data,
        reference,
        prediction.labels,
        prediction.uncertainty,
        shown,
        axis,
    )
    dice = float(dice_per_class(prediction.labels, reference, 1, annotated, axis)[0])
    print(
        f"trained {model.summary['iterations']} steps in {model.summary['seconds']:.0f} s "
        f"({config.method}); Dice on the {volume.num_slices - len(annotated)} unannotated "
        f"slices: {dice:.3f}"
    )
    print(f"most uncertain slices to review: {prediction.review_order()[:5]}")
    for key, path in paths.items():
        print(f"  {key}: {path}")
    return {"dice": dice, "annotated": annotated, "paths": paths}
