"""Shared fixtures: small synthetic volumes and the location of ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def private_cache_dir(tmp_path_factory):
    """The foundation model's cache (embeddings; downloads) of every test, and of the
    processes tests start, lies in a folder of this session, not the user's."""
    from napari_ssseg.foundation.checkpoints import CACHE_ENV

    patch = pytest.MonkeyPatch()
    patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
    yield
    patch.undo()


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository, or ``$SSSEG_SHARED_DATA``."""
    override = os.environ.get("SSSEG_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def require_shared(name: str) -> Path:
    """The shared data folder ``name``, or skip the test saying why."""
    folder = shared_data_dir() / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: the ACDC/LA data live in ../shared/data beside the repo")
    return folder


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    affine = np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def synthetic_case(shape=(40, 36, 16)) -> tuple[np.ndarray, np.ndarray]:
    """An MR-like image with a bright ellipsoid (label 1) and a smaller blob (label 2)."""
    x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    ellipsoid = ((x - 18) / 10) ** 2 + ((y - 16) / 8) ** 2 + ((z - 8) / 6) ** 2 <= 1
    blob = ((x - 30) / 4) ** 2 + ((y - 28) / 4) ** 2 + ((z - 8) / 4) ** 2 <= 1
    rng = np.random.default_rng(0)
    image = 100 + 20 * rng.standard_normal(shape) + 200 * ellipsoid + 120 * blob
    labels = ellipsoid.astype(np.int16) + 2 * blob.astype(np.int16)
    return image.astype(np.float32), labels


@pytest.fixture
def case_files(tmp_path: Path) -> tuple[Path, Path]:
    """A synthetic image and its labels written as NIfTI (spacing 1, 1, 2: slice axis 2)."""
    image, labels = synthetic_case()
    return (
        write_nifti(tmp_path / "case.nii.gz", image),
        write_nifti(tmp_path / "case_labels.nii.gz", labels.astype(np.uint8)),
    )


TINY_TRAINING = {
    "device": "cpu",
    "student": {"image_size": 32, "channels": [8, 16, 32]},
    "prediction": {"passes": 2, "refine": "off"},
}
"""Settings of a training job that takes seconds (tests of runners, faults, Ray). Without
refinement: ``ssl`` on two classes would otherwise load the foundation model in every job
(the default's refinement has tests of its own, tests/test_sam_refine.py)."""

TINY_CLI_CONFIG = {
    "student": {"image_size": 32, "channels": [8, 16, 32]},
    "batch": {"size": 2, "unlabelled": 1, "target_cache": 4},
    "prediction": {"passes": 2, "refine": "off"},
}
"""A ``--config`` file's settings small enough for a few CPU seconds of train + predict
through the CLI (without refinement, as :data:`TINY_TRAINING`)."""


@pytest.fixture
def echo(monkeypatch):
    """The foundation model replaced, for the run's loader, by the stand-in encoder of
    ``tests/test_feature_losses.py`` (``ImageEchoBackend``: its ``embedded`` counts the
    slices it embedded); one torch thread."""
    import torch

    from napari_ssseg.foundation import loading
    from tests.test_feature_losses import ImageEchoBackend

    torch.set_num_threads(1)
    backend = ImageEchoBackend()
    monkeypatch.setattr(loading, "load_backend", lambda settings: backend)
    return backend


def synthetic_job(model_dir: Path, annotated=(4, 8, 12), probes=(), threads=None, **config):
    """A :class:`TrainingJob` on :func:`synthetic_case` with ``TINY_TRAINING`` settings
    (``config``, settings by section, written over them), saving its model into
    ``model_dir``."""
    from napari_ssseg.runner.job import TrainingJob, VolumeInput
    from napari_ssseg.settings.values import merged

    image, labels = synthetic_case()
    volume = VolumeInput(
        labels=labels,
        annotated_slices=list(annotated),
        axis=2,
        image=image,
        affine=np.diag([1.0, 1.0, 2.0, 1.0]),
        name="case",
        probe_slices=list(probes),
    )
    settings = merged(TINY_TRAINING, config)
    return TrainingJob([volume], ["ellipsoid", "blob"], settings, model_dir, threads=threads)
