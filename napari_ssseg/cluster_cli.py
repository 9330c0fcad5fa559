"""The command line's Ray options: ``--ray-address`` and ``--workers`` on ``train`` and
``predict`` (``predict --data DIR``). Nothing here imports Ray or torch at import time."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_cluster_options(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--ray-address`` and ``--workers`` to a sub-command's parser."""
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="run on this Ray cluster (ray://head:10001, head:6379 or auto); see docs/cluster.md",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help=f"{what} on N Ray workers (more than 1 without --ray-address: a private local "
        "Ray cluster of N CPUs)",
    )


def wants_cluster(args: argparse.Namespace) -> bool:
    """Whether the command runs through Ray."""
    return args.ray_address is not None or args.workers != 1


def check_workers(args: argparse.Namespace) -> None:
    from napari_ssseg.errors import SsSegError

    if args.workers < 1:
        raise SsSegError(f"--workers must be at least 1, not {args.workers}")


def train_on_cluster(
    args: argparse.Namespace,
    project: Any,
    config: Any,
    init_dir: Path | None,
    on_progress: Callable[[Any], None],
) -> dict:
    """Train ``project`` through a :class:`RayRunner`; the model is written to ``args.out``.

    Returns the run summary; ``on_progress`` takes every 10th training progress event,
    Ctrl-C cancels the job.
    """
    from napari_ssseg.errors import SsSegError
    from napari_ssseg.runner.events import ProgressEvent, RunStatus
    from napari_ssseg.runner.job import TrainingJob, VolumeInput
    from napari_ssseg.runner.ray_runner import RayRunner

    check_workers(args)
    volumes = [
        VolumeInput(
            labels=volume.labels,
            annotated_slices=volume.annotated_slices,
            axis=volume.axis,
            image=volume.image.data,
            affine=volume.image.affine,
            name=volume.image.name,
            predict=False,
        )
        for volume in project.volumes
    ]
    job = TrainingJob(volumes, list(project.class_names), config, args.out, init_dir, args.threads)
    runner = RayRunner(address=args.ray_address, workers=args.workers)
    shown = 0
    try:
        runner.start(job)
        while runner.running:
            for event in runner.poll():
                if not (isinstance(event, ProgressEvent) and event.stage == "train"):
                    continue
                if event.iteration >= shown + 10 or event.iteration == 1:
                    shown = event.iteration
                    on_progress(event)
            time.sleep(0.2)
    except KeyboardInterrupt:
        runner.cancel()
        runner.wait(timeout=30)
        raise
    finally:
        status, message = runner.status, runner.message
        summary = runner.result().summary if status is RunStatus.DONE else {}
        runner.close()
    if status is not RunStatus.DONE:
        raise SsSegError(message)
    return summary


def predict_data_folder(args: argparse.Namespace) -> int:
    """``predict --data DIR``: every image of DIR, in parallel with ``--workers``."""
    from napari_ssseg.runner.ray_predict import predict_folder

    check_workers(args)

    def show(name: str, paths: dict[str, Path]) -> None:
        for path in paths.values():
            print(path, flush=True)

    predict_folder(
        args.model,
        args.data,
        args.out,
        workers=args.workers,
        address=args.ray_address,
        passes=args.passes,
        device=args.device,
        on_volume=show,
    )
    return 0
