"""Seconds from starting a training job (the widget's Train click) to its results, headless.

Runs the same background runner the napari widget uses (`napari_ssseg.runner.LocalRunner`)
on one volume with k revealed slices, with the widget's default settings (method unet, 60 s
budget) unless told otherwise, and writes JSON. The widget adds the time to build two napari
layers (about 1 s on the CT sample) on top of this. The foundation model's embedding cache
starts empty (a folder of the run's own), so a first run pays for every embedding it needs.

``--retrain S``: then a second job on the same volume, warm-started from the first model with
a budget of S seconds and the now filled embedding cache (the Retrain click after
corrections). Each run's Dice on the unannotated slices is reported with its seconds.

``--prepare``: first an embedding job on the volume (what the dock runs while the user
labels, ``TrainingJob.task == "embed"``), timed on its own; the runs then start with its
embeddings in the cache.

    python benchmarks/click_to_result.py --data ../shared/data/LA --case 0 --k 5
    python benchmarks/click_to_result.py --data ../shared/data/LA --method uncol --budget 100 \
        --retrain 45 --json benchmarks/results/la_volume_timing_uncol.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from napari_ssseg.annotation import default_slice_axis
from napari_ssseg.bench.metrics import dice_per_class, mean_dice
from napari_ssseg.bench.protocols import reveal_slices, sparse_slice_indices
from napari_ssseg.io.msd import read_msd
from napari_ssseg.io.nifti import read_labels, read_volume
from napari_ssseg.runner import LocalRunner, RunStatus
from napari_ssseg.runner.job import TrainingJob, VolumeInput

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--case", type=int, default=0)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--method", default="unet")
    parser.add_argument("--retrain", type=float, default=None, help="retrain budget (s)")
    parser.add_argument("--config", default="{}", help="more training settings (JSON)")
    parser.add_argument(
        "--prepare", action="store_true", help="embed the volume first, as while labelling"
    )
    parser.add_argument("--json", type=Path, default=RESULTS / "click_to_result.json")
    args = parser.parse_args()

    dataset = read_msd(args.data)
    case = dataset.split(args.split)[args.case]
    image = read_volume(case.image)
    reference = read_labels(case.label, like=image)
    axis = default_slice_axis(image.spacing)
    annotated = sparse_slice_indices(reference, axis, args.k)
    labels = reveal_slices(reference, annotated, axis)
    classes = [dataset.labels[i] for i in sorted(dataset.labels) if i > 0]
    num_classes = len(classes)
    runs = []
    with tempfile.TemporaryDirectory() as work:
        config = {
            "method": args.method,
            "embedding_cache": str(Path(work) / "embeddings"),
            **json.loads(args.config),
        }
        budgets = [("first", args.budget)] + ([("retrain", args.retrain)] if args.retrain else [])

        def volume() -> VolumeInput:
            return VolumeInput(
                labels=labels,
                annotated_slices=annotated,
                axis=axis,
                image=image.data,
                affine=image.affine,
                name=case.name,
            )

        if args.prepare:
            job = TrainingJob([volume()], classes, config, Path(work) / "model", task="embed")
            runner = LocalRunner(work_root=Path(work) / "embedding")
            start = time.monotonic()
            runner.start(job)
            status = runner.wait(timeout=3600)
            runner.close()
            if status is not RunStatus.DONE:
                raise SystemExit(f"embedding job ended {status.value}: {runner.message}")
            runs.append(
                {
                    "run": "embed while labelling",
                    "seconds": round(time.monotonic() - start, 1),
                    "message": runner.message,
                }
            )
            print(json.dumps(runs[-1]), flush=True)
        for i, (kind, budget) in enumerate(budgets):
            job = TrainingJob(
                volumes=[volume()],
                class_names=classes,
                config={**config, "max_time": budget},
                model_dir=Path(work) / f"model{i}",
                init_model_dir=Path(work) / f"model{i - 1}" if i else None,
            )
            runner = LocalRunner(work_root=Path(work) / f"runs{i}")
            start = time.monotonic()
            runner.start(job)
            status = runner.wait(timeout=budget * 10)
            seconds = time.monotonic() - start
            if status is not RunStatus.DONE:
                raise SystemExit(f"{kind} run ended {status.value}: {runner.message}")
            result = runner.result()
            runner.close()
            predicted = result.volumes[0].prediction.labels
            dice = mean_dice(
                dice_per_class(predicted, reference, num_classes, annotated, axis=axis)
            )
            runs.append(
                {
                    "run": kind,
                    "budget_s": budget,
                    "click_to_result_s": round(seconds, 1),
                    "steps": result.summary.get("iterations"),
                    "dice_unannotated": round(float(dice), 4),
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    trained = [run for run in runs if "steps" in run]
    row = {
        "case": case.name,
        "shape": list(image.shape),
        "k": args.k,
        "method": args.method,
        "settings": json.loads(args.config),
        "budget_s": args.budget,
        "prepared": args.prepare,
        "click_to_result_s": trained[0]["click_to_result_s"],
        "steps": trained[0]["steps"],
        "runs": runs,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(json.dumps(row, indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
