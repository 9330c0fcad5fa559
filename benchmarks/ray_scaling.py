"""Ray back-end scaling on this machine: training samples/s and folder prediction wall time
with 1 and 2 workers, on a private 2-CPU Ray cluster.

    python benchmarks/ray_scaling.py --data ../shared/data/LA

Runs itself inside a loopback-only network namespace (``unshare -n``, needs root) unless it
already is in one, so Ray cannot reach any address but 127.0.0.1. Training: one LA volume
with k revealed slices, ``--steps`` steps of ``unet`` per run, data-parallel with Ray Train
(batch 4 per worker, so 2 workers see 8 samples per step); samples/s counts the samples of
the training loop (Ray's start-up is in the job's wall time). Prediction: the first
``--volumes`` images of the split, ``napari-ssseg predict --data`` with 1 and 2 workers
(one Ray task per volume, 8 MC-dropout passes). Writes ``benchmarks/results/ray_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def in_loopback_namespace() -> bool:
    """Whether this network namespace holds only ``lo`` (/proc/net/dev is per namespace)."""
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return [line.split(":")[0].strip() for line in lines] == ["lo"]


def reexec_in_namespace() -> int:
    """Run this script again in a new network namespace holding only loopback."""
    command = " ".join([sys.executable, *map(_quote, sys.argv)])
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0"}
    script = f"ip link set lo up 2>/dev/null || true; exec {command}"
    return subprocess.run(["unshare", "-n", "sh", "-c", script], env=env).returncode


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def revealed_volume(case, k: int):
    from napari_ssseg.annotation import default_slice_axis
    from napari_ssseg.bench.protocols import reveal_slices, sparse_slice_indices
    from napari_ssseg.io.nifti import read_labels, read_volume
    from napari_ssseg.runner.job import VolumeInput

    image = read_volume(case.image)
    labels = read_labels(case.label, like=image)
    axis = default_slice_axis(image.spacing)
    annotated = sparse_slice_indices(labels, axis, k)
    return VolumeInput(
        labels=reveal_slices(labels, annotated, axis),
        annotated_slices=list(annotated),
        axis=axis,
        image=image.data,
        affine=image.affine,
        name=image.name,
        predict=False,
    )


def train_run(volume, class_names, workers: int, steps: int, model_dir: Path) -> dict:
    from napari_ssseg.model_store import load_model
    from napari_ssseg.runner.job import TrainingJob
    from napari_ssseg.runner.ray_runner import RayRunner

    config = {"method": "unet", "max_iters": steps, "seed": 0, "device": "cpu"}
    job = TrainingJob([volume], class_names, config, model_dir, threads=1)
    runner = RayRunner(workers=workers)
    start = time.monotonic()
    runner.start(job)
    status = runner.wait(timeout=1800)
    wall = time.monotonic() - start
    message = runner.message
    runner.close()
    if status.value != "done":
        raise SystemExit(f"training with {workers} worker(s) ended {status.value}: {message}")
    summary = load_model(model_dir).summary
    samples = summary["iterations"] * 4 * workers
    return {
        "workers": workers,
        "steps": summary["iterations"],
        "loop_seconds": summary["seconds"],
        "job_wall_seconds": round(wall, 1),
        "samples_per_second": round(samples / summary["seconds"], 2),
        "steps_per_second": round(summary["iterations"] / summary["seconds"], 2),
    }


def local_train_run(volume, class_names, steps: int) -> dict:
    """The same training in this process (no Ray), one torch thread: the reference."""
    import torch

    from napari_ssseg.runner.job import TrainingJob
    from napari_ssseg.tasks.train import train_model

    torch.set_num_threads(1)
    config = {"method": "unet", "max_iters": steps, "seed": 0, "device": "cpu"}
    job = TrainingJob([volume], class_names, config, Path("unused"))
    model = train_model(job.project(), job.train_config())
    seconds = model.summary["seconds"]
    return {
        "workers": "local (no Ray)",
        "steps": model.summary["iterations"],
        "loop_seconds": seconds,
        "job_wall_seconds": None,
        "samples_per_second": round(model.summary["iterations"] * 4 / seconds, 2),
        "steps_per_second": round(model.summary["iterations"] / seconds, 2),
    }


def predict_run(model_dir: Path, folder: Path, workers: int, out: Path) -> dict:
    from napari_ssseg.runner.ray_predict import predict_folder

    start = time.monotonic()
    written = predict_folder(model_dir, folder, out, workers=workers, address="auto")
    wall = time.monotonic() - start
    return {"workers": workers, "volumes": len(written), "wall_seconds": round(wall, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "LA")
    parser.add_argument("--split", default="train")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--volumes", type=int, default=10)
    parser.add_argument("--json", type=Path, default=RESULTS / "ray_scaling.json")
    args = parser.parse_args()
    if not in_loopback_namespace():
        return reexec_in_namespace()
    sys.path.insert(0, str(ROOT))

    from napari_ssseg.io.msd import read_msd
    from napari_ssseg.runner.ray_cluster import ClusterSettings, connect, disconnect

    dataset = read_msd(args.data)
    cases = dataset.split(args.split)
    class_names = [dataset.labels[i] for i in sorted(dataset.labels) if i > 0]
    load_before = os.getloadavg()
    connect(ClusterSettings(None, local_cpus=2))
    volume = revealed_volume(cases[0], args.k)
    training, prediction = [], []
    with tempfile.TemporaryDirectory(prefix="ssseg-ray-bench-") as tmp:
        tmp_dir = Path(tmp)
        training.append(local_train_run(volume, class_names, args.steps))
        for workers in (1, 2):
            training.append(
                train_run(volume, class_names, workers, args.steps, tmp_dir / f"model_{workers}")
            )
            print(training[-1], file=sys.stderr, flush=True)
        images = tmp_dir / "images"
        images.mkdir()
        for case in cases[: args.volumes]:
            (images / case.image.name).symlink_to(case.image.resolve())
        for workers in (1, 2):
            prediction.append(
                predict_run(tmp_dir / "model_1", images, workers, tmp_dir / f"out_{workers}")
            )
            print(prediction[-1], file=sys.stderr, flush=True)
    disconnect()
    report = {
        "what": "Ray back-end: training samples/s and folder prediction wall time",
        "data": f"{dataset.name}: {cases[0].name} (training), first {args.volumes} of "
        f"{args.split} (prediction)",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs shared with other work, "
        "no GPU; private Ray cluster of 2 CPUs in a loopback-only network namespace",
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "training": training,
        "prediction": prediction,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(table(report))
    return 0


def table(report: dict) -> str:
    lines = [
        "| training workers | steps | samples / s | steps / s | loop s | job wall s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["training"]:
        wall = "" if row["job_wall_seconds"] is None else row["job_wall_seconds"]
        lines.append(
            f"| {row['workers']} | {row['steps']} | {row['samples_per_second']} | "
            f"{row['steps_per_second']} | {row['loop_seconds']} | {wall} |"
        )
    lines += ["", "| prediction workers | volumes | wall s |", "| --- | --- | --- |"]
    for row in report["prediction"]:
        lines.append(f"| {row['workers']} | {row['volumes']} | {row['wall_seconds']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
