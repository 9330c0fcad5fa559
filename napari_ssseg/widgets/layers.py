"""napari layers <-> engine volumes (no Qt): grids, slice positions, result layers.

Layers show a volume (X, Y, Z) as (Z, Y, X) (see :mod:`napari_ssseg.napari_io`), so the
volume's slice axis ``a`` is layer axis ``2 - a``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_ssseg.errors import InputError
from napari_ssseg.inference.predict import Prediction
from napari_ssseg.io.volume import Volume
from napari_ssseg.napari_io import layer_to_volume_array

PSEUDO_LABELS = "pseudo-labels"
UNCERTAINTY = "uncertainty"


def layer_axis(volume_axis: int) -> int:
    """The layer axis showing the volume's ``volume_axis``."""
    return 2 - int(volume_axis)


def layer_affine(layer: Any) -> np.ndarray:
    """(4, 4) voxel-to-world matrix of the volume behind ``layer``: the reader's recorded
    affine, else one built from the layer's scale and translate."""
    recorded = layer.metadata.get("ssseg_affine")
    if recorded is not None:
        return np.asarray(recorded, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(np.asarray(layer.scale, dtype=float)[::-1])
    affine[:3, 3] = np.asarray(layer.translate, dtype=float)[::-1]
    return affine


def _layer_path(layer: Any) -> Path | None:
    recorded = layer.metadata.get("ssseg_path") or getattr(layer.source, "path", None)
    return Path(recorded) if recorded else None


def volume_from_layer(layer: Any) -> Volume:
    """The image layer's volume (X, Y, Z) float32, with the header of its file if it still
    exists and has the same grid (so exports carry it)."""
    if layer.data.ndim != 3 or getattr(layer, "rgb", False) or getattr(layer, "multiscale", False):
        raise InputError(f"layer {layer.name!r}: a single-channel 3-D image is needed")
    data = np.asarray(layer_to_volume_array(layer.data), dtype=np.float32)
    path = _layer_path(layer)
    header = None
    if path is not None and path.is_file():
        try:
            stored = nib.load(str(path))
            if tuple(stored.shape[:3]) == data.shape:
                header = stored.header.copy()
        except Exception:  # an unreadable file only loses its header, not the session
            header = None
    return Volume(data=data, affine=layer_affine(layer), header=header, path=path, name=layer.name)


def same_grid(image: Any, labels: Any) -> bool:
    """Whether ``labels`` lies on ``image``'s voxel grid (shape, scale and translate)."""
    return (
        labels.data.shape == image.data.shape
        and np.allclose(labels.scale, image.scale)
        and np.allclose(labels.translate, image.translate)
    )


def current_slice(layer: Any, point: Any, volume_axis: int) -> int:
    """The slice index along ``volume_axis`` shown at the viewer's world ``point``."""
    data_point = layer.world_to_data(point)
    index = int(round(float(data_point[layer_axis(volume_axis)])))
    return min(max(index, 0), layer.data.shape[layer_axis(volume_axis)] - 1)


def world_position(layer: Any, volume_axis: int, index: int) -> float:
    """The world coordinate of slice ``index`` along ``volume_axis`` (for ``dims.set_point``)."""
    axis = layer_axis(volume_axis)
    return float(layer.translate[axis] + index * layer.scale[axis])


def to_layer(array: np.ndarray) -> np.ndarray:
    """A volume array (X, Y, Z) as layer data (Z, Y, X), contiguous."""
    return np.ascontiguousarray(np.transpose(array, (2, 1, 0)))


def grid_kwargs(image: Any) -> dict[str, Any]:
    """Keyword arguments putting a new layer on ``image``'s grid."""
    return {
        "scale": tuple(image.scale),
        "translate": tuple(image.translate),
        "metadata": {
            k: image.metadata[k] for k in ("ssseg_affine", "ssseg_axes") if k in image.metadata
        },
    }


def show_result_layers(viewer: Any, image: Any, labels: Any, prediction: Prediction | None) -> None:
    """Show ``prediction`` as the pseudo-labels and uncertainty layers on ``image``'s grid,
    just below the user's ``labels`` layer (which stays active); with no prediction, or
    layers left from another volume's grid, the old result layers go."""
    layers = viewer.layers
    for name in (PSEUDO_LABELS, UNCERTAINTY):
        if name in layers and (prediction is None or not same_grid(image, layers[name])):
            layers.remove(name)
    if prediction is None:
        return
    pseudo = to_layer(prediction.labels)
    pseudo = pseudo.astype(np.uint8) if pseudo.max(initial=0) <= 255 else pseudo
    uncertainty = to_layer(prediction.uncertainty)
    if PSEUDO_LABELS in layers:
        layers[PSEUDO_LABELS].data = pseudo
    else:
        layer = viewer.add_labels(pseudo, name=PSEUDO_LABELS, opacity=0.4, **grid_kwargs(image))
        layers.move(layers.index(layer), layers.index(labels))
    if UNCERTAINTY in layers:
        layers[UNCERTAINTY].data = uncertainty
    else:
        layer = viewer.add_image(
            uncertainty,
            name=UNCERTAINTY,
            colormap="inferno",
            blending="additive",
            opacity=0.5,
            contrast_limits=(0.0, 1.0),
            **grid_kwargs(image),
        )
        layers.move(layers.index(layer), layers.index(labels))
    layers.selection.active = labels
