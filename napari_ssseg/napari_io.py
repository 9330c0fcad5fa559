"""npe2 reader, writer and sample-data contributions (no Qt needed).

Layer convention: napari uses axis 0 as the slider, so a volume stored as (X, Y, Z) is shown as
(Z, Y, X) with ``scale`` = spacing reversed. The layer metadata keeps what is needed to write
results back on the source grid: ``ssseg_affine`` (4x4 list), ``ssseg_path``, ``ssseg_axes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_ssseg.errors import InputError
from napari_ssseg.io.nifti import nifti_suffix, read_labels, read_volume, write_labels
from napari_ssseg.io.volume import Volume
from napari_ssseg.sample_data import load_sample

LayerTuple = tuple[np.ndarray, dict[str, Any], str]
_TO_LAYER = (2, 1, 0)  # (X, Y, Z) <-> (Z, Y, X); the permutation is its own inverse


def volume_layer_data(volume: Volume) -> np.ndarray:
    """The volume's voxels (X, Y, Z) as a napari layer array (Z, Y, X)."""
    return np.ascontiguousarray(np.transpose(volume.data, _TO_LAYER))


def volume_layer_kwargs(volume: Volume, name: str | None = None) -> dict[str, Any]:
    """Layer keyword arguments: ``name``, ``scale`` (Z, Y, X spacing) and ssseg ``metadata``."""
    return {
        "name": name or volume.name,
        "scale": tuple(float(s) for s in reversed(volume.spacing)),
        "metadata": {
            "ssseg_affine": np.asarray(volume.affine, dtype=float).tolist(),
            "ssseg_path": str(volume.path) if volume.path is not None else None,
            "ssseg_axes": "zyx",
        },
    }


def layer_to_volume_array(layer_data: Any) -> np.ndarray:
    """A napari layer array (Z, Y, X) back in volume order (X, Y, Z)."""
    arr = np.asarray(layer_data)
    if arr.ndim != 3:
        raise InputError(f"layer data has shape {arr.shape}; a 3-D (Z, Y, X) array is needed")
    return np.transpose(arr, _TO_LAYER)


def _is_nifti(path: Any) -> bool:
    return isinstance(path, (str, Path)) and nifti_suffix(path) is not None


def _looks_like_labels(volume: Volume) -> bool:
    """Integer on disk, named like a segmentation, with at most 255 distinct whole values."""
    name = volume.path.name.lower() if volume.path is not None else volume.name.lower()
    if "seg" not in name and "label" not in name:
        return False
    if volume.header is None or volume.header.get_data_dtype().kind not in "iu":
        return False
    if np.any(np.rint(volume.data) != volume.data):
        return False
    return np.unique(volume.data).size <= 255


def _label_layer_array(values: np.ndarray) -> np.ndarray:
    values = np.rint(values)
    fits_uint8 = values.size == 0 or (values.min() >= 0 and values.max() <= 255)
    return np.ascontiguousarray(values.astype(np.uint8 if fits_uint8 else np.int32))


def read_nifti_layers(path: str | Path) -> list[LayerTuple]:
    """Read one NIfTI file as a napari image layer, or a labels layer if it looks like labels."""
    volume = read_volume(path)
    kwargs = volume_layer_kwargs(volume)
    if _looks_like_labels(volume):
        data = _label_layer_array(volume_layer_data(volume))
        return [(data, kwargs, "labels")]
    return [(volume_layer_data(volume), kwargs, "image")]


def get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerTuple]] | None:
    """npe2 reader hook: a reader for a single ``.nii``/``.nii.gz`` path, else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not _is_nifti(path):
        return None

    def reader(p: Any) -> list[LayerTuple]:
        if isinstance(p, (list, tuple)):
            p = p[0]
        return read_nifti_layers(p)

    return reader


def _affine_from_meta(meta: dict[str, Any]) -> np.ndarray:
    metadata = meta.get("metadata") or {}
    affine = metadata.get("ssseg_affine")
    if affine is not None:
        try:
            arr = np.asarray(affine, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise InputError(f"layer metadata ssseg_affine is not a 4x4 matrix ({error})") from None
        if arr.shape != (4, 4):
            raise InputError(f"layer metadata ssseg_affine has shape {arr.shape}, not (4, 4)")
        if not np.all(np.isfinite(arr)):
            raise InputError("layer metadata ssseg_affine has NaN or Inf entries")
        linear = arr[:3, :3]
        scale = float(np.max(np.abs(linear)))
        if scale == 0.0 or abs(np.linalg.det(linear / scale)) < 1e-9:
            # Written as is, the file could not be read back (see io.nifti).
            raise InputError("layer metadata ssseg_affine is singular (non-invertible)")
        return arr
    scale = meta.get("scale")
    spacing = [1.0, 1.0, 1.0] if scale is None else [float(s) for s in scale][-3:][::-1]
    return np.diag([*spacing, 1.0])


def write_labels_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: save a labels layer (Z, Y, X) as NIfTI on its source grid."""
    if nifti_suffix(path) is None:
        path = f"{path}.nii.gz"
    labels = layer_to_volume_array(data)
    like = Volume(data=labels, affine=_affine_from_meta(meta), header=None, path=Path(path))
    write_labels(path, labels, like)
    return [str(path)]


def _sample_layers(key: str) -> list[LayerTuple]:
    case = load_sample(key)
    volume = read_volume(case.image)
    labels = read_labels(case.labels, like=volume)
    label_kwargs = volume_layer_kwargs(volume, name=f"{volume.name} reference labels")
    label_kwargs["metadata"]["ssseg_path"] = str(case.labels)
    label_kwargs["metadata"]["ssseg_class_names"] = dict(case.class_names)
    label_data = _label_layer_array(np.transpose(labels, _TO_LAYER))
    return [
        (volume_layer_data(volume), volume_layer_kwargs(volume), "image"),
        (label_data, label_kwargs, "labels"),
    ]


def make_sample_ct() -> list[LayerTuple]:
    """npe2 sample: the abdominal CT and its TotalSegmentator labels, as (Z, Y, X) layers."""
    return _sample_layers("ct")


def make_sample_mr() -> list[LayerTuple]:
    """npe2 sample: the abdominal MR and its TotalSegmentator labels, as (Z, Y, X) layers."""
    return _sample_layers("mr")
