"""Write a prediction as files: segmentation, uncertainty map and slice table, all at once."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

from napari_ssseg.errors import InputError
from napari_ssseg.inference.predict import Prediction
from napari_ssseg.io.nifti import write_image, write_labels
from napari_ssseg.io.volume import Volume


def prediction_paths(out_dir: Path, name: str) -> dict[str, Path]:
    return {
        "segmentation": out_dir / f"{name}_seg.nii.gz",
        "uncertainty": out_dir / f"{name}_uncertainty.nii.gz",
        "slices": out_dir / f"{name}_slices.csv",
    }


def write_slice_table(path: Path, prediction: Prediction) -> None:
    """CSV: slice index, uncertainty score, annotated (1/0), review rank (blank if annotated)."""
    ranks = {index: rank for rank, index in enumerate(prediction.review_order(), start=1)}
    annotated = set(prediction.annotated)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slice", "uncertainty", "annotated", "review_rank"])
        for index, score in enumerate(prediction.slice_scores):
            writer.writerow(
                [index, f"{float(score):.6f}", int(index in annotated), ranks.get(index, "")]
            )


def write_prediction(prediction: Prediction, like: Volume, out_dir: str | Path) -> dict[str, Path]:
    """Write the three outputs into ``out_dir`` (created if needed) on ``like``'s grid.

    Files are first written into a staging folder inside ``out_dir`` and moved into place
    only when all three exist, so a failure leaves no partial set behind.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".ssseg-", dir=out_dir))
    except OSError as error:
        raise InputError(f"{out_dir}: cannot write there ({error.strerror})") from error
    final = prediction_paths(out_dir, like.name)
    staged = prediction_paths(staging, like.name)
    try:
        write_labels(staged["segmentation"], prediction.labels, like)
        write_image(staged["uncertainty"], prediction.uncertainty, like)
        write_slice_table(staged["slices"], prediction)
        for key, path in staged.items():
            os.replace(path, final[key])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
