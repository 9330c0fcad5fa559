"""Autosave of an annotation session: labels, annotated slices, classes and the last model.

Layout of a project folder (default ``<image name>.ssseg/`` beside the image)::

    project.json          the commit point: format, image hash, slice axis, class names,
                          annotated-but-empty slices, the labels file of this save, the model
    labels-<id>.nii.gz    the user's labels on the image grid (uint8 or int16)
    model/                the last trained model (written there by the runner), if any

A save writes a new labels file, then replaces ``project.json`` in one ``os.replace``; until
that rename the previous save stays complete and is what a restore reads. Labels files no
longer named by ``project.json`` are deleted afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_ssseg.annotation import AnnotatedVolume
from napari_ssseg.errors import InputError
from napari_ssseg.io.nifti import read_labels, write_labels
from napari_ssseg.io.volume import Volume
from napari_ssseg.model_store import volume_key
from napari_ssseg.sample_data import SAMPLES

FORMAT_VERSION = 1
PROJECT_FILE = "project.json"
MODEL_DIR = "model"
PROJECT_SUFFIX = ".ssseg"


@dataclass
class SavedProject:
    """An autosave read back for one image.

    Attributes:
        annotation: the image with the saved labels, slice axis and annotated-but-empty marks.
        class_names: names of classes 1..C.
        model_dir: the last trained model folder, or None.
        saved_at: local time of the save, ``YYYY-mm-dd HH:MM:SS``.
    """

    annotation: AnnotatedVolume
    class_names: list[str]
    model_dir: Path | None
    saved_at: str


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "napari-ssseg" / "projects"


def default_project_dir(image: Volume) -> Path:
    """``<image name>.ssseg`` beside the image file; for an image without a file, a sample
    shipped with the package or a read-only folder, a folder in the user's cache instead."""
    path = image.path
    samples = {case.image.parent.resolve() for case in SAMPLES.values()}
    if path is not None:
        folder = Path(path).resolve().parent
        if folder not in samples and os.access(folder, os.W_OK | os.X_OK):
            return folder / f"{image.name}{PROJECT_SUFFIX}"
    return _cache_root() / f"{image.name}-{volume_key(image)}{PROJECT_SUFFIX}"


def has_autosave(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved project."""
    return (Path(folder) / PROJECT_FILE).is_file()


def autosave_time(folder: str | Path) -> str | None:
    """When the save in ``folder`` was made (``YYYY-mm-dd HH:MM:SS``), or None if there is
    no readable save."""
    try:
        return str(json.loads((Path(folder) / PROJECT_FILE).read_text())["saved_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _model_entry(folder: Path, model_dir: Path | None) -> str | None:
    if model_dir is None:
        return None
    model_dir = Path(model_dir).resolve()
    if model_dir.parent == folder.resolve():
        return model_dir.name
    return str(model_dir)


def save_project(
    folder: str | Path,
    annotation: AnnotatedVolume,
    class_names: list[str],
    model_dir: str | Path | None = None,
) -> Path:
    """Save the session into ``folder`` (created); the previous save survives any failure.

    Raises :class:`InputError` naming the folder when it cannot be written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            f"{folder}: cannot create the project folder ({error.strerror})"
        ) from error
    labels_name = f"labels-{uuid.uuid4().hex[:12]}.nii.gz"
    settings = {
        "format_version": FORMAT_VERSION,
        "image_key": volume_key(annotation.image),
        "image_name": annotation.image.name,
        "image_path": str(annotation.image.path) if annotation.image.path else None,
        "shape": list(annotation.image.shape),
        "axis": annotation.axis,
        "class_names": list(class_names),
        "marked_empty": sorted(annotation.marked_empty),
        "annotated_slices": annotation.annotated_slices,
        "labels": labels_name,
        "model": _model_entry(folder, Path(model_dir) if model_dir is not None else None),
        "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    staged = folder / f".{PROJECT_FILE}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        write_labels(folder / labels_name, annotation.labels, annotation.image)
        staged.write_text(json.dumps(settings, indent=2))
        os.replace(staged, folder / PROJECT_FILE)
    except OSError as error:
        with contextlib.suppress(OSError):
            (folder / labels_name).unlink(missing_ok=True)
        raise InputError(f"{folder}: could not save the project ({error})") from error
    except BaseException:
        with contextlib.suppress(OSError):
            (folder / labels_name).unlink(missing_ok=True)
        raise
    finally:
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)
    for old in folder.glob("labels-*.nii.gz"):
        if old.name != labels_name:
            with contextlib.suppress(OSError):
                old.unlink()
    return folder


def load_project(folder: str | Path, image: Volume) -> SavedProject:
    """Restore the save in ``folder`` onto ``image``.

    Raises :class:`InputError` when there is no save, it is unreadable, or it was made for
    another image (content hash or grid differ).
    """
    folder = Path(folder)
    path = folder / PROJECT_FILE
    if not path.is_file():
        raise InputError(f"{folder}: no saved project ({PROJECT_FILE} is missing)")
    try:
        settings = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: unreadable project file ({error})") from error
    if settings.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{path}: project format {settings.get('format_version')!r} is not supported "
            f"(expected {FORMAT_VERSION})"
        )
    if tuple(settings["shape"]) != image.shape or settings["image_key"] != volume_key(image):
        raise InputError(
            f"{folder}: this project was saved for another image ({settings['image_name']}, "
            f"grid {tuple(settings['shape'])}); {image.name} has grid {image.shape} and "
            "different voxels"
        )
    labels = read_labels(folder / settings["labels"], like=image)
    annotation = AnnotatedVolume(
        image, labels.astype(np.int16), int(settings["axis"]), set(settings["marked_empty"])
    )
    model = settings.get("model")
    model_dir = None
    if model:
        model_dir = Path(model) if Path(model).is_absolute() else folder / model
    return SavedProject(annotation, list(settings["class_names"]), model_dir, settings["saved_at"])
