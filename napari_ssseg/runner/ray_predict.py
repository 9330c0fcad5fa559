"""Predict every image of a folder, one volume per Ray task, streaming from disk.

Only ``workers`` volumes are on their way at any time: this process reads an image file,
ships its bytes through Ray's object store to a task (the cluster's nodes need not see this
machine's files), and writes the three outputs the task sends back before reading more. The
model is put into the object store once. Without a cluster and with one worker the folder is
predicted here, one volume after the other, with the same per-volume function.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_ssseg.errors import InputError, SsSegError
from napari_ssseg.io.volume import strip_nifti_suffix
from napari_ssseg.runner.ray_cluster import ClusterSettings, connect, first_line, import_ray

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def list_images(folder: str | Path) -> list[Path]:
    """The NIfTI images of ``folder`` sorted by name; an MSD/nnU-Net dataset folder gives
    the images of its ``imagesTr`` (and ``imagesTs``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder of images")
    if (folder / "dataset.json").is_file():
        subfolders = [folder / name for name in ("imagesTr", "imagesTs")]
        return [p for sub in subfolders if sub.is_dir() for p in list_images(sub)]
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))
    if not images:
        raise InputError(f"{folder} holds no .nii or .nii.gz image")
    return images


def predict_file(
    model: Any, image_path: Path, out_dir: Path, passes: int | None, device: str | None
) -> dict[str, Path]:
    """Predict one NIfTI file with ``model`` and write its outputs into ``out_dir``."""
    from napari_ssseg.io.nifti import read_volume
    from napari_ssseg.tasks.predict import predict_to_folder

    image = read_volume(image_path)
    return predict_to_folder(model, image, out_dir, passes=passes, device=device)


def _predict_shipped(
    model: Any, source: str, data: bytes, passes: int | None, device: str | None
) -> dict[str, tuple[str, bytes]]:
    """A Ray task: predict the image ``source`` (a path on the client) given as file bytes;
    the outputs come back as bytes, by kind (``segmentation``, ``uncertainty``, ``slices``):
    (file name, content). Errors name ``source``, not the task's temporary copy."""
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="ssseg-predict-") as tmp:
        image_path = Path(tmp) / Path(source).name
        image_path.write_bytes(data)
        try:
            paths = predict_file(model, image_path, Path(tmp) / "out", passes, device)
        except SsSegError as error:
            raise type(error)(str(error).replace(str(image_path), source)) from None
        return {kind: (path.name, path.read_bytes()) for kind, path in paths.items()}


def _write_outputs(outputs: dict[str, tuple[str, bytes]], out_dir: Path) -> dict[str, Path]:
    """Write one volume's outputs into ``out_dir``: staged first, then moved into place."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ssseg-", dir=out_dir))
    try:
        for name, content in outputs.values():
            (staging / name).write_bytes(content)
        final = {kind: out_dir / name for kind, (name, _) in outputs.items()}
        for name, _ in outputs.values():
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def predict_folder(
    model_dir: str | Path,
    folder: str | Path,
    out_dir: str | Path,
    workers: int = 1,
    address: str | None = None,
    passes: int | None = None,
    device: str | None = None,
    on_volume: Callable[[str, dict[str, Path]], None] | None = None,
    skip_bad: bool = False,
) -> dict[str, dict[str, Path]]:
    """Predict every image of ``folder`` into ``out_dir``; returns the outputs by volume.

    With ``address`` (a Ray cluster) or ``workers`` > 1 (a private local cluster of that many
    CPUs, or the connected one) the volumes go to ``workers`` parallel Ray tasks, one CPU
    each (one GPU each with ``device="cuda"``). A volume that fails ends the run with an
    :class:`InputError` naming it, unless ``skip_bad``: then the others are still predicted
    and the failures are raised together at the end.
    """
    from napari_ssseg.model_store import load_model

    if workers < 1:
        raise SsSegError(f"--workers must be at least 1, not {workers}")
    images = list_images(folder)
    model = load_model(model_dir)
    out_dir = Path(out_dir)
    written: dict[str, dict[str, Path]] = {}
    failures: list[str] = []

    def done(name: str, paths: dict[str, Path]) -> None:
        written[name] = paths
        if on_volume is not None:
            on_volume(name, paths)

    def failed(path: Path, message: str) -> None:
        failures.append(message if str(path) in message else f"{path}: {message}")
        if not skip_bad:
            raise InputError(failures[-1])

    if address is None and workers == 1:
        for path in images:
            try:
                done(
                    strip_nifti_suffix(path.name),
                    predict_file(model, path, out_dir, passes, device),
                )
            except SsSegError as error:
                failed(path, str(error))
    else:
        owns = connect(ClusterSettings(address, local_cpus=workers))
        try:
            _predict_on_ray(model, images, out_dir, workers, passes, device, done, failed)
        finally:
            if owns:
                import_ray().shutdown()
    if failures:
        raise InputError(f"{len(failures)} volume(s) failed: " + "; ".join(failures))
    return written


def _predict_on_ray(
    model: Any,
    images: list[Path],
    out_dir: Path,
    workers: int,
    passes: int | None,
    device: str | None,
    done: Callable[[str, dict[str, Path]], None],
    failed: Callable[[Path, str], None],
) -> None:
    ray = import_ray()
    task = ray.remote(_predict_shipped).options(
        num_cpus=1, num_gpus=1 if device == "cuda" else 0, max_retries=0
    )
    model_ref = ray.put(model)
    queue = list(images)
    running: dict[Any, Path] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                path = queue.pop(0)
                ref = task.remote(model_ref, str(path), path.read_bytes(), passes, device)
                running[ref] = path
            ready, _ = ray.wait(list(running), num_returns=1)
            path = running.pop(ready[0])
            try:
                outputs = ray.get(ready[0])
            except Exception as error:
                failed(path, first_line(error))
                continue
            done(strip_nifti_suffix(path.name), _write_outputs(outputs, out_dir))
    finally:
        for ref in running:
            ray.cancel(ref, force=True)
