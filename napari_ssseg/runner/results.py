"""What a finished run leaves for the parent: the model folder and one prediction per volume.

Layout of a results folder (written by the child, read by the parent)::

    result.json           model folder, run summary, per volume: name, axis, annotated, probes,
                          the foundation-model refinement's one-line report (or null)
    labels_<i>.npy        (X, Y, Z) int16 pseudo-labels (user labels on annotated slices)
    uncertainty_<i>.npy   (X, Y, Z) float32 normalised entropy in [0, 1]
    scores_<i>.npy        (N,) float per slice along the axis
    probes_<i>.npy        (P, H, W) int16 raw network labels on the probe slices (if any)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_ssseg.errors import InputError
from napari_ssseg.inference.predict import Prediction

RESULT_FILE = "result.json"


@dataclass
class VolumeResult:
    """The prediction of one volume and the raw network labels on its probe slices.

    Attributes:
        name: the volume's name.
        prediction: labels, uncertainty and slice scores on the source grid.
        probe_slices: the probe slice indices along ``prediction.axis``.
        probe_labels: (P, H, W) int16 network labels there, before the user's labels were
            put back; P = len(probe_slices).
        refinement: what the foundation-model refinement measured and chose, one line
            (:meth:`~napari_ssseg.inference.sam_refine.Refinement.summary`); None when off.
    """

    name: str
    prediction: Prediction
    probe_slices: list[int] = field(default_factory=list)
    probe_labels: np.ndarray | None = None
    refinement: str | None = None

    def __post_init__(self) -> None:
        if self.refinement is None and self.prediction.refinement is not None:
            self.refinement = self.prediction.refinement.summary()


@dataclass
class RunResult:
    """A finished run: where its model is, how training went, and the predictions."""

    model_dir: Path
    summary: dict[str, Any]
    volumes: list[VolumeResult]


def write_results(result: RunResult, folder: str | Path) -> Path:
    """Write ``result`` into ``folder`` atomically (staging folder, then one rename)."""
    folder = Path(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        entries = []
        for i, volume in enumerate(result.volumes):
            prediction = volume.prediction
            np.save(staging / f"labels_{i}.npy", prediction.labels.astype(np.int16))
            np.save(staging / f"uncertainty_{i}.npy", prediction.uncertainty.astype(np.float32))
            np.save(staging / f"scores_{i}.npy", np.asarray(prediction.slice_scores, np.float64))
            if volume.probe_labels is not None:
                np.save(staging / f"probes_{i}.npy", volume.probe_labels.astype(np.int16))
            entries.append(
                {
                    "name": volume.name,
                    "axis": int(prediction.axis),
                    "annotated": [int(s) for s in prediction.annotated],
                    "probe_slices": [int(s) for s in volume.probe_slices],
                    "has_probes": volume.probe_labels is not None,
                    "refinement": volume.refinement,
                }
            )
        settings = {
            "model_dir": str(result.model_dir),
            "summary": result.summary,
            "volumes": entries,
        }
        (staging / RESULT_FILE).write_text(json.dumps(settings, indent=2))
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def read_results(folder: str | Path) -> RunResult:
    """Read a results folder written by :func:`write_results`."""
    folder = Path(folder)
    path = folder / RESULT_FILE
    if not path.is_file():
        raise InputError(f"{folder}: no {RESULT_FILE}; the run left no results")
    settings = json.loads(path.read_text())
    volumes = []
    for i, entry in enumerate(settings["volumes"]):

        def load(stem: str, index: int = i) -> np.ndarray:
            path = folder / f"{stem}_{index}.npy"
            try:
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError) as error:  # missing, damaged, or holding objects
                raise InputError(f"{path}: unreadable result array ({error})") from error

        prediction = Prediction(
            labels=load("labels"),
            uncertainty=load("uncertainty"),
            slice_scores=load("scores"),
            annotated=list(entry["annotated"]),
            axis=int(entry["axis"]),
        )
        volumes.append(
            VolumeResult(
                name=entry["name"],
                prediction=prediction,
                probe_slices=list(entry["probe_slices"]),
                probe_labels=load("probes") if entry["has_probes"] else None,
                refinement=entry.get("refinement"),
            )
        )
    return RunResult(Path(settings["model_dir"]), dict(settings["summary"]), volumes)
