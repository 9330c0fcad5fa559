"""Write a prediction as files: segmentation, uncertainty map and slice table, all at once;
with a foundation-model refinement also ``<name>_refine.json`` (what it measured and chose)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

from napari_ssseg.errors import InputError, SsSegError
from napari_ssseg.inference.predict import Prediction
from napari_ssseg.io.nifti import write_image, write_labels
from napari_ssseg.io.paths import safe_name
from napari_ssseg.io.volume import Volume


def prediction_paths(out_dir: Path, name: str) -> dict[str, Path]:
    """The three output files of volume ``name`` in ``out_dir`` (the name made safe)."""
    stem = safe_name(name)
    return {
        "segmentation": out_dir / f"{stem}_seg.nii.gz",
        "uncertainty": out_dir / f"{stem}_uncertainty.nii.gz",
        "slices": out_dir / f"{stem}_slices.csv",
    }


def refinement_path(out_dir: Path, name: str) -> Path:
    """The refinement report of volume ``name`` in ``out_dir``."""
    return out_dir / f"{safe_name(name)}_refine.json"


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
    """Write the three outputs into ``out_dir`` (created if needed) on ``like``'s grid, and the
    refinement report when the prediction has one (an earlier report of the volume is removed
    when it has none: it would describe other outputs).

    All or nothing: files are written into a staging folder inside ``out_dir``; the files of
    an earlier export are moved aside before the new ones are moved in, and moved back if
    any step fails, so a full disk or a read-only folder leaves the previous set as it was.
    Raises :class:`InputError` naming ``out_dir`` on any write failure.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".ssseg-", dir=out_dir))
    except OSError as error:
        raise InputError(f"{out_dir}: cannot write there ({error.strerror})") from error
    final = prediction_paths(out_dir, like.name)
    staged = prediction_paths(staging, like.name)
    final["refine"] = refinement_path(out_dir, like.name)
    staged["refine"] = refinement_path(staging, like.name)
    aside = {key: staging / f"previous-{path.name}" for key, path in final.items()}
    moved_aside: list[str] = []
    moved_in: list[str] = []
    try:
        write_labels(staged["segmentation"], prediction.labels, like)
        write_image(staged["uncertainty"], prediction.uncertainty, like)
        write_slice_table(staged["slices"], prediction)
        if prediction.refinement is None:
            del staged["refine"]
        else:
            staged["refine"].write_text(json.dumps(prediction.refinement.to_dict(), indent=2))
        for key, path in final.items():
            if path.exists():
                os.replace(path, aside[key])
                moved_aside.append(key)
        for key, path in staged.items():
            os.replace(path, final[key])
            moved_in.append(key)
    except (OSError, SsSegError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        if not _roll_back(final, aside, moved_in, moved_aside):
            raise InputError(
                f"{out_dir}: could not write the prediction ({reason}); the previous files "
                f"could not all be put back and are kept in {staging}"
            ) from error
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(
            f"{out_dir}: could not write the prediction ({reason}); nothing was changed there"
        ) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return {key: final[key] for key in staged}


def _roll_back(
    final: dict[str, Path], aside: dict[str, Path], moved_in: list[str], moved_aside: list[str]
) -> bool:
    """Undo a half-done move: new files out, previous files back; False if one failed."""
    complete = True
    for key in moved_in:
        with contextlib.suppress(OSError):
            final[key].unlink()
    for key in moved_aside:
        try:
            os.replace(aside[key], final[key])
        except OSError:
            complete = False
    return complete
