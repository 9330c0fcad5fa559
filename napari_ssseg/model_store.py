"""A trained model on disk: weights in safetensors, settings in JSON.

Layout of a model folder::

    model.safetensors      U-Net weights
    model.json             format version, training settings (by section), classes, run summary
    annotations.safetensors  the annotated slices of each training volume, keyed by the
                           volume's content hash, so predicting a training volume keeps the
                           user's labels exactly there

Folders are written atomically: a new model replaces the old one only once complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from napari_ssseg.annotation import AnnotatedVolume, slice_index
from napari_ssseg.errors import InputError
from napari_ssseg.io.volume import Volume
from napari_ssseg.networks.unet import unet_for
from napari_ssseg.settings import TrainConfig

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
"""Version 1 holds the settings flat (read through :mod:`napari_ssseg.settings.legacy`)."""
WEIGHTS_FILE = "model.safetensors"
SETTINGS_FILE = "model.json"
ANNOTATIONS_FILE = "annotations.safetensors"


def volume_key(volume: Volume) -> str:
    """Content hash of a volume's voxels and shape (16 hex digits)."""
    digest = hashlib.sha256(np.ascontiguousarray(volume.data, dtype=np.float32))
    digest.update(str(volume.shape).encode())
    return digest.hexdigest()[:16]


@dataclass
class KnownAnnotation:
    """The annotated slices of one training volume: indices and their labels (N, H, W)."""

    axis: int
    slices: list[int]
    labels: np.ndarray


@dataclass
class TrainedModel:
    """Weights plus everything inference needs to use them."""

    state_dict: dict[str, torch.Tensor]
    config: TrainConfig
    class_names: list[str]
    summary: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, KnownAnnotation] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def network(self) -> torch.nn.Module:
        """A U-Net with these weights, in eval mode on the CPU."""
        net = unet_for(self.config.student, self.num_classes)
        net.load_state_dict(self.state_dict)
        return net.eval()

    def remember(self, volume: AnnotatedVolume) -> None:
        """Record a training volume's annotated slices."""
        slices = volume.annotated_slices
        if not slices:
            return
        labels = np.stack([volume.labels[slice_index(volume.axis, i)] for i in slices])
        self.annotations[volume_key(volume.image)] = KnownAnnotation(volume.axis, slices, labels)

    def annotation_for(self, image: Volume) -> AnnotatedVolume | None:
        """The stored annotation of ``image`` if it was a training volume, else None."""
        known = self.annotations.get(volume_key(image))
        if known is None:
            return None
        labels = np.zeros(image.shape, np.int16)
        for i, plane in zip(known.slices, known.labels, strict=True):
            labels[slice_index(known.axis, i)] = plane
        return AnnotatedVolume.from_labels(image, labels, known.axis, known.slices)


STAGING_TAG = "staging-"
OLD_TAG = "old-"


def _leftovers(folder: Path, tag: str) -> list[Path]:
    """Hidden siblings ``.<name>.<tag>*`` a save of ``folder`` makes on its way."""
    return sorted(folder.parent.glob(f".{folder.name}.{tag}*"))


def save_model(model: TrainedModel, folder: str | Path) -> Path:
    """Write ``model`` to ``folder`` atomically (the previous model stays until done).

    The new model is written into a hidden staging folder beside ``folder``, then the old
    folder is renamed aside and the staging folder renamed into place. A failure at any
    point puts the old folder back; a process killed between the two renames leaves the
    old folder under ``.<name>.old-*``, which :func:`recover_model_dir` restores. Raises
    :class:`InputError` naming the folder when it cannot be written (disk full, read-only).
    """
    folder = Path(folder)
    parent = folder.parent
    if not parent.is_dir():
        raise InputError(f"{parent}: the folder for the model does not exist")
    if folder.exists() and not _replaceable(folder):
        # Saving replaces the whole folder: never do that to a folder of the user's files.
        raise InputError(
            f"{folder}: exists and is not a model folder; saving the model would replace it"
        )
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{STAGING_TAG}", dir=parent))
    except OSError as error:
        raise InputError(f"{parent}: cannot write the model there ({error.strerror})") from error
    old = None
    try:
        _write_model_files(model, staging)
        staging.chmod(0o755)  # mkdtemp makes it private; a model folder is an ordinary folder
        if folder.exists():
            old = parent / f".{folder.name}.{OLD_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(folder, old)
        os.replace(staging, folder)
    except BaseException as error:
        if old is not None and old.exists() and not folder.exists():
            os.replace(old, folder)  # the swap failed half-way: the old model goes back
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):
            raise InputError(
                f"{folder}: could not save the model ({error.strerror or error}); "
                "the previous model is unchanged"
            ) from error
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _replaceable(folder: Path) -> bool:
    """Whether ``folder`` may be replaced by a model: an earlier model or an empty folder."""
    if not folder.is_dir():
        return False
    return (folder / SETTINGS_FILE).is_file() or not any(folder.iterdir())


def _write_model_files(model: TrainedModel, staging: Path) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict.items()}, staging / WEIGHTS_FILE)
    tensors: dict[str, torch.Tensor] = {}
    index: dict[str, dict[str, int]] = {}
    for key, known in model.annotations.items():
        tensors[f"{key}.slices"] = torch.tensor(known.slices, dtype=torch.int64)
        # Contiguous: labels from a napari layer may be a transposed (Fortran-order) view.
        labels = np.ascontiguousarray(known.labels, dtype=np.int16)
        tensors[f"{key}.labels"] = torch.from_numpy(labels)
        index[key] = {"axis": known.axis}
    if tensors:
        save_file(tensors, staging / ANNOTATIONS_FILE)
    settings = {
        "format_version": FORMAT_VERSION,
        "architecture": "monai.UNet-2d",
        "config": model.config.to_dict(),
        "class_names": model.class_names,
        "summary": model.summary,
        "annotations": index,
    }
    (staging / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))


def recover_model_dir(folder: str | Path) -> bool:
    """Repair what a save killed mid-way (SIGKILL, power loss) left beside ``folder``.

    When ``folder`` is missing but a complete old model waits under ``.<name>.old-*``, it is
    renamed back; then every staging and old leftover is deleted. Call it only while no save
    into ``folder`` is running (the runner does after its child died). Returns whether an
    old model was put back.
    """
    folder = Path(folder)
    restored = False
    if not folder.exists():
        complete = [
            old
            for old in _leftovers(folder, OLD_TAG)
            if (old / SETTINGS_FILE).is_file() and (old / WEIGHTS_FILE).is_file()
        ]
        if complete:
            newest = max(complete, key=lambda path: path.stat().st_mtime)
            try:
                os.replace(newest, folder)
                restored = True
            except OSError:
                return False  # leave everything as found rather than lose the old model
    for leftover in _leftovers(folder, STAGING_TAG) + _leftovers(folder, OLD_TAG):
        shutil.rmtree(leftover, ignore_errors=True)
    return restored


def load_model(folder: str | Path) -> TrainedModel:
    """Read a model folder written by :func:`save_model` (no pickle involved)."""
    folder = Path(folder)
    if folder.is_file():
        raise InputError(
            f"{folder}: is a file, not a napari-ssseg model folder (a folder holding "
            f"{SETTINGS_FILE} and {WEIGHTS_FILE}); pickled .pt/.pth checkpoints are never loaded"
        )
    settings_path, weights_path = folder / SETTINGS_FILE, folder / WEIGHTS_FILE
    if not settings_path.is_file() or not weights_path.is_file():
        raise InputError(
            f"{folder}: not a napari-ssseg model folder (needs {SETTINGS_FILE} and {WEIGHTS_FILE})"
        )
    try:
        settings = json.loads(settings_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{settings_path}: not valid JSON ({error})") from error
    if settings.get("format_version") not in READABLE_VERSIONS:
        raise InputError(
            f"{settings_path}: model format {settings.get('format_version')!r} is not supported "
            f"(expected one of {', '.join(map(str, READABLE_VERSIONS))})"
        )
    config = TrainConfig.from_dict(settings["config"])
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError) as error:
        raise InputError(f"{weights_path}: unreadable weights ({error})") from error
    model = TrainedModel(state, config, list(settings["class_names"]), settings.get("summary", {}))
    try:
        model.network()  # strict load: any missing, extra or reshaped weight is refused
    except RuntimeError as error:
        raise InputError(
            f"{weights_path}: weights do not fit the architecture in {SETTINGS_FILE}"
        ) from error
    index = settings.get("annotations", {})
    if index:
        try:
            tensors = load_file(folder / ANNOTATIONS_FILE)
        except (SafetensorError, OSError) as error:
            raise InputError(
                f"{folder / ANNOTATIONS_FILE}: unreadable annotations ({error})"
            ) from error
        for key, meta in index.items():
            model.annotations[key] = KnownAnnotation(
                int(meta["axis"]),
                tensors[f"{key}.slices"].tolist(),
                tensors[f"{key}.labels"].numpy(),
            )
    return model
