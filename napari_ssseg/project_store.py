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
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_ssseg.annotation import AnnotatedVolume
from napari_ssseg.errors import InputError
from napari_ssseg.io.nifti import read_labels, write_labels
from napari_ssseg.io.paths import safe_name
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
    shipped with the package or a read-only folder, a folder in the user's cache instead.

    The name is made safe first (:func:`~napari_ssseg.io.paths.safe_name`): a layer named
    ``../../x`` must not move the project out of that folder."""
    path = image.path
    samples = {case.image.parent.resolve() for case in SAMPLES.values()}
    if path is not None:
        folder = Path(path).resolve().parent
        if folder not in samples and os.access(folder, os.W_OK | os.X_OK):
            return folder / f"{safe_name(image.name)}{PROJECT_SUFFIX}"
    return _cache_root() / f"{safe_name(image.name)}-{volume_key(image)}{PROJECT_SUFFIX}"


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
    """The model's folder name when it lies in the project folder, else its absolute path
    (a folder project's volumes share the model of the main project)."""
    if model_dir is None:
        return None
    model_dir = Path(model_dir).resolve()
    if model_dir.parent == folder.resolve():
        return model_dir.name
    return str(model_dir)


_LABELS_NAME = re.compile(r"^labels-[0-9a-f]{12}\.nii\.gz$")


def _plain_name(name: object) -> bool:
    """Whether ``name`` names an entry of a folder, never the folder itself or beyond it."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
    )


def _saved_model(folder: Path, entry: object) -> Path | None:
    """The model folder a project file names: a plain name inside ``folder``, or an absolute
    path (written for a model shared by a folder project; only ever read, to warm-start).

    A relative entry that climbs out (``../x``) is not something a save writes, so it is
    ignored: the labels still restore, the next run trains from scratch.
    """
    if _plain_name(entry):
        return folder / str(entry)
    if isinstance(entry, str) and "\0" not in entry and Path(entry).is_absolute():
        return Path(entry)
    return None


def _inside(folder: Path, name: object, what: str, path: Path) -> Path:
    """``folder / name`` for a plain name; anything that could leave the folder is refused."""
    if not _plain_name(name):
        raise InputError(
            f"{path}: the {what} entry {name!r} is not a name inside the project folder; "
            "refusing to follow it"
        )
    return folder / name


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
    if not isinstance(settings, dict) or settings.get("format_version") != FORMAT_VERSION:
        version = settings.get("format_version") if isinstance(settings, dict) else None
        raise InputError(
            f"{path}: project format {version!r} is not supported (expected {FORMAT_VERSION})"
        )
    try:
        shape, key = tuple(settings["shape"]), settings["image_key"]
        labels_name, axis = settings["labels"], int(settings["axis"])
        marked = {int(i) for i in settings["marked_empty"]}
        class_names = [str(name) for name in settings["class_names"]]
        saved_at = str(settings["saved_at"])
    except (KeyError, TypeError, ValueError) as error:
        message = f"{path}: damaged project file ({type(error).__name__}: {error})"
        raise InputError(message) from error
    if shape != image.shape or key != volume_key(image):
        raise InputError(
            f"{folder}: this project was saved for another image ({settings.get('image_name')}, "
            f"grid {shape}); {image.name} has grid {image.shape} and different voxels"
        )
    labels_path = _inside(folder, labels_name, "labels", path)
    if not _LABELS_NAME.match(labels_name):
        raise InputError(f"{path}: the labels entry {labels_name!r} is not a labels file name")
    labels = read_labels(labels_path, like=image)
    annotation = AnnotatedVolume(image, labels.astype(np.int16), axis, marked)
    return SavedProject(
        annotation, class_names, _saved_model(folder, settings.get("model")), saved_at
    )
