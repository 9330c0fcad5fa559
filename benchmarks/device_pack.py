"""Pack what the GPU run of the cases protocol needs into ``.device/`` (git-ignored), so that a
session lent a GPU machine can carry it there in one call (``benchmarks/run.py gpu-cases``).

The GPU machine has torch, numpy, scipy, scikit-image and safetensors but neither MONAI nor
nibabel, and it cannot reach ``../shared``: this writes

- ``.device/ACDC``: the ACDC volumes of the `train` and `val` splits, images stored as 8-bit
  integers with the scale 1/255 (the release's intensities are 0..1; the largest change is
  0.002, half a step), labels as they are, and its ``dataset.json``: about 41 MB where the
  16-bit copy is 81, under the 64 MiB a call may carry;
- ``.device/wheels``: MONAI and nibabel wheels for the machine's Python 3.12.

Never commit ``.device/`` (ACDC's terms forbid copying it into the project); delete it after
the run: ``rm -rf .device``.

    python benchmarks/device_pack.py [--data ../shared/data/ACDC]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import Opener

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".device"
WHEELS = ("monai==1.6.1", "nibabel==5.4.2")
LIMIT_MIB = 60
"""What ``.device`` may hold: a call carries 64 MiB with the repository (about 4)."""


def pack_acdc(source: Path, target: Path) -> int:
    """Copy the `train` and `val` volumes of ``source`` into ``target`` with 8-bit images;
    returns the number of volumes."""
    Opener.default_compresslevel = 9  # a few percent under nibabel's 1: the 64 MiB are tight
    dataset = json.loads((source / "dataset.json").read_text())
    names = [n for split in ("train", "val") for n in dataset["splits"][split]]
    for folder in ("imagesTr", "labelsTr"):
        (target / folder).mkdir(parents=True, exist_ok=True)
    for name in names:
        image = nib.load(source / "imagesTr" / f"{name}.nii.gz")
        data = image.get_fdata(dtype=np.float32)
        if data.min() < 0 or data.max() > 1:
            raise SystemExit(f"{name}: intensities {data.min()}..{data.max()}, not 0..1")
        scaled = nib.Nifti1Image(np.round(data * 255).astype(np.uint8), image.affine, image.header)
        scaled.header.set_data_dtype(np.uint8)
        scaled.header.set_slope_inter(1 / 255, 0)
        nib.save(scaled, target / "imagesTr" / f"{name}.nii.gz")
        shutil.copy2(source / "labelsTr" / f"{name}.nii.gz", target / "labelsTr")
    dataset["description"] += " Images stored as 8-bit integers scaled by 1/255 (device copy)."
    dataset["splits"] = {s: dataset["splits"][s] for s in ("train", "val")}
    (target / "dataset.json").write_text(json.dumps(dataset, indent=1))
    return len(names)


def download_wheels(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux2014_x86_64")]
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--python-version", "3.12", "--implementation", "cp", *platforms,
            "-d", str(target), *WHEELS,
        ],
        check=True,
    )  # fmt: skip


def size_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ACDC")
    args = parser.parse_args()
    if not (args.data / "dataset.json").is_file():
        raise SystemExit(f"{args.data}: no dataset.json (the ACDC folder of ../shared/data)")
    shutil.rmtree(OUT, ignore_errors=True)
    count = pack_acdc(args.data, OUT / "ACDC")
    download_wheels(OUT / "wheels")
    size = size_mib(OUT)
    print(f"{OUT}: {count} ACDC volumes and {len(WHEELS)} wheels, {size:.1f} MiB")
    if size > LIMIT_MIB:
        raise SystemExit(f"{OUT} holds {size:.1f} MiB, more than {LIMIT_MIB}: it will not travel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
