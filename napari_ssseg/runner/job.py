"""A training job: everything a background run needs, written to a folder for the child process.

Arrays travel as ``.npy`` files next to a ``job.json`` instead of being pickled through a
queue, so a large volume costs one disk write and one read, and the child never unpickles
anything (``np.load(..., allow_pickle=False)``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.errors import InputError
from napari_ssseg.io.nifti import read_volume
from napari_ssseg.io.volume import Volume
from napari_ssseg.settings import TrainConfig

JOB_FILE = "job.json"

TASKS = ("train", "embed")
"""What a job does: ``train`` (train, predict, save the model) or ``embed`` (fill the
embedding cache with the foundation model's embeddings of every slice of its volumes, as
the dock does while the user labels; nothing else is written)."""


@dataclass
class VolumeInput:
    """One volume of a job.

    Attributes:
        labels: (X, Y, Z) integer labels; only the annotated slices are used.
        annotated_slices: slice indices along ``axis`` that count as annotated (painted or
            marked annotated-but-empty).
        axis: the slice axis.
        image: (X, Y, Z) voxels, or None to read ``image_path`` in the child.
        affine: (4, 4) voxel-to-world matrix of ``image``.
        image_path: a NIfTI file to read instead of ``image``.
        name: the volume's name in messages and results.
        probe_slices: annotated slices whose raw network prediction is returned as well, to
            measure how far the new model agrees with what the user accepted there.
        predict: whether to predict this volume after training.
    """

    labels: np.ndarray
    annotated_slices: list[int]
    axis: int
    image: np.ndarray | None = None
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    image_path: Path | None = None
    name: str = "volume"
    probe_slices: list[int] = field(default_factory=list)
    predict: bool = True

    def load_image(self) -> Volume:
        """The image as a :class:`Volume` (read from ``image_path`` when no array is given)."""
        if self.image is not None:
            return Volume(
                np.asarray(self.image, np.float32), np.asarray(self.affine), name=self.name
            )
        if self.image_path is None:
            raise InputError(f"{self.name}: the job gives neither an image array nor a path")
        return read_volume(self.image_path)

    def annotation(self) -> AnnotatedVolume:
        """The annotated volume to train on; raises :class:`InputError` on a grid mismatch."""
        image = self.load_image()
        if tuple(self.labels.shape) != image.shape:
            raise InputError(
                f"{self.name}: label grid {tuple(self.labels.shape)} differs from the image "
                f"grid {image.shape}"
            )
        return AnnotatedVolume.from_labels(image, self.labels, self.axis, self.annotated_slices)


@dataclass
class TrainingJob:
    """Train on ``volumes`` and predict them (or, with ``task="embed"``, only embed them).

    Attributes:
        volumes: the volumes to train on (at least one with an annotated slice).
        class_names: names of classes 1..C.
        config: the training settings (JSON values by section are read into them).
        model_dir: where the trained model is saved (atomically, only on success).
        init_model_dir: a model folder to warm-start from, or None.
        threads: torch threads in the child (None: torch's default).
        memory_limit_mb: address space the child may map beyond what it holds once its
            imports are done, in MiB (None: no limit). A job that needs more fails with a
            clear "out of memory" error in the child instead of driving the machine into
            swap or the kernel's OOM killer, which could pick napari itself. Applied on
            the CPU only (Linux ``RLIMIT_AS``): CUDA reserves far more address space than
            it uses.
        task: one of :data:`TASKS`; an ``embed`` job needs no annotated slice and leaves
            ``model_dir`` alone.
    """

    volumes: list[VolumeInput]
    class_names: list[str]
    config: TrainConfig
    model_dir: Path
    init_model_dir: Path | None = None
    threads: int | None = None
    memory_limit_mb: int | None = None
    task: str = "train"

    def __post_init__(self) -> None:
        if isinstance(self.config, dict):
            self.config = TrainConfig.from_dict(self.config)

    def project(self) -> Project:
        """The validated project (reads images given by path)."""
        project = Project([v.annotation() for v in self.volumes], list(self.class_names))
        project.validate()
        return project

    def check(self) -> None:
        """Cheap checks the parent runs before starting a process: settings, classes, slices.

        Raises :class:`~napari_ssseg.errors.SsSegError` subclasses naming the problem.
        """
        if self.task not in TASKS:
            raise InputError(f"unknown job task {self.task!r}; choose one of {', '.join(TASKS)}")
        if not self.volumes:
            raise InputError("the job holds no volume")
        if self.task == "train" and not self.class_names:
            raise InputError("the job names no class: give at least one class name")
        if self.task == "train" and not any(v.annotated_slices for v in self.volumes):
            raise InputError(
                "no annotated slice: label at least one slice (or mark one annotated-but-empty)"
            )
        for volume in self.volumes:
            if volume.labels.ndim != 3:
                raise InputError(f"{volume.name}: labels must be 3-D, not {volume.labels.shape}")
            if volume.image is not None and volume.image.shape != volume.labels.shape:
                raise InputError(
                    f"{volume.name}: label grid {volume.labels.shape} differs from the image "
                    f"grid {volume.image.shape}"
                )
            extra = sorted(set(volume.probe_slices) - set(volume.annotated_slices))
            if extra:
                raise InputError(f"{volume.name}: probe slices {extra} are not annotated")
        if Path(self.model_dir).name in ("", ".", ".."):
            raise InputError(f"{self.model_dir}: a model folder needs a name of its own")
        if self.memory_limit_mb is not None and self.memory_limit_mb < 1:
            raise InputError(f"memory_limit_mb must be at least 1, not {self.memory_limit_mb}")
        if self.init_model_dir is not None and not Path(self.init_model_dir).is_dir():
            raise InputError(f"{self.init_model_dir}: the model to warm-start from does not exist")

    def write(self, folder: str | Path) -> Path:
        """Write ``job.json`` and the arrays into ``folder`` (created); returns the folder.

        Arrays are stored C-ordered: a transposed napari layer would otherwise come back
        Fortran-ordered, and slices of it cannot be saved by safetensors as they are.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        volumes = []
        for i, volume in enumerate(self.volumes):
            entry: dict[str, Any] = {
                "name": volume.name,
                "axis": int(volume.axis),
                "annotated_slices": [int(s) for s in volume.annotated_slices],
                "probe_slices": [int(s) for s in volume.probe_slices],
                "predict": bool(volume.predict),
                "affine": np.asarray(volume.affine, dtype=float).tolist(),
                "labels": f"labels_{i}.npy",
                "image": None,
                "image_path": str(volume.image_path) if volume.image_path else None,
            }
            np.save(folder / entry["labels"], np.ascontiguousarray(volume.labels, dtype=np.int16))
            if volume.image is not None:
                entry["image"] = f"image_{i}.npy"
                np.save(
                    folder / entry["image"], np.ascontiguousarray(volume.image, dtype=np.float32)
                )
            volumes.append(entry)
        settings = {
            "volumes": volumes,
            "class_names": list(self.class_names),
            "config": self.config.to_dict(),
            "model_dir": str(self.model_dir),
            "init_model_dir": str(self.init_model_dir) if self.init_model_dir else None,
            "threads": self.threads,
            "memory_limit_mb": self.memory_limit_mb,
            "task": self.task,
        }
        (folder / JOB_FILE).write_text(json.dumps(settings, indent=2))
        return folder

    @classmethod
    def read(cls, folder: str | Path) -> TrainingJob:
        """Read a job written by :meth:`write` (no pickle involved).

        Array files must be plain names inside ``folder`` (``labels_0.npy``): the child
        reads its arrays from its own job folder and nowhere else. Raises
        :class:`InputError` naming the entry otherwise, or when an array holds objects.
        """
        folder = Path(folder)
        settings = json.loads((folder / JOB_FILE).read_text())
        volumes = []
        for entry in settings["volumes"]:
            image = entry["image"]
            volumes.append(
                VolumeInput(
                    labels=_load_array(folder, entry["labels"]),
                    annotated_slices=list(entry["annotated_slices"]),
                    axis=int(entry["axis"]),
                    image=None if image is None else _load_array(folder, image),
                    affine=np.asarray(entry["affine"], dtype=np.float64),
                    image_path=Path(entry["image_path"]) if entry["image_path"] else None,
                    name=entry["name"],
                    probe_slices=list(entry["probe_slices"]),
                    predict=bool(entry["predict"]),
                )
            )
        init = settings["init_model_dir"]
        return cls(
            volumes=volumes,
            class_names=list(settings["class_names"]),
            config=TrainConfig.from_dict(settings["config"]),
            model_dir=Path(settings["model_dir"]),
            init_model_dir=Path(init) if init else None,
            threads=settings["threads"],
            memory_limit_mb=settings.get("memory_limit_mb"),
            task=settings.get("task", "train"),
        )


_ARRAY_NAME = re.compile(r"^(labels|image)_\d+\.npy$")


def _load_array(folder: Path, name: object) -> np.ndarray:
    """The array ``folder / name``; ``name`` must be one :meth:`TrainingJob.write` makes."""
    if not isinstance(name, str) or not _ARRAY_NAME.match(name):
        raise InputError(
            f"{folder / JOB_FILE}: array entry {name!r} is not a file of the job folder; "
            "refusing to read it"
        )
    try:
        return np.load(folder / name, allow_pickle=False)
    except ValueError as error:  # an object array: it would need unpickling
        raise InputError(f"{folder / name}: not a plain numeric array ({error})") from error
