"""Peak memory of ``napari-ssseg train`` and ``predict`` on a CT-sized synthetic volume.

Writes a synthetic int16 CT (a body-shaped ellipse of soft tissue in air holding blobs of
different intensity, three of them labelled on a few slices) into a temporary folder, runs the
command line's ``train`` and ``predict`` each in a fresh process, and reads each child's peak
resident memory from ``os.wait4`` (the kernel's high-water mark of that process alone). A
third child that only imports the engine gives the fixed cost (torch, MONAI, ...) every run
pays whatever the volume.

    python benchmarks/load_memory.py                          # 512 x 512 x 400, ~5 minutes
    python benchmarks/load_memory.py --shape 128,128,60 --max-time 5 --json /tmp/small.json

Prints a table and writes ``benchmarks/results/load_memory.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MIB = 1024 * 1024

# (centre as fractions of the (X, Y) extent, radii as fractions, z range as fractions, HU, label)
BLOBS = (
    ((0.38, 0.45), (0.16, 0.12), (0.15, 0.85), 60, 1),  # liver-like, large and long
    ((0.66, 0.42), (0.06, 0.05), (0.30, 0.70), 170, 2),  # kidney-like, brighter
    ((0.55, 0.62), (0.05, 0.04), (0.20, 0.60), -60, 3),  # fat-like, darker than tissue
    ((0.50, 0.75), (0.04, 0.04), (0.00, 1.00), 700, 0),  # spine-like bone, unlabelled
)


def synthetic_ct(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) int16 HU image and int16 labels (classes 1..3), built slice by slice."""
    nx, ny, nz = shape
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(nx) / nx, np.arange(ny) / ny, indexing="ij")
    body = ((x - 0.5) / 0.45) ** 2 + ((y - 0.5) / 0.33) ** 2 <= 1
    image = np.empty(shape, np.int16)
    labels = np.zeros(shape, np.int16)
    for z in range(nz):
        t = z / max(nz - 1, 1)
        hu = np.where(body, 40.0, -1000.0)
        for (cx, cy), (rx, ry), (z0, z1), value, label in BLOBS:
            if not z0 <= t <= z1:
                continue
            # Blobs shrink toward their ends along z, as organs do.
            taper = np.sqrt(max(0.0, 1 - ((t - (z0 + z1) / 2) / ((z1 - z0) / 2 + 1e-6)) ** 2))
            taper = max(taper, 0.3)
            inside = ((x - cx) / (rx * taper)) ** 2 + ((y - cy) / (ry * taper)) ** 2 <= 1
            hu[inside] = value
            if label:
                labels[:, :, z][inside] = label
        hu += rng.normal(0.0, 15.0, size=hu.shape)
        image[:, :, z] = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return image, labels


def annotated_slices(labels: np.ndarray, count: int) -> list[int]:
    """``count`` slices spread evenly over the labelled z range."""
    held = np.flatnonzero(labels.any(axis=(0, 1)))
    picks = np.linspace(held[0], held[-1], count + 2)[1:-1]
    return sorted({int(round(p)) for p in picks})


def write_case(folder: Path, shape: tuple[int, int, int], count: int) -> tuple[Path, Path, list]:
    """Write image and sparse labels (only the annotated slices hold labels) as NIfTI."""
    image, labels = synthetic_ct(shape)
    slices = annotated_slices(labels, count)
    sparse = np.zeros_like(labels)
    sparse[:, :, slices] = labels[:, :, slices]
    del labels
    affine = np.diag([0.8, 0.8, 2.5, 1.0])  # CT-like: thick slices along z (the slice axis)
    image_path = folder / "ct.nii.gz"
    labels_path = folder / "ct_labels.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), str(image_path))
    nib.save(nib.Nifti1Image(sparse.astype(np.uint8), affine), str(labels_path))
    return image_path, labels_path, slices


def run_measured(command: list[str], log: Path) -> dict:
    """Run ``command`` in a child process; its wall time, exit code and peak RSS (MiB)."""
    start = time.perf_counter()
    with open(log, "w") as handle:
        # The engine of this checkout, whatever the current folder.
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        # wait4 reaps this child alone and returns its own resource usage (ru_maxrss in KiB
        # on Linux), unlike RUSAGE_CHILDREN, which is the maximum over every child so far.
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        tail = log.read_text()[-2000:]
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{tail}")
    return {"peak_rss_mib": usage.ru_maxrss / 1024, "seconds": seconds}


def parse_shape(text: str) -> tuple[int, int, int]:
    parts = tuple(int(p) for p in text.split(","))
    if len(parts) != 3 or min(parts) < 8:
        raise argparse.ArgumentTypeError("--shape needs three sizes >= 8, e.g. 512,512,400")
    return parts  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=parse_shape, default=(512, 512, 400))
    parser.add_argument("--annotated", type=int, default=5, help="annotated slices")
    parser.add_argument("--max-time", type=float, default=60.0, help="training budget (s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run")
    parser.add_argument("--json", type=Path, default=RESULTS / "load_memory.json")
    args = parser.parse_args(argv)

    cli = [sys.executable, "-m", "napari_ssseg.cli"]
    threads = ["--threads", str(args.threads)] if args.threads else []
    voxels = int(np.prod(args.shape))
    with tempfile.TemporaryDirectory(prefix="ssseg-load-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        image_path, labels_path, slices = write_case(folder, args.shape, args.annotated)
        print(
            f"synthetic volume {args.shape} written in {time.perf_counter() - start:.0f} s, "
            f"annotated slices {slices}",
            file=sys.stderr,
        )
        engine = "import torch, monai, scipy, nibabel, napari_ssseg.cli, napari_ssseg.tasks.train"
        runs = {"import only": run_measured([sys.executable, "-c", engine], folder / "imp.log")}
        model = folder / "model"
        runs["train"] = run_measured(
            [
                *cli,
                "train",
                str(image_path),
                "--labels",
                str(labels_path),
                "--annotated-slices",
                ",".join(map(str, slices)),
                "--out",
                str(model),
                "--max-time",
                str(args.max_time),
                "--seed",
                "0",
                "--device",
                "cpu",
                *threads,
            ],
            folder / "train.log",
        )
        runs["predict"] = run_measured(
            [
                *cli,
                "predict",
                str(image_path),
                "--model",
                str(model),
                "--out",
                str(folder / "out"),
                "--device",
                "cpu",
            ],
            folder / "predict.log",
        )
        steps = json.loads((model / "model.json").read_text())["summary"]["iterations"]

    int16_mib = voxels * 2 / MIB
    float32_mib = voxels * 4 / MIB
    for run in runs.values():
        run["x_float32_volume"] = run["peak_rss_mib"] / float32_mib
    document = {
        "shape": list(args.shape),
        "annotated_slices": slices,
        "volume_int16_mib": int16_mib,
        "volume_float32_mib": float32_mib,
        "max_time": args.max_time,
        "train_steps": steps,
        "runs": runs,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=1))

    print(
        f"volume {'x'.join(map(str, args.shape))}: {int16_mib:.0f} MiB as int16, "
        f"{float32_mib:.0f} MiB as float32; training {steps} steps in {args.max_time:g} s"
    )
    print("| run | peak RSS (MiB) | x float32 volume | wall (s) |\n| --- | --- | --- | --- |")
    for name, run in runs.items():
        print(
            f"| {name} | {run['peak_rss_mib']:.0f} | {run['x_float32_volume']:.2f} | "
            f"{run['seconds']:.1f} |"
        )
    print(f"written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
