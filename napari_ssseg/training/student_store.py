"""Pretrained students on disk, so that one made while the user labels reaches the run.

The dock's preparation job (:mod:`napari_ssseg.runner.worker`, task ``embed``) embeds the
volume's slices and, for settings with ``pretrain_steps``, distils a student
(:func:`~napari_ssseg.training.pretraining.pretrain_student`) and stores it here; a fresh run
of the same volumes and settings (:func:`napari_ssseg.tasks.train.train_model`) finds it and
starts from it instead of pretraining inside its own time.

A student is keyed by what it depends on: the voxels and slice axis of every volume, the
class count, and the settings that shape the network or its distillation (not the labels:
pretraining does not read them). It lives in a ``students`` folder beside the embeddings
(``embedding_cache``), as a safetensors file written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from napari_ssseg.annotation import Project
from napari_ssseg.data.slice_store import StreamedProject
from napari_ssseg.io.tensor_file import save_tensors_atomically
from napari_ssseg.settings import TrainConfig
from napari_ssseg.training.pretraining import PretrainedStudent, pretrain_student

FORMAT = "ssseg-student-1"
FOLDER = "students"
SUFFIX = ".safetensors"


class StudentStore:
    """A folder of pretrained students (``<embedding cache>/students`` for a config)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def of(cls, config: TrainConfig) -> StudentStore:
        """The store beside ``config``'s embedding cache."""
        from napari_ssseg.foundation.loading import embedding_cache

        return cls(embedding_cache(config.foundation).root / FOLDER)

    @staticmethod
    def key(project: Project, config: TrainConfig) -> str:
        """What a student of ``project`` (its images, axes, class count) and ``config`` is
        stored under."""
        from napari_ssseg.model_store import volume_key

        recipe = {
            "format": FORMAT,
            "volumes": [[volume_key(v.image), v.axis] for v in project.volumes],
            "classes": project.num_classes,
            "settings": StudentStore.shaping(config),
        }
        text = json.dumps(recipe, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    @staticmethod
    def shaping(config: TrainConfig) -> dict[str, Any]:
        """The settings of ``config`` a pretrained student depends on."""
        features = config.features
        return {
            "seed": config.seed,
            "student": dataclasses.asdict(config.student),
            "batch_size": config.batch.size,
            "pretrain_steps": features.pretrain_steps,
            "bank": [features.slices, features.components],
            "foundation": [config.foundation.model, config.foundation.checkpoint],
        }

    def _path(self, key: str) -> Path:
        return self.root / f"{key}{SUFFIX}"

    def save(self, key: str, student: PretrainedStudent) -> Path:
        """Store ``student`` under ``key`` atomically (a reader sees the whole file or none)."""
        self.root.mkdir(parents=True, exist_ok=True)
        metadata = {
            "format": FORMAT,
            "steps": str(student.steps),
            "num_classes": str(student.num_classes),
        }
        return save_tensors_atomically(student.state_dict, self._path(key), metadata)

    def load(self, key: str) -> PretrainedStudent | None:
        """The student stored under ``key``, or None (missing, unreadable or of another
        format: the run then pretrains itself)."""
        path = self._path(key)
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT:
                return None
            state = load_file(path)
            return PretrainedStudent(state, int(metadata["steps"]), int(metadata["num_classes"]))
        except (FileNotFoundError, SafetensorError, KeyError, ValueError, OSError):
            return None


def stored_student(project: Project, config: TrainConfig) -> PretrainedStudent | None:
    """The student pretrained ahead for a fresh run of ``config`` on ``project``, if one was
    stored whole (all ``features.pretrain_steps``); None otherwise, and always for a project
    streamed from disk (its volumes are not hashed again: such a run pretrains itself)."""
    if config.features.pretrain_steps <= 0 or isinstance(project, StreamedProject):
        return None
    return _complete(StudentStore.of(config).load(StudentStore.key(project, config)), config)


def _complete(student: PretrainedStudent | None, config: TrainConfig) -> PretrainedStudent | None:
    """``student`` when it made all of ``features.pretrain_steps``, else None."""
    if student is None or student.steps < config.features.pretrain_steps:
        return None
    return student


def prepare_student(
    project: Project,
    config: TrainConfig,
    keep_going: Callable[[], bool] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> PretrainedStudent:
    """Pretrain a student for ``project`` (:func:`pretrain_student`, same arguments) and,
    when it made all its steps, store it for the run (:func:`stored_student`); a stored one
    is returned at once."""
    store, key = StudentStore.of(config), StudentStore.key(project, config)  # hashed once
    found = _complete(store.load(key), config)
    if found is not None:
        return found
    student = pretrain_student(project, config, keep_going, on_step)
    if _complete(student, config) is not None:
        store.save(key, student)
    return student
