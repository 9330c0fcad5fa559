"""The catalogue of bad inputs: what a user can get wrong, and what each must get back.

Every case builds its input in a fresh folder and triggers one code path: the NIfTI/model/
checkpoint readers (``reader``), ``napari-ssseg`` run in-process (``cli``), the Qt-free parts
of the napari plugin (``plugin``: napari_io's reader and writer, the widget's
AnnotationSession and the TrainingJob it builds) or the training settings (``config``).
A refused case must raise its error class with a one-line message naming the problem and
leave the folder as it was; an accepted one must pass, with the warning it names if any.
``docs/bad_inputs.py`` turns this list into ``docs/bad_inputs.md``.
"""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import nibabel as nib
import numpy as np

from napari_ssseg.errors import AnnotationError, InputError, SsSegError
from napari_ssseg.foundation.errors import CheckpointError
from napari_ssseg.settings.values import merged
from tests.bad_inputs.observe import BadInput, CliFailure, Warnings, cli_trigger

SHAPE = (12, 10, 6)
"""(X, Y, Z) of the small volumes; spacing (1, 1, 2) makes Z the slice axis (6 slices)."""
SPACING_AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
FAST = {
    "student": {"image_size": 16, "channels": [4, 8]},
    "prediction": {"passes": 1},
    "agreement_every": 0,
}
"""Training settings small enough for a 2-step run in well under a second."""
FAST_ARGS = ("--max-iters", "2", "--threads", "1", "--device", "cpu")


# --------------------------------------------------------------------------- inputs


def nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, SPACING_AFFINE if affine is None else affine), str(path))
    return path


def tiny_case() -> tuple[np.ndarray, np.ndarray]:
    """An image with a bright box (class 1) holding a smaller blob (class 2); slices 0 and 5
    hold no label, 1..4 hold class 1, 2..3 class 2."""
    rng = np.random.default_rng(0)
    image = (100 + 10 * rng.standard_normal(SHAPE)).astype(np.float32)
    labels = np.zeros(SHAPE, np.uint8)
    labels[3:9, 2:8, 1:5] = 1
    labels[5:7, 4:6, 2:4] = 2
    image[labels == 1] += 150
    image[labels == 2] += 300
    return image, labels


def image_file(folder: Path, name: str = "scan.nii.gz") -> Path:
    return nifti(folder / name, tiny_case()[0])


def labels_file(folder: Path, labels: np.ndarray, name: str = "scan_labels.nii.gz") -> Path:
    return nifti(folder / name, labels)


def config_file(folder: Path, **extra: Any) -> Path:
    """``settings.json`` holding :data:`FAST` with ``extra`` (settings by section) merged in."""
    path = folder / "settings.json"
    path.write_text(json.dumps(merged(FAST, extra)))
    return path


def model_dir(folder: Path, channels: tuple[int, ...] = (4, 8)) -> Path:
    """An untrained two-class model saved as a model folder (no training needed)."""
    from napari_ssseg.model_store import TrainedModel, save_model
    from napari_ssseg.networks.unet import unet_for
    from napari_ssseg.settings import TrainConfig

    config = TrainConfig.from_dict(merged(FAST, {"student": {"channels": list(channels)}}))
    weights = unet_for(config.student, 2).state_dict()
    return save_model(TrainedModel(weights, config, ["a", "b"]), folder / "model")


def write_bytes(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    return path


def make_folder(path: Path) -> Path:
    path.mkdir()
    return path


def gz_with(path: Path, mutate: Callable[[bytearray], None]) -> Path:
    """A valid ``.nii.gz`` whose compressed bytes ``mutate`` then damages."""
    data = np.random.default_rng(3).normal(size=(20, 20, 20)).astype(np.float32)
    nifti(path, data)
    blob = bytearray(path.read_bytes())
    mutate(blob)
    path.write_bytes(bytes(blob))
    return path


def with_datatype_code(path: Path, code: int) -> Path:
    """An uncompressed ``.nii`` whose header claims NIfTI datatype ``code``."""
    nifti(path, np.zeros((4, 4, 4), np.uint8))
    blob = bytearray(path.read_bytes())
    struct.pack_into("<hh", blob, 70, code, 1)  # datatype, bitpix
    path.write_bytes(bytes(blob))
    return path


def sheared_affine(degrees_from_perpendicular: float) -> np.ndarray:
    """Spacing (1, 1, 2); the Z axis leans toward Y by the given angle."""
    tilt = np.radians(degrees_from_perpendicular)
    affine = SPACING_AFFINE.copy()
    affine[:3, 2] = [0.0, 2.0 * np.sin(tilt), 2.0 * np.cos(tilt)]
    return affine


# --------------------------------------------------------------------------- reader


def reader(build_path: Callable[[Path], Path], labels: bool = False) -> Callable:
    """A case builder reading the file ``build_path`` makes (as labels if asked)."""
    from napari_ssseg.io.nifti import read_labels, read_volume

    def build(folder: Path) -> Callable[[], Any]:
        path = build_path(folder)
        return (lambda: read_labels(path)) if labels else (lambda: read_volume(path))

    return build


def labels_on_image(make_labels: Callable[[Path], Path]) -> Callable:
    """A case builder reading labels against the image they must match."""
    from napari_ssseg.io.nifti import read_labels, read_volume

    def build(folder: Path) -> Callable[[], Any]:
        image = read_volume(image_file(folder))
        path = make_labels(folder)
        return lambda: read_labels(path, like=image)

    return build


def _text(folder: Path) -> Path:
    path = folder / "notes.nii.gz"
    path.write_text("patient notes, not an image\n")
    return path


def _truncated_gz(folder: Path) -> Path:
    return gz_with(
        folder / "cut.nii.gz", lambda blob: blob.__delitem__(slice(len(blob) // 2, None))
    )


def _bad_crc(folder: Path) -> Path:
    def flip(blob: bytearray) -> None:
        blob[-6] ^= 0xFF  # inside the CRC-32 of the gzip trailer; the data decode fine

    return gz_with(folder / "crc.nii.gz", flip)


def _bad_deflate(folder: Path) -> Path:
    def scramble(blob: bytearray) -> None:
        for i in range(200, 260):
            blob[i] ^= 0xFF

    return gz_with(folder / "scrambled.nii.gz", scramble)


def _truncated_nii(folder: Path) -> Path:
    path = nifti(folder / "cut.nii", np.ones((20, 20, 20), np.float32))
    path.write_bytes(path.read_bytes()[:5000])
    return path


def _garbage_gz(folder: Path) -> Path:
    path = folder / "random.nii.gz"
    path.write_bytes(gzip.compress(np.random.default_rng(1).bytes(600)))
    return path


def _singular(folder: Path) -> Path:
    affine = SPACING_AFFINE.copy()
    affine[:3, 2] = affine[:3, 1]  # two voxel axes along the same direction
    img = nib.Nifti1Image(np.ones(SHAPE, np.float32), None)
    img.header.set_sform(affine, code=1)
    return _save(img, folder / "singular.nii.gz")


def _save(img: nib.Nifti1Image, path: Path) -> Path:
    nib.save(img, str(path))
    return path


def _nan_affine(folder: Path) -> Path:
    img = nib.Nifti1Image(np.ones(SHAPE, np.float32), None)
    affine = SPACING_AFFINE.copy()
    affine[0, 3] = np.nan
    img.header.set_sform(affine, code=1)
    img.header.set_qform(None, code=0)
    return _save(img, folder / "nan_affine.nii.gz")


def _nan_voxels(folder: Path) -> Path:
    data = np.ones(SHAPE, np.float32)
    data[0, 0, :3] = np.nan
    data[1, 1, 1] = np.inf
    return nifti(folder / "nan.nii.gz", data)


def _float_labels(folder: Path) -> Path:
    data = np.zeros(SHAPE, np.float32)
    data[3, 3, 3] = 0.5
    return nifti(folder / "soft_labels.nii.gz", data)


def _valued_labels(value: int, dtype: type, name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        data = np.zeros(SHAPE, dtype)
        data[0, 0, 0] = value
        return nifti(folder / name, data)

    return make


def _labels_other_grid(folder: Path) -> Path:
    return labels_file(folder, np.zeros((12, 10, 5), np.uint8), "short_labels.nii.gz")


def _labels_moved(folder: Path) -> Path:
    affine = SPACING_AFFINE.copy()
    affine[0, 3] += 0.5
    return nifti(folder / "moved_labels.nii.gz", tiny_case()[1], affine)


def _load_model(change: Callable[[Path], None]) -> Callable:
    from napari_ssseg.model_store import load_model

    def build(folder: Path) -> Callable[[], Any]:
        folder = model_dir(folder)
        change(folder)
        return lambda: load_model(folder)

    return build


def _claim_channels(folder: Path) -> None:
    settings = json.loads((folder / "model.json").read_text())
    settings["config"]["student"]["channels"] = [8, 16]
    (folder / "model.json").write_text(json.dumps(settings))


def _wrong_hash(folder: Path) -> Callable[[], Any]:
    from napari_ssseg.foundation.checkpoints import load_state_dict
    from napari_ssseg.settings.model_cards import model_card

    path = folder / "lite_medsam.pth"
    path.write_bytes(np.random.default_rng(2).bytes(4096))
    return lambda: load_state_dict(path, model_card("litemedsam"))


def _other_sam_architecture(folder: Path) -> Callable[[], Any]:
    import torch

    from napari_ssseg.foundation.checkpoints import load_into

    # A decoder of another width, as in a checkpoint of another SAM variant.
    state = {"mask_decoder.weight": torch.zeros(3, 8), "mask_decoder.bias": torch.zeros(3)}
    parts = {"mask_decoder": torch.nn.Linear(4, 2)}
    return lambda: load_into(parts, state, str(folder / "sam_vit_h.pth"))


READER_CASES = [
    BadInput(
        "not-nifti-text",
        "reader",
        "a text file named .nii.gz",
        reader(_text),
        InputError,
        r"notes\.nii\.gz is not a readable NIfTI file",
    ),
    BadInput(
        "not-nifti-suffix",
        "reader",
        "a file not named .nii/.nii.gz",
        reader(lambda f: write_bytes(f / "scan.mgz", b"\0" * 400)),
        InputError,
        r"scan\.mgz is not a NIfTI file: the name must end in \.nii",
    ),
    BadInput(
        "not-nifti-gzip",
        "reader",
        "random bytes gzip-compressed and named .nii.gz",
        reader(_garbage_gz),
        InputError,
        r"random\.nii\.gz is not a readable NIfTI file",
    ),
    BadInput(
        "empty-file",
        "reader",
        "a 0-byte file",
        reader(lambda f: write_bytes(f / "empty.nii.gz", b"")),
        InputError,
        r"empty\.nii\.gz is empty \(0 bytes\)",
    ),
    BadInput(
        "missing-file",
        "reader",
        "a path that does not exist",
        reader(lambda f: f / "absent.nii.gz"),
        InputError,
        r"absent\.nii\.gz does not exist",
    ),
    BadInput(
        "folder-not-file",
        "reader",
        "a folder named like a NIfTI file",
        reader(lambda f: make_folder(f / "dir.nii")),
        InputError,
        r"dir\.nii is a folder",
    ),
    BadInput(
        "truncated-gzip",
        "reader",
        "a .nii.gz cut in half",
        reader(_truncated_gz),
        InputError,
        r"cut\.nii\.gz is not a readable NIfTI file: damaged gzip data",
    ),
    BadInput(
        "gzip-bad-crc",
        "reader",
        "a .nii.gz whose CRC-32 does not match its data",
        reader(_bad_crc),
        InputError,
        r"crc\.nii\.gz .*damaged gzip data.*CRC check failed",
        "nibabel alone reads only the bytes it needs and accepted this file; the whole "
        "stream is now decompressed once to check it",
    ),
    BadInput(
        "gzip-corrupt-deflate",
        "reader",
        "a .nii.gz with scrambled compressed bytes",
        reader(_bad_deflate),
        InputError,
        r"scrambled\.nii\.gz .*damaged gzip data",
    ),
    BadInput(
        "truncated-nii",
        "reader",
        "an uncompressed .nii cut inside its voxel data",
        reader(_truncated_nii),
        InputError,
        r"cut\.nii is truncated: its header promises 32352 bytes \(\(20, 20, 20\) voxels",
    ),
    BadInput(
        "image-2d",
        "reader",
        "a 2-D image",
        reader(lambda f: nifti(f / "flat.nii.gz", np.zeros((8, 8), np.float32))),
        InputError,
        r"flat\.nii\.gz is a 2-D image of shape \(8, 8\); a 3-D volume",
    ),
    BadInput(
        "image-4d",
        "reader",
        "a 4-D image (3 time points)",
        reader(lambda f: nifti(f / "time.nii.gz", np.zeros((*SHAPE, 3), np.float32))),
        InputError,
        r"time\.nii\.gz is a 4-D image of shape \(12, 10, 6, 3\)",
    ),
    BadInput(
        "image-5d",
        "reader",
        "a 5-D image",
        reader(lambda f: nifti(f / "five.nii.gz", np.zeros((*SHAPE, 1, 2), np.float32))),
        InputError,
        r"five\.nii\.gz is a 5-D image of shape \(12, 10, 6, 1, 2\)",
    ),
    BadInput(
        "image-4d-singleton",
        "reader",
        "a 4-D file whose 4th axis has size 1",
        reader(lambda f: nifti(f / "one.nii.gz", np.zeros((*SHAPE, 1), np.float32))),
        None,
        "",
        "it is a 3-D volume stored with a trailing axis of size 1",
    ),
    BadInput(
        "complex-voxels",
        "reader",
        "complex64 voxels",
        reader(lambda f: nifti(f / "cplx.nii.gz", np.zeros(SHAPE, np.complex64))),
        InputError,
        r"cplx\.nii\.gz holds complex voxels \(complex64\)",
    ),
    BadInput(
        "boolean-voxels",
        "reader",
        "1-bit voxels (NIfTI datatype 1, DT_BINARY)",
        reader(lambda f: with_datatype_code(f / "mask.nii", 1)),
        InputError,
        r"mask\.nii holds 1-bit \(binary, NIfTI datatype 1\) voxels",
        "numpy bool arrays cannot be saved as NIfTI; DT_BINARY is the boolean NIfTI",
    ),
    BadInput(
        "unknown-datatype",
        "reader",
        "a datatype code NIfTI does not define (99)",
        reader(lambda f: with_datatype_code(f / "odd.nii", 99)),
        InputError,
        r"odd\.nii is not a readable NIfTI file: .*data code 99",
    ),
    BadInput(
        "nan-inf-voxels",
        "reader",
        "3 NaN and 1 Inf voxels",
        reader(_nan_voxels),
        InputError,
        r"nan\.nii\.gz has 4 non-finite voxels \(3 NaN, 1 Inf\)",
    ),
    BadInput(
        "zero-size-axis",
        "reader",
        "an axis of length 0",
        reader(lambda f: nifti(f / "hollow.nii.gz", np.zeros((4, 0, 3), np.float32))),
        InputError,
        r"hollow\.nii\.gz has an empty axis: shape \(4, 0, 3\)",
    ),
    BadInput(
        "singular-affine",
        "reader",
        "two voxel axes along one direction",
        reader(_singular),
        InputError,
        r"singular\.nii\.gz has a singular",
    ),
    BadInput(
        "nan-affine",
        "reader",
        "a NaN translation in the affine",
        reader(_nan_affine),
        InputError,
        r"nan_affine\.nii\.gz has a voxel-to-world affine with NaN",
    ),
    BadInput(
        "sheared-affine",
        "reader",
        "voxel axes 60 degrees from perpendicular",
        reader(
            lambda f: nifti(f / "shear.nii.gz", np.ones(SHAPE, np.float32), sheared_affine(60.0))
        ),
        InputError,
        r"shear\.nii\.gz has a non-orthogonal \(sheared\).*axes 1 and 2 meet "
        r"at 30\.0 degrees",
        "more than 45 degrees from perpendicular: orientation and spacing lose meaning",
    ),
    BadInput(
        "gantry-tilt-affine",
        "reader",
        "voxel axes 15 degrees from perpendicular",
        reader(
            lambda f: nifti(f / "tilt.nii.gz", np.ones(SHAPE, np.float32), sheared_affine(15.0))
        ),
        None,
        "",
        "CT with gantry tilt is sheared like this; outputs keep the affine, so nothing is lost",
    ),
    BadInput(
        "labels-float",
        "reader",
        "labels holding 0.5",
        reader(_float_labels, labels=True),
        InputError,
        r"soft_labels\.nii\.gz holds non-integer values such as 0\.5",
    ),
    BadInput(
        "labels-negative",
        "reader",
        "a label of -2",
        reader(_valued_labels(-2, np.int16, "neg.nii.gz"), labels=True),
        InputError,
        r"neg\.nii\.gz holds negative values \(minimum -2\)",
    ),
    BadInput(
        "labels-too-large",
        "reader",
        "a label of 40000 (above int16)",
        reader(_valued_labels(40000, np.int32, "big.nii.gz"), labels=True),
        InputError,
        r"big\.nii\.gz holds values above 32767 \(maximum 40000\)",
    ),
    BadInput(
        "labels-other-grid",
        "reader",
        "labels of shape (12, 10, 5) for a (12, 10, 6) image",
        labels_on_image(_labels_other_grid),
        InputError,
        r"short_labels\.nii\.gz: label grid \(12, 10, 5\) differs from the image grid "
        r"\(12, 10, 6\)",
    ),
    BadInput(
        "labels-other-affine",
        "reader",
        "labels shifted 0.5 mm from the image",
        labels_on_image(_labels_moved),
        InputError,
        r"moved_labels\.nii\.gz: label affine differs from the image affine by up to 0\.5 mm",
    ),
    BadInput(
        "model-other-architecture",
        "reader",
        "a model folder whose model.json names channels (8, 16) for (4, 8) weights",
        _load_model(_claim_channels),
        InputError,
        r"model\.safetensors: weights do not fit the architecture in model\.json",
    ),
    BadInput(
        "model-json-broken",
        "reader",
        "a model folder whose model.json is not JSON",
        _load_model(lambda f: (f / "model.json").write_text("{broken")),
        InputError,
        r"model\.json: not valid JSON",
    ),
    BadInput(
        "checkpoint-wrong-hash",
        "reader",
        "a LiteMedSAM checkpoint with other bytes",
        _wrong_hash,
        CheckpointError,
        r"lite_medsam\.pth: SHA-256 mismatch for litemedsam: expected 79d8c9dc",
    ),
    BadInput(
        "checkpoint-other-architecture",
        "reader",
        "foundation weights of another shape than the model's parts",
        _other_sam_architecture,
        CheckpointError,
        r"sam_vit_h\.pth: mask_decoder weights do not fit",
    ),
]


# --------------------------------------------------------------------------- CLI


def train(
    *extra: Any, labels: np.ndarray | None = None, out: str = "model", settings: dict | None = None
) -> Callable:
    """A builder running ``train scan.nii.gz --labels scan_labels.nii.gz EXTRA --out OUT``."""

    def build(folder: Path) -> Callable[[], Any]:
        image = image_file(folder)
        lab = labels_file(folder, tiny_case()[1] if labels is None else labels)
        return _train_trigger(folder, image, lab, *extra, settings=settings, out=out)

    return build


def _train_trigger(
    folder: Path,
    image: Path,
    labels: Path,
    *extra: Any,
    settings: dict | None = None,
    out: str = "model",
) -> Callable[[], Any]:
    """``train IMAGE --labels LABELS EXTRA --config (settings) --out FOLDER/OUT``, fast."""
    config = config_file(folder, **(settings or {}))
    return cli_trigger(
        "train",
        image,
        "--labels",
        labels,
        *extra,
        "--config",
        config,
        *FAST_ARGS,
        "--out",
        folder / out,
    )


def predict(
    *extra: Any,
    out: str = "results",
    image: np.ndarray | None = None,
    change_model: Callable[[Path], None] | None = None,
) -> Callable:
    """A builder running ``predict scan.nii.gz --model model EXTRA --out OUT``."""

    def build(folder: Path) -> Callable[[], Any]:
        model = model_dir(folder)
        if change_model is not None:
            change_model(model)
        path = nifti(folder / "scan.nii.gz", tiny_case()[0] if image is None else image)
        return cli_trigger("predict", path, "--model", model, *extra, "--out", folder / out)

    return build


def _file_then(build: Callable, name: str = "taken") -> Callable:
    """``build`` after writing a regular file ``name`` in the folder."""

    def wrapped(folder: Path) -> Callable[[], Any]:
        (folder / name).write_text("a file, not a folder\n")
        return build(folder)

    return wrapped


def _busy_folder(build: Callable) -> Callable:
    """``build`` with ``model/`` already holding the user's own files."""

    def wrapped(folder: Path) -> Callable[[], Any]:
        (folder / "model").mkdir()
        (folder / "model" / "notes.txt").write_text("keep me\n")
        return build(folder)

    return wrapped


def _read_only(build: Callable, existing: str | None = None) -> Callable:
    """``build`` whose writes into a folder fail as in a read-only folder (EACCES).

    We run as root, for whom chmod does not block writes, so the refusal is simulated:
    ``tempfile.mkdtemp`` (where the model and the prediction are staged) raises
    PermissionError.
    """

    def wrapped(folder: Path) -> Callable[[], Any]:
        if existing:
            (folder / existing).mkdir()
        trigger = build(folder)

        def denied(*args: Any, **kwargs: Any) -> str:
            raise PermissionError(13, "Permission denied", kwargs.get("dir"))

        def run() -> Any:
            with mock.patch("tempfile.mkdtemp", denied):
                return trigger()

        return run

    return wrapped


def _all_slices() -> np.ndarray:
    labels = tiny_case()[1]
    labels[3:9, 2:8, :] = np.maximum(labels[3:9, 2:8, :], 1)  # class 1 on every slice
    return labels


def _tiny_volume(folder: Path) -> Callable[[], Any]:
    image = nifti(folder / "strip.nii.gz", np.ones((3, 12, 6), np.float32))
    labels = np.zeros((3, 12, 6), np.uint8)
    labels[1, 2:6, 2] = 1
    lab = labels_file(folder, labels, "strip_labels.nii.gz")
    return _train_trigger(folder, image, lab)


def _sam_bad_checkpoint(folder: Path) -> Callable[[], Any]:
    bad = folder / "lite_medsam.pth"
    bad.write_bytes(np.random.default_rng(4).bytes(2048))
    return train("--method", "sc-sam", settings={"foundation": {"checkpoint": str(bad)}})(folder)


def _bad_settings_file(text: str) -> Callable:
    def build(folder: Path) -> Callable[[], Any]:
        trigger = train()(folder)
        (folder / "settings.json").write_text(text)
        return trigger

    return build


def _bench_settings_naming_a_method(folder: Path) -> Callable[[], Any]:
    settings = folder / "settings.json"
    settings.write_text('{"method": "mt", "budget": {"max_iters": 5}}')
    return cli_trigger("bench", "--data", folder / "msd", "--config", settings)


CLASS_1_ONLY = (tiny_case()[1] == 1).astype(np.uint8)
NO_LABELS = np.zeros(SHAPE, np.uint8)
OUT_OF_SET = tiny_case()[1].copy()
OUT_OF_SET[0, 0, 1] = 7

CLI_CASES = [
    BadInput(
        "cli-missing-image",
        "cli",
        "train on an image that does not exist",
        lambda f: cli_trigger("train", f / "nope.nii.gz", "--out", f / "model"),
        CliFailure,
        r"^napari-ssseg: error: .*nope\.nii\.gz does not exist$",
    ),
    BadInput(
        "cli-prepare-missing-image",
        "cli",
        "prepare an image that does not exist",
        lambda f: cli_trigger(
            "prepare", f / "nope.nii.gz", "--config", config_file(f, features={"pretrain_steps": 2})
        ),
        CliFailure,
        r"^napari-ssseg: error: .*nope\.nii\.gz does not exist$",
    ),
    BadInput(
        "cli-prepare-nothing",
        "cli",
        "prepare for settings that use no foundation model and do not pretrain",
        lambda f: cli_trigger("prepare", image_file(f), "--config", config_file(f)),
        CliFailure,
        r"nothing to prepare: method ssl with these settings and 1 class\(es\) uses no "
        r"foundation model",
    ),
    BadInput(
        "cli-4d-image",
        "cli",
        "train on a 4-D image",
        lambda f: cli_trigger(
            "train", nifti(f / "t.nii.gz", np.zeros((*SHAPE, 2), np.float32)), "--out", f / "model"
        ),
        CliFailure,
        r"t\.nii\.gz is a 4-D image of shape \(12, 10, 6, 2\)",
    ),
    BadInput(
        "cli-labels-other-grid",
        "cli",
        "labels of another grid than the image",
        train(labels=np.zeros((12, 10, 5), np.uint8)),
        CliFailure,
        r"scan_labels\.nii\.gz: label grid \(12, 10, 5\) differs",
    ),
    BadInput(
        "cli-no-annotated-slice",
        "cli",
        "a label file holding only zeros",
        train(labels=NO_LABELS),
        CliFailure,
        r"error: no annotated slice",
    ),
    BadInput(
        "cli-labels-outside-classes",
        "cli",
        "a label 7 with --classes a,b",
        train("--classes", "a,b", labels=OUT_OF_SET),
        CliFailure,
        r"label values \[7\] are outside the class set 0\.\.2 \(a, b\)",
    ),
    BadInput(
        "cli-slice-out-of-range",
        "cli",
        "--annotated-slices 1,9 on 6 slices",
        train("--annotated-slices", "1,9"),
        CliFailure,
        r"slice 9 is out of range; axis 2 has slices 0\.\.5",
    ),
    BadInput(
        "cli-slice-negative",
        "cli",
        "--annotated-slices -1",
        train("--annotated-slices=-1"),
        CliFailure,
        r"'-1' is not a slice index or range; slices are numbered from 0",
    ),
    BadInput(
        "cli-slice-reversed-range",
        "cli",
        "--annotated-slices 4-2",
        train("--annotated-slices", "4-2"),
        CliFailure,
        r"'4-2' is a reversed range \(write 2-4\)",
        "was read as an empty list and reported as 'no slice index given'",
    ),
    BadInput(
        "cli-slice-huge-range",
        "cli",
        "--annotated-slices 0-99999999999",
        train("--annotated-slices", "0-99999999999"),
        CliFailure,
        r"'0-99999999999' lists more than 100000 slices",
        "used to build the list and die of MemoryError",
    ),
    BadInput(
        "cli-slice-not-a-number",
        "cli",
        "--annotated-slices 1,x",
        train("--annotated-slices", "1,x"),
        CliFailure,
        r"'x' is not a slice index",
    ),
    BadInput(
        "cli-slices-without-labels",
        "cli",
        "--annotated-slices for an unlabelled image",
        lambda f: cli_trigger(
            "train", image_file(f), "--annotated-slices", "2", "--out", f / "model"
        ),
        CliFailure,
        r"scan\.nii\.gz: --annotated-slices needs --labels",
    ),
    BadInput(
        "cli-axis-out-of-range",
        "cli",
        "--axis 3",
        train("--axis", "3"),
        CliFailure,
        r"--axis must be 0, 1 or 2, not '3'",
    ),
    BadInput(
        "cli-max-iters-not-int",
        "cli",
        "--max-iters abc",
        lambda f: cli_trigger("train", image_file(f), "--max-iters", "abc", "--out", f / "model"),
        CliFailure,
        r"argument --max-iters: invalid int value: 'abc'",
        "argparse's own check: a usage line, then this error line",
    ),
    BadInput(
        "cli-threads-negative",
        "cli",
        "--threads -1",
        lambda f: cli_trigger("train", image_file(f), "--threads", "-1", "--out", f / "model"),
        CliFailure,
        r"--threads must be at least 1, not -1",
        "used to end in a RuntimeError traceback from torch",
    ),
    BadInput(
        "cli-passes-zero",
        "cli",
        "predict --passes 0",
        predict("--passes", "0"),
        CliFailure,
        r"--passes must be at least 1, not 0",
        "0 passes used to write an all-NaN uncertainty map; -1 a traceback",
    ),
    BadInput(
        "cli-volume-too-small",
        "cli",
        "a (3, 12, 6) volume: 3 x 12 voxel slices",
        _tiny_volume,
        CliFailure,
        r"strip: volume \(3, 12, 6\) is too small for the network: its slices along "
        r"axis 2 are 3 x 12 voxels, at least 4 x 4",
        "slices are resized to the network's input so nothing crashed, but a 1-3 voxel "
        "wide slice is a line, not an image; it used to train silently",
    ),
    BadInput(
        "cli-predict-too-small",
        "cli",
        "predict on a (12, 2, 6) volume",
        predict(image=np.ones((12, 2, 6), np.float32)),
        CliFailure,
        r"volume \(12, 2, 6\) is too small for the network",
    ),
    BadInput(
        "cli-class-absent",
        "cli",
        "--classes a,b but only class 1 painted",
        train("--classes", "a,b", labels=CLASS_1_ONLY),
        None,
        r"warning: class 'b' \(2\) appears on no annotated slice",
        "not refused: a class can be named before it is painted (the widget asks "
        "for all names first), and keeping the class set lets the next run warm-start",
    ),
    BadInput(
        "cli-only-background",
        "cli",
        "a single class present: the annotated slices (1, 2) hold only background",
        train("--annotated-slices", "1,2", labels=NO_LABELS),
        None,
        r"warning: the annotated slices hold only background \(0\)",
        "slices marked annotated-but-empty are a valid annotation (a project may "
        "add structures later), but a model trained on them predicts nothing",
    ),
    BadInput(
        "cli-no-background",
        "cli",
        "every annotated voxel is class 1",
        train("--annotated-slices", "2", labels=np.ones(SHAPE, np.uint8)),
        None,
        r"warning: the annotated slices hold no background \(0\) voxel",
        "the model cannot learn where the class ends",
    ),
    BadInput(
        "cli-every-slice-annotated",
        "cli",
        "labels on every slice, method unet",
        train("--method", "unet", labels=_all_slices()),
        None,
        "",
        "a fully labelled volume is ordinary supervised training",
    ),
    BadInput(
        "cli-every-slice-annotated-ssl",
        "cli",
        "labels on every slice, method ssl",
        train("--method", "ssl", labels=_all_slices()),
        None,
        r"warning: every slice is annotated, so the semi-supervised teachers have nothing",
        "the run is valid but the chosen method cannot do what it is for",
    ),
    BadInput(
        "cli-out-parent-is-file",
        "cli",
        "train --out taken/model where taken is a file",
        _file_then(train(out="taken/model")),
        CliFailure,
        r"--out .*taken/model: .*taken is a file, not a folder",
        "an unusable output folder, made real: its parent is a regular file",
    ),
    BadInput(
        "cli-out-is-file",
        "cli",
        "predict --out taken where taken is a file",
        _file_then(predict(out="taken")),
        CliFailure,
        r"--out .*taken is a file; a folder is needed",
    ),
    BadInput(
        "cli-out-holds-other-files",
        "cli",
        "train --out into a folder of other files",
        _busy_folder(train()),
        CliFailure,
        r"--out .*model is a folder holding other files and no model\.json",
        "saving a model replaces its folder: this would have deleted notes.txt",
    ),
    BadInput(
        "cli-train-read-only-out",
        "cli",
        "train --out in a read-only folder",
        _read_only(train()),
        CliFailure,
        r"cannot write the model there.*Permission denied",
        "simulated (we run as root): tempfile.mkdtemp raises PermissionError; the model "
        "is trained, then nothing is written",
    ),
    BadInput(
        "cli-predict-read-only-out",
        "cli",
        "predict --out a read-only folder",
        _read_only(predict(), existing="results"),
        CliFailure,
        r"results: cannot write there \(Permission denied\)",
        "simulated (we run as root): tempfile.mkdtemp raises PermissionError",
    ),
    BadInput(
        "cli-model-other-architecture",
        "cli",
        "predict with a model of another shape",
        predict(change_model=_claim_channels),
        CliFailure,
        r"weights do not fit the architecture in model\.json",
    ),
    BadInput(
        "cli-init-other-architecture",
        "cli",
        "train --init with a model of other U-Net channels",
        lambda f: train("--init", model_dir(f, channels=(2, 4)), out="new_model")(f),
        CliFailure,
        r"cannot warm-start from the model .*model: it has U-Net channels \[2, 4\]; this run "
        r"has \[4, 8\]$",
        "used to end in a ValueError traceback from train_model",
    ),
    BadInput(
        "cli-model-missing",
        "cli",
        "predict with a folder that is not a model",
        lambda f: cli_trigger("predict", image_file(f), "--model", f, "--out", f / "res"),
        CliFailure,
        r"not a napari-ssseg model folder",
    ),
    BadInput(
        "cli-checkpoint-wrong-hash",
        "cli",
        "train --method sc-sam with a foundation.checkpoint of other bytes",
        _sam_bad_checkpoint,
        CliFailure,
        r"lite_medsam\.pth: SHA-256 mismatch for litemedsam",
    ),
    BadInput(
        "cli-config-unknown-key",
        "cli",
        "--config with learning_rate (not a setting)",
        train(settings={"learning_rate": 0.1}),
        CliFailure,
        r"unknown training setting\(s\): learning_rate",
    ),
    BadInput(
        "cli-config-wrong-type",
        "cli",
        '--config with batch.size "4"',
        train(settings={"batch": {"size": "4"}}),
        CliFailure,
        r"training setting batch\.size must be a whole number, not '4' \(str\)",
        "used to say only: '<' not supported between instances of 'str' and 'int'",
    ),
    BadInput(
        "cli-config-not-json",
        "cli",
        "--config file that is not JSON",
        _bad_settings_file("max_iters = 3"),
        CliFailure,
        r"settings\.json: cannot read the training settings",
    ),
    BadInput(
        "cli-config-not-object",
        "cli",
        "--config file holding a JSON list",
        _bad_settings_file("[1, 2]"),
        CliFailure,
        r"settings\.json: training settings must be a JSON object",
    ),
    BadInput(
        "cli-bench-config-method",
        "cli",
        "bench --config file naming a method (the methods are --methods)",
        _bench_settings_naming_a_method,
        CliFailure,
        r"settings\.json: method is given by --methods in a benchmark",
    ),
]


# --------------------------------------------------------------------------- plugin


def _session(
    image: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    classes: tuple[str, ...] = ("a", "b"),
):
    from napari_ssseg.io.volume import Volume
    from napari_ssseg.widgets.session import AnnotationSession

    default_image, default_labels = tiny_case()
    image = default_image if image is None else image
    labels = default_labels if labels is None else labels
    volume = Volume(image, SPACING_AFFINE, name="scan")
    return AnnotationSession(volume, np.array(labels), classes)


def _job(session_args: dict, config: dict | None = None, then: str = "project") -> Callable:
    """A builder making the session's training job, then ``check()`` it or build its
    ``project()`` (what the background run does first) and return the project's warnings."""

    from napari_ssseg.settings import TrainConfig

    def build(folder: Path) -> Callable[[], Any]:
        def run() -> Any:
            # The settings as the dock makes them: its controls' with the overrides merged in.
            settings = TrainConfig.from_dict(merged(FAST, config or {}))
            job = _session(**session_args).job(settings, folder / "model")
            if then == "check":
                return job.check()
            return Warnings(job.project().warnings())

        return run

    return build


def plugin_reader(make: Callable[[Path], Path]) -> Callable:
    from napari_ssseg import napari_io

    def build(folder: Path) -> Callable[[], Any]:
        path = str(make(folder))
        return lambda: napari_io.get_reader(path)(path)

    return build


def plugin_writer(
    data: np.ndarray,
    meta: dict | None = None,
    target: str = "out.nii.gz",
    prepare: Callable[[Path], None] | None = None,
) -> Callable:
    from napari_ssseg import napari_io

    def build(folder: Path) -> Callable[[], Any]:
        if prepare is not None:
            prepare(folder)
        metadata = meta if meta is not None else {"metadata": {"ssseg_affine": SPACING_AFFINE}}
        return lambda: napari_io.write_labels_layer(str(folder / target), data, metadata)

    return build


def _declines(folder: Path) -> Callable[[], Any]:
    from napari_ssseg import napari_io

    path = folder / "photo.png"
    path.write_bytes(b"\x89PNG\r\n")

    def run() -> None:
        if napari_io.get_reader(str(path)) is not None:
            raise AssertionError("the NIfTI reader claimed a PNG file")

    return run


def _mark(index: int) -> Callable:
    return lambda folder: lambda: _session().toggle_empty_mark(index)


NAN_IMAGE = tiny_case()[0].copy()
NAN_IMAGE[2, 2, 2] = np.nan
LAYER = np.transpose(tiny_case()[1], (2, 1, 0))  # (Z, Y, X) as napari holds it
SINGULAR = np.diag([1.0, 1.0, 0.0, 1.0])

PLUGIN_CASES = [
    BadInput(
        "plugin-reader-not-nifti",
        "plugin",
        "File > Open on a text file named .nii.gz",
        plugin_reader(_text),
        InputError,
        r"notes\.nii\.gz is not a readable NIfTI file",
    ),
    BadInput(
        "plugin-reader-4d",
        "plugin",
        "File > Open on a 4-D image",
        plugin_reader(lambda f: nifti(f / "t.nii.gz", np.zeros((*SHAPE, 3), np.float32))),
        InputError,
        r"t\.nii\.gz is a 4-D image of shape \(12, 10, 6, 3\)",
    ),
    BadInput(
        "plugin-reader-nan",
        "plugin",
        "File > Open on an image with NaN voxels",
        plugin_reader(_nan_voxels),
        InputError,
        r"nan\.nii\.gz has 4 non-finite voxels",
    ),
    BadInput(
        "plugin-reader-declines-png",
        "plugin",
        "File > Open on a PNG",
        _declines,
        None,
        "",
        "by declining: get_reader returns None so napari asks another reader",
    ),
    BadInput(
        "plugin-writer-2d",
        "plugin",
        "saving a 2-D labels layer",
        plugin_writer(np.zeros((4, 4), np.uint8)),
        InputError,
        r"layer data has shape \(4, 4\); a 3-D \(Z, Y, X\) array is needed",
    ),
    BadInput(
        "plugin-writer-float",
        "plugin",
        "saving labels holding 0.5",
        plugin_writer(np.full(LAYER.shape, 0.5)),
        InputError,
        r"out\.nii\.gz: labels to write hold non-integer values",
    ),
    BadInput(
        "plugin-writer-negative",
        "plugin",
        "saving labels holding -1",
        plugin_writer(LAYER.astype(np.int16) - 1),
        InputError,
        r"out\.nii\.gz: labels to write must lie in 0\.\.32767, got -1\.\.1",
    ),
    BadInput(
        "plugin-writer-complex",
        "plugin",
        "saving a complex-valued layer",
        plugin_writer(LAYER.astype(np.complex64)),
        InputError,
        r"cannot write labels of dtype complex64",
    ),
    BadInput(
        "plugin-writer-boolean",
        "plugin",
        "saving a boolean mask layer",
        plugin_writer(LAYER > 0),
        None,
        "",
        "a boolean mask is a one-class label map, written as uint8 0/1",
    ),
    BadInput(
        "plugin-writer-parent-is-file",
        "plugin",
        "saving into taken/out.nii.gz, taken a file",
        plugin_writer(
            LAYER, target="taken/out.nii.gz", prepare=lambda f: (f / "taken").write_text("file\n")
        ),
        InputError,
        r"taken/out\.nii\.gz: .*taken is a file, not a folder",
        "was reported as 'the output folder ... does not exist'",
    ),
    BadInput(
        "plugin-writer-singular-affine",
        "plugin",
        "a layer whose ssseg_affine is singular",
        plugin_writer(LAYER, meta={"metadata": {"ssseg_affine": SINGULAR}}),
        InputError,
        r"ssseg_affine is singular",
        "used to write a file that our reader then refuses",
    ),
    BadInput(
        "plugin-labels-other-grid",
        "plugin",
        "a labels layer of another grid",
        lambda f: lambda: _session(labels=np.zeros((12, 10, 5), np.uint8)),
        InputError,
        r"scan: the labels layer grid \(12, 10, 5\) differs from the image "
        r"grid \(12, 10, 6\)",
    ),
    BadInput(
        "plugin-mark-out-of-range",
        "plugin",
        "marking slice 9 of 6 annotated",
        _mark(9),
        AnnotationError,
        r"slice 9 is out of range; axis 2 has slices 0\.\.5",
    ),
    BadInput(
        "plugin-no-annotated-slice",
        "plugin",
        "Train with nothing painted",
        _job({"labels": NO_LABELS}, then="check"),
        InputError,
        r"no annotated slice",
    ),
    BadInput(
        "plugin-labels-outside-classes",
        "plugin",
        "a painted 7 with classes a, b",
        _job({"labels": OUT_OF_SET}),
        AnnotationError,
        r"scan: label values \[7\] are outside the class set 0\.\.2 \(a, b\)",
    ),
    BadInput(
        "plugin-nan-image",
        "plugin",
        "an image layer with a NaN voxel",
        _job({"image": NAN_IMAGE}),
        AnnotationError,
        r"scan: the image holds 1 non-finite \(NaN or Inf\) voxels",
        "the plugin's image may come from another reader; it used to train on NaN",
    ),
    BadInput(
        "plugin-volume-too-small",
        "plugin",
        "a (2, 10, 6) image: 2 x 10 voxel slices",
        _job({"image": np.ones((2, 10, 6), np.float32), "labels": np.ones((2, 10, 6), np.uint8)}),
        AnnotationError,
        r"scan: volume \(2, 10, 6\) is too small for the network",
    ),
    BadInput(
        "plugin-class-absent",
        "plugin",
        "classes a, b but only class 1 painted",
        _job({"labels": CLASS_1_ONLY}),
        None,
        r"class 'b' \(2\) appears on no annotated slice",
        "warned (Project.warnings); the dock widget does not show it yet",
    ),
    BadInput(
        "plugin-bad-setting",
        "plugin",
        "a config override with an unknown key",
        _job({}, {"epochs": 3}, then="check"),
        SsSegError,
        r"unknown training setting\(s\): epochs",
    ),
]


# --------------------------------------------------------------------------- config


def settings(**values: Any) -> Callable:
    return raw_settings(values)


def raw_settings(values: Any) -> Callable:
    """A builder passing ``values`` (JSON-like, any type) to ``TrainConfig.from_dict``."""
    from napari_ssseg.settings import TrainConfig

    return lambda folder: lambda: TrainConfig.from_dict(values)


CONFIG_CASES = [
    BadInput(
        "config-unknown-key",
        "config",
        "student.learning_rate instead of student.lr",
        settings(student={"learning_rate": 0.1}),
        SsSegError,
        r"unknown training setting\(s\): student\.learning_rate$",
    ),
    BadInput(
        "config-unknown-section",
        "config",
        "a section that does not exist (optimiser)",
        settings(optimiser={"lr": 0.1}),
        SsSegError,
        r"unknown training setting\(s\): optimiser$",
    ),
    BadInput(
        "config-section-not-object",
        "config",
        "budget 100 (a number for a section)",
        settings(budget=100),
        SsSegError,
        r"settings budget must be an object, not 100$",
    ),
    BadInput(
        "config-string-for-int",
        "config",
        'budget.max_iters "100"',
        settings(budget={"max_iters": "100"}),
        SsSegError,
        r"training setting budget\.max_iters must be a whole number, not '100' \(str\)",
    ),
    BadInput(
        "config-bool-for-int",
        "config",
        "budget.max_iters true",
        settings(budget={"max_iters": True}),
        SsSegError,
        r"budget\.max_iters must be a whole number, not True \(bool\)",
    ),
    BadInput(
        "config-fraction-for-int",
        "config",
        "batch.size 2.5",
        settings(batch={"size": 2.5}),
        SsSegError,
        r"batch\.size must be a whole number, not 2\.5 \(float\)",
    ),
    BadInput(
        "config-zero-iters",
        "config",
        "budget.max_iters 0",
        settings(budget={"max_iters": 0}),
        SsSegError,
        r"budget\.max_iters must be at least 1$",
    ),
    BadInput(
        "config-nan",
        "config",
        "student.lr NaN",
        settings(student={"lr": float("nan")}),
        SsSegError,
        r"training setting student\.lr must be a finite number, not nan",
    ),
    BadInput(
        "config-negative-lr",
        "config",
        "student.lr -1",
        settings(student={"lr": -1}),
        SsSegError,
        r"student\.lr must be a positive number, not -1",
    ),
    BadInput(
        "config-refine-agreement-above-one",
        "config",
        "prediction.refine_agreement 1.5",
        settings(prediction={"refine_agreement": 1.5}),
        SsSegError,
        r"prediction\.refine_agreement must lie in \[0, 1\], not 1\.5",
    ),
    BadInput(
        "config-refine-unknown-mode",
        "config",
        'prediction.refine "always"',
        settings(prediction={"refine": "always"}),
        SsSegError,
        r"prediction\.refine must be one of off, auto, sam \(or null\), not 'always'",
    ),
    BadInput(
        "config-removed-setting",
        "config",
        "refine_min_area 0.1 (a setting of an earlier version, since removed)",
        settings(refine_min_area=0.1),
        SsSegError,
        r"training setting refine_min_area was removed \(it lost on the benchmarks; "
        r"docs/method\.md\); leave it out",
        "settings files of earlier versions still load: a removed setting at the value that "
        "left its part off is dropped, any other value is refused rather than ignored",
    ),
    BadInput(
        "config-string-for-bool",
        "config",
        'prediction.keep_connected "yes"',
        settings(prediction={"keep_connected": "yes"}),
        SsSegError,
        r"prediction\.keep_connected must be true or false, not 'yes'",
    ),
    BadInput(
        "config-scalar-for-list",
        "config",
        "student.channels 16",
        settings(student={"channels": 16}),
        SsSegError,
        r"student\.channels must be a list of whole numbers, not 16 \(int\)",
    ),
    BadInput(
        "config-one-level",
        "config",
        "student.channels [16]",
        settings(student={"channels": [16]}),
        SsSegError,
        r"student\.channels \[16\] must list at least 2 positive feature counts",
    ),
    BadInput(
        "config-intensity-not-object",
        "config",
        'student.intensity "ct"',
        settings(student={"intensity": "ct"}),
        SsSegError,
        r"settings student\.intensity must be an object, not 'ct'",
        "used to end in an AttributeError traceback",
    ),
    BadInput(
        "config-intensity-unknown-key",
        "config",
        'student.intensity {"window": ...}',
        settings(student={"intensity": {"window": [0, 1]}}),
        SsSegError,
        r"unknown training setting\(s\): student\.intensity\.window",
    ),
    BadInput(
        "config-ct-window-reversed",
        "config",
        "student.intensity.ct_window [300, 100]",
        settings(student={"intensity": {"ct_window": [300, 100]}}),
        SsSegError,
        r"ct_window 300\.\.100 must go from low to high",
    ),
    BadInput(
        "config-unknown-method",
        "config",
        'method "mean-teacher"',
        settings(method="mean-teacher"),
        SsSegError,
        r"unknown method 'mean-teacher'",
    ),
    BadInput(
        "config-unknown-teacher",
        "config",
        'teachers ["mean", "flow"] (flow was removed)',
        settings(teachers=["mean", "flow"]),
        SsSegError,
        r"unknown teacher\(s\) flow; choose from mean, shape, self, sam, fused",
    ),
    BadInput(
        "config-dropout",
        "config",
        "student.dropout 1.5",
        settings(student={"dropout": 1.5}),
        SsSegError,
        r"student\.dropout must lie in \[0, 1\), not 1\.5",
    ),
    BadInput(
        "config-zero-passes",
        "config",
        "prediction.passes 0",
        settings(prediction={"passes": 0}),
        SsSegError,
        r"prediction\.passes must be at least 1",
    ),
    BadInput(
        "config-fused-members",
        "config",
        'fused.members ["shape", "fused"]',
        settings(fused={"members": ["shape", "fused"]}),
        SsSegError,
        r"fused\.members \['shape', 'fused'\] must name at least one teacher of mean, shape, "
        r"self, sam",
    ),
    BadInput(
        "config-sam-without-checkpoint",
        "config",
        "method sc-sam with foundation model sam_vit_b and no checkpoint",
        settings(method="sc-sam", foundation={"model": "sam_vit_b"}),
        SsSegError,
        r"sc-sam with foundation model sam_vit_b needs foundation\.checkpoint",
        "used to fail inside training with a TypeError on Path(None)",
    ),
    BadInput(
        "config-not-an-object",
        "config",
        "settings given as a list",
        raw_settings([1, 2]),
        SsSegError,
        r"training settings must be an object, not list",
    ),
]

CASES: list[BadInput] = READER_CASES + CLI_CASES + PLUGIN_CASES + CONFIG_CASES
