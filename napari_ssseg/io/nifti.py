"""Read and write NIfTI volumes with checks that explain what is wrong in one line.

Arrays are kept in nibabel's storage order (X, Y, Z). Every :class:`InputError` raised here
starts with the offending file (or folder) so the CLI and the plugin can show it as is.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from napari_ssseg.errors import InputError
from napari_ssseg.io.volume import Volume

NIFTI_SUFFIXES = (".nii.gz", ".nii")
MAX_LABEL = 32767
AFFINE_TOLERANCE_MM = 1e-3
MAX_SHEAR_DEGREES = 45.0
"""Largest departure from perpendicular allowed between two voxel axes in world space. CT with
gantry tilt is sheared by up to about 30 degrees and is fine; beyond 45 degrees an axis lies
nearer to another axis than to its own direction, so orientation and spacing lose meaning."""
_GZIP_CHUNK = 1 << 20

# Errors nibabel (or gzip/zlib underneath it) raises on a corrupt or foreign file.
_READ_ERRORS = (
    ImageFileError,
    HeaderDataError,
    OSError,
    EOFError,
    zlib.error,
    ValueError,
    OverflowError,
)


def nifti_suffix(path: str | Path) -> str | None:
    """Return ``".nii.gz"`` or ``".nii"`` if ``path`` ends with it (case-insensitive), else None."""
    name = str(path).lower()
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """Silence nibabel's own stderr logger: its complaints become our one-line error."""
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_gzip_stream(path: Path) -> int:
    """Decompress a ``.nii.gz`` to its end so a bad CRC or a cut-off stream is noticed;
    returns the uncompressed size in bytes.

    nibabel reads only as many bytes as the header asks for, so a damaged tail (or a flipped
    bit inside a literal run, which only the CRC reveals) would otherwise pass unnoticed.
    """
    size = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_GZIP_CHUNK):
                size += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(
            f"{path} is not a readable NIfTI file: damaged gzip data ({_reason(exc)})"
        ) from exc
    return size


def _stored_size(path: Path) -> int:
    """Bytes of the (uncompressed) NIfTI stream in ``path``."""
    return _check_gzip_stream(path) if nifti_suffix(path) == ".nii.gz" else path.stat().st_size


def _load_image(path: Path) -> nib.Nifti1Image:
    """Open ``path`` as a NIfTI image after checking it exists and is a non-empty file."""
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a NIfTI file")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes)")
    if nifti_suffix(path) is None:
        raise InputError(f"{path} is not a NIfTI file: the name must end in .nii or .nii.gz")
    stored = _stored_size(path)
    try:
        with _quiet_nibabel():
            img = nib.load(str(path))
    except _READ_ERRORS as exc:
        if isinstance(exc, HeaderDataError) and "data code 1 " in str(exc):
            raise InputError(
                f"{path} holds 1-bit (binary, NIfTI datatype 1) voxels, which cannot be read; "
                "store masks as uint8"
            ) from exc
        raise InputError(f"{path} is not a readable NIfTI file: {_reason(exc)}") from exc
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise InputError(
            f"{path} is not a readable NIfTI file: nibabel opened it as {type(img).__name__}"
        )
    _check_stored_size(path, img, stored)
    return img


def _check_stored_size(path: Path, img: nib.Nifti1Image, stored: int) -> None:
    """Refuse a file holding fewer voxel bytes than its header promises, before reading."""
    shape = tuple(int(s) for s in img.shape)
    if any(s < 0 for s in shape):
        raise InputError(f"{path} has a negative axis length in its header: {_fmt_shape(shape)}")
    try:
        offset = int(getattr(img.dataobj, "offset", img.header.get_data_offset()))
        itemsize = img.get_data_dtype().itemsize
    except (HeaderDataError, TypeError, ValueError) as exc:
        raise InputError(f"{path} is not a readable NIfTI file: {_reason(exc)}") from exc
    needed = offset + int(np.prod(shape, dtype=object)) * itemsize
    if needed > stored:
        raise InputError(
            f"{path} is truncated: its header promises {needed} bytes "
            f"({_fmt_shape(shape)} voxels of {img.get_data_dtype()}), the file holds {stored}"
        )


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_geometry(path: Path, img: nib.Nifti1Image) -> tuple[int, int, int]:
    """Return the 3-D shape of ``img`` or raise if it is not a usable 3-D volume."""
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 3:
        raise InputError(
            f"{path} is a {len(shape)}-D image of shape {_fmt_shape(shape)}; a 3-D volume is needed"
        )
    if len(shape) > 3 and any(s != 1 for s in shape[3:]):
        raise InputError(
            f"{path} is a {len(shape)}-D image of shape {_fmt_shape(shape)}; a 3-D volume is "
            "needed (axes after the third must have size 1)"
        )
    if any(s == 0 for s in shape[:3]):
        raise InputError(f"{path} has an empty axis: shape {_fmt_shape(shape)}")
    dtype = img.get_data_dtype()
    if dtype.kind == "c":
        raise InputError(f"{path} holds complex voxels ({dtype}); a real-valued volume is needed")
    if dtype.kind == "b":
        raise InputError(f"{path} holds boolean voxels; store masks as an integer type")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise InputError(f"{path} has a voxel-to-world affine with NaN or Inf entries")
    linear = affine[:3, :3]
    scale = float(np.max(np.abs(linear))) if linear.size else 0.0
    if scale == 0.0 or abs(np.linalg.det(linear / scale)) < 1e-9:
        raise InputError(f"{path} has a singular (non-invertible) voxel-to-world affine")
    _check_shear(path, linear)
    return shape[0], shape[1], shape[2]


def _check_shear(path: Path, linear: np.ndarray) -> None:
    """Refuse voxel axes that meet at more than :data:`MAX_SHEAR_DEGREES` from 90 degrees."""
    columns = linear / np.linalg.norm(linear, axis=0)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        cosine = float(np.clip(abs(columns[:, a] @ columns[:, b]), 0.0, 1.0))
        angle = float(np.degrees(np.arccos(cosine)))  # in [0, 90]
        if 90.0 - angle > MAX_SHEAR_DEGREES:
            raise InputError(
                f"{path} has a non-orthogonal (sheared) voxel-to-world affine: voxel axes {a} "
                f"and {b} meet at {angle:.1f} degrees; at most {MAX_SHEAR_DEGREES:g} degrees from "
                "perpendicular is accepted"
            )


def read_volume(path: str | Path) -> Volume:
    """Read a 3-D NIfTI image as float32 voxels of shape (X, Y, Z), keeping affine and header.

    A 4-D/5-D file is accepted when its extra axes all have size 1. Raises :class:`InputError`
    (message starting with the file) for anything that cannot be used as a 3-D volume.
    """
    path = Path(path)
    img = _load_image(path)
    shape = _check_geometry(path, img)
    try:
        data = img.get_fdata(dtype=np.float32)
    except _READ_ERRORS as exc:
        raise InputError(f"{path} is not a readable NIfTI file: {_reason(exc)}") from exc
    data = np.ascontiguousarray(data.reshape(shape))
    floating = img.get_data_dtype().kind == "f" or img.dataobj.slope != 1 or img.dataobj.inter
    finite = np.isfinite(data) if floating else np.ones((), bool)  # integers are finite
    if not finite.all():
        n_nan = int(np.isnan(data).sum())
        n_inf = int(data.size - finite.sum()) - n_nan
        raise InputError(
            f"{path} has {n_nan + n_inf} non-finite voxels ({n_nan} NaN, {n_inf} Inf) "
            f"out of {data.size}"
        )
    return Volume(
        data=data,
        affine=np.array(img.affine, dtype=np.float64),
        header=img.header.copy(),
        path=path,
    )


def read_labels(path: str | Path, like: Volume | None = None) -> np.ndarray:
    """Read a label volume as an int16 array of shape (X, Y, Z).

    Values must be integers in 0..32767. With ``like``, the label grid (shape and affine within
    1e-3 mm) must match that image. Raises :class:`InputError` naming the file otherwise.
    """
    path = Path(path)
    stored = _integer_voxels(path)
    if stored is not None:  # integers on disk: no float copy, no rounding check (memory)
        rounded, shape, affine = stored
    else:
        volume = read_volume(path)
        data = volume.data
        rounded = np.rint(data)
        off = rounded != data
        if off.any():
            example = float(data[off].flat[0])
            raise InputError(
                f"{path} holds non-integer values such as {example:g}; labels must be whole numbers"
            )
        shape, affine = volume.shape, volume.affine
    low, high = float(rounded.min()), float(rounded.max())
    if low < 0:
        raise InputError(f"{path} holds negative values (minimum {low:g}); labels must be >= 0")
    if high > MAX_LABEL:
        raise InputError(
            f"{path} holds values above {MAX_LABEL} (maximum {high:g}); too many labels"
        )
    if like is not None:
        if shape != like.shape:
            raise InputError(
                f"{path}: label grid {_fmt_shape(shape)} differs from the image grid "
                f"{_fmt_shape(like.shape)}"
            )
        diff = float(np.max(np.abs(affine - np.asarray(like.affine, dtype=np.float64))))
        if diff > AFFINE_TOLERANCE_MM:
            raise InputError(
                f"{path}: label affine differs from the image affine by up to {diff:.4g} mm "
                f"(tolerance {AFFINE_TOLERANCE_MM:g} mm); the labels are not on the image grid"
            )
    return rounded.astype(np.int16, copy=False)


def _integer_voxels(path: Path) -> tuple[np.ndarray, tuple[int, ...], np.ndarray] | None:
    """(voxels, shape, affine) of a file that stores integers without scaling, read in
    their own dtype; None for anything else (read as float and checked instead)."""
    img = _load_image(path)
    shape = _check_geometry(path, img)
    if img.get_data_dtype().kind not in "iu":
        return None
    try:
        voxels = np.asanyarray(img.dataobj)
    except _READ_ERRORS as exc:
        raise InputError(f"{path} is not a readable NIfTI file: {_reason(exc)}") from exc
    if voxels.dtype.kind not in "iu":  # scl_slope / scl_inter turned them into floats
        return None
    return voxels.reshape(shape), tuple(shape), np.array(img.affine, dtype=np.float64)


def _label_array(path: Path, labels: np.ndarray) -> np.ndarray:
    """Check label values and return them as uint8 (0..255) or int16."""
    arr = np.asarray(labels)
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise InputError(f"{path}: cannot write labels of dtype {arr.dtype}; integers are needed")
    if arr.size == 0:
        raise InputError(f"{path}: cannot write an empty label array")
    if arr.dtype.kind == "f" and not np.array_equal(np.rint(arr), arr):  # NaN also fails
        raise InputError(f"{path}: labels to write hold non-integer values")
    low, high = arr.min(), arr.max()
    if low < 0 or high > MAX_LABEL:
        raise InputError(
            f"{path}: labels to write must lie in 0..{MAX_LABEL}, got {low:g}..{high:g}"
        )
    return arr.astype(np.uint8 if high <= 255 else np.int16)


def _check_target(path: Path, data: np.ndarray, like: Volume, what: str) -> None:
    if nifti_suffix(path) is None:
        raise InputError(f"{path}: the output name must end in .nii or .nii.gz")
    if data.shape != tuple(like.shape):
        raise InputError(
            f"{path}: {what} shape {_fmt_shape(data.shape)} differs from the image grid "
            f"{_fmt_shape(like.shape)}"
        )
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{path}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise InputError(f"{path}: the output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: the output folder {folder} is not writable")


def _build_image(data: np.ndarray, like: Volume) -> nib.Nifti1Image:
    """A NIfTI image of ``data`` (X, Y, Z) on the grid of ``like`` with a copy of its header."""
    affine = np.asarray(like.affine, dtype=np.float64)
    source = like.header
    if source is not None and isinstance(source, nib.Nifti1Header):
        hdr = source.copy()
        image_class = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    else:
        hdr = nib.Nifti1Header()
        image_class = nib.Nifti1Image
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    hdr.set_slope_inter(1.0, 0.0)
    hdr["cal_min"] = 0.0
    hdr["cal_max"] = 0.0
    if source is None or not np.array_equal(source.get_best_affine(), affine):
        # The header does not already encode this affine: store it in both forms.
        scode = int(hdr["sform_code"]) if source is not None else 0
        qcode = int(hdr["qform_code"]) if source is not None else 0
        old_zooms = hdr.get_zooms()[:3]
        hdr.set_qform(affine, code=qcode if qcode > 0 else 1)
        hdr.set_sform(affine, code=scode if scode > 0 else 1)
        new_zooms = hdr.get_zooms()[:3]
        if np.allclose(old_zooms, new_zooms, rtol=1e-6, atol=0):
            hdr.set_zooms(old_zooms)  # keep the source's exact voxel sizes
    img = image_class(data, hdr.get_best_affine(), header=hdr)
    img.set_data_dtype(data.dtype)
    return img


def _save_atomic(img: nib.Nifti1Image, path: Path) -> Path:
    """Save ``img`` to a temporary sibling of ``path`` then rename it into place."""
    suffix = nifti_suffix(path) or ".nii.gz"
    base = path.name[: -len(suffix)]
    tmp = path.parent / f".{base}.{uuid.uuid4().hex[:12]}.tmp{suffix}"
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"{path}: could not write to {path.parent}: {_reason(exc)}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def write_labels(path: str | Path, labels: np.ndarray, like: Volume) -> Path:
    """Write integer labels of shape (X, Y, Z) on the grid, affine and header of ``like``.

    Stored as uint8 when all values fit 0..255, else int16, without scaling. The file is
    written to a temporary name in the same folder and renamed, so it is never half-written.
    """
    path = Path(path)
    arr = np.asarray(labels)
    _check_target(path, arr, like, "label")
    arr = _label_array(path, arr)
    return _save_atomic(_build_image(arr, like), path)


def write_image(path: str | Path, data: np.ndarray, like: Volume) -> Path:
    """Write a float32 map of shape (X, Y, Z) (e.g. uncertainty) on the grid of ``like``."""
    path = Path(path)
    arr = np.asarray(data)
    _check_target(path, arr, like, "image")
    if arr.dtype.kind not in "iufb":
        raise InputError(f"{path}: cannot write an image of dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    return _save_atomic(_build_image(arr, like), path)
