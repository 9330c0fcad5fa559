"""npe2 reader for a folder of volumes opened as one project (no Qt needed).

Two layouts are read:

- an MSD / nnU-Net dataset folder (``dataset.json``, ``imagesTr/``, optional ``labelsTr/``);
- a plain folder of ``.nii``/``.nii.gz`` files, where ``NAME_seg``, ``NAME_label(s)`` or
  ``NAME_mask`` (``_`` or ``-``) holds the labels of image ``NAME``.

Every image becomes an image layer and gets a labels layer named ``"<image> labels"`` on its
grid: its label file when there is one, else an empty one to paint on. That name is how the
dock widget pairs a volume with its labels; volumes without any label are the project's
unlabelled pool. Image layers carry ``metadata["ssseg_project"]`` (the folder), which puts them
in the widget's project.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_ssseg.errors import InputError
from napari_ssseg.io.msd import read_msd
from napari_ssseg.io.nifti import nifti_suffix, read_labels, read_volume
from napari_ssseg.napari_io import LayerTuple, volume_layer_data, volume_layer_kwargs

PROJECT_KEY = "ssseg_project"
_LABELS_STEM = re.compile(r"^(?P<image>.+)[_-](seg|segmentation|label|labels|mask)$", re.I)


def labels_layer_name(image_name: str) -> str:
    """The name of the labels layer paired with image layer ``image_name``."""
    return f"{image_name} labels"


def _pairs_in_plain_folder(folder: Path) -> list[tuple[Path, Path | None]]:
    """(image, labels or None) for the NIfTI files of ``folder``, sorted by image name."""
    files: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        suffix = nifti_suffix(entry.name)
        if suffix is not None and entry.is_file() and not entry.name.startswith("."):
            files[entry.name[: -len(suffix)]] = entry
    labels: dict[str, Path] = {}
    for stem, path in files.items():
        match = _LABELS_STEM.match(stem)
        if match is not None and match.group("image") in files:
            labels[match.group("image")] = path
    label_files = set(labels.values())
    return [(path, labels.get(stem)) for stem, path in files.items() if path not in label_files]


def _pairs(folder: Path) -> tuple[list[tuple[Path, Path | None]], dict[int, str]]:
    """The folder's (image, labels) pairs and class names by label id (may be empty)."""
    if (folder / "imagesTr").is_dir():
        dataset = read_msd(folder)
        names = {k: v for k, v in dataset.labels.items() if k != 0}
        return [(case.image, case.label) for case in dataset.split()], names
    return _pairs_in_plain_folder(folder), {}


def is_volume_folder(path: Any) -> bool:
    """Whether ``path`` is a folder this reader can open (MSD layout or NIfTI files in it)."""
    if not isinstance(path, (str, Path)) or not Path(path).is_dir():
        return False
    folder = Path(path)
    if (folder / "imagesTr").is_dir():
        return True
    return any(nifti_suffix(entry.name) is not None for entry in folder.iterdir())


def read_folder_layers(path: str | Path) -> list[LayerTuple]:
    """Image and labels layers (Z, Y, X) for every volume of the folder ``path``."""
    folder = Path(path)
    pairs, class_names = _pairs(folder)
    if not pairs:
        raise InputError(f"{folder} holds no .nii or .nii.gz image")
    layers: list[LayerTuple] = []
    for image_path, labels_path in pairs:
        volume = read_volume(image_path)
        image_kwargs = volume_layer_kwargs(volume)
        image_kwargs["metadata"][PROJECT_KEY] = str(folder)
        layers.append((volume_layer_data(volume), image_kwargs, "image"))
        labels_kwargs = volume_layer_kwargs(volume, name=labels_layer_name(volume.name))
        if labels_path is not None:
            values = read_labels(labels_path, like=volume)
            labels_kwargs["metadata"]["ssseg_path"] = str(labels_path)
        else:
            values = np.zeros(volume.shape, np.uint8)
            labels_kwargs["metadata"]["ssseg_path"] = None
        if class_names:
            labels_kwargs["metadata"]["ssseg_class_names"] = dict(class_names)
        data = np.transpose(values, (2, 1, 0))
        small = data.size == 0 or (data.min() >= 0 and data.max() <= 255)
        layers.append(
            (
                np.ascontiguousarray(data.astype(np.uint8 if small else np.int32)),
                labels_kwargs,
                "labels",
            )
        )
    return layers


def get_folder_reader(path: str | list[str]) -> Callable[[Any], list[LayerTuple]] | None:
    """npe2 reader hook: a reader for one folder of volumes, else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not is_volume_folder(path):
        return None

    def reader(p: Any) -> list[LayerTuple]:
        return read_folder_layers(p[0] if isinstance(p, (list, tuple)) else p)

    return reader
