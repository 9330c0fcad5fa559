"""Seconds from starting a training job (the widget's Train click) to its results, headless.

Runs the same background runner the napari widget uses (`napari_ssseg.runner.LocalRunner`)
on one volume with k revealed slices, with the widget's default settings (method unet, 60 s
budget) unless told otherwise, and writes JSON. The widget adds the time to build two napari
layers (about 1 s on the CT sample) on top of this.

    python benchmarks/click_to_result.py --data ../shared/data/LA --case 0 --k 5
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from napari_ssseg.annotation import default_slice_axis
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
    with tempfile.TemporaryDirectory() as work:
        job = TrainingJob(
            volumes=[
                VolumeInput(
                    labels=labels,
                    annotated_slices=annotated,
                    axis=axis,
                    image=image.data,
                    affine=image.affine,
                    name=case.name,
                )
            ],
            class_names=classes,
            config={"method": args.method, "max_time": args.budget},
            model_dir=Path(work) / "model",
        )
        runner = LocalRunner(work_root=Path(work) / "runs")
        start = time.monotonic()
        runner.start(job)
        status = runner.wait(timeout=args.budget * 10)
        seconds = time.monotonic() - start
        if status is not RunStatus.DONE:
            raise SystemExit(f"run ended {status.value}: {runner.message}")
        result = runner.result()
        runner.close()
    row = {
        "case": case.name,
        "shape": list(image.shape),
        "k": args.k,
        "method": args.method,
        "budget_s": args.budget,
        "click_to_result_s": round(seconds, 1),
        "steps": result.summary.get("iterations"),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(json.dumps(row, indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
