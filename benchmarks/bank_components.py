"""How much of LiteMedSAM's embeddings the leading principal directions of a distillation bank
keep (training/embedding_bank.py, ``distill_components``).

For the first volumes of a data set (nnU-Net/MSD folder), 16 slices evenly spread over the
labelled foreground's extent stand for the bank (what ``EmbeddingBank.build`` takes from a
volume), 8 others between them are held out. The basis comes from the bank's embeddings alone
(``principal_directions``, as in training); for k directions the table gives the share of the
bank's energy they hold and the mean cosine, per embedding location, between an embedding
vector and its projection onto them, for the bank's slices (the only ones distillation
compares) and for the held-out ones (none where the foreground spans 16 slices or fewer, as
on ACDC: nan).
Slices go to the encoder as the volume's normalised slices (the bank embeds the student's
padded squares of the same slices). Writes results/bank_components_<dataset>.json.

    python benchmarks/bank_components.py --data ../shared/data/LA --split train --volumes 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_ssseg.data.intensity import IntensityConfig, normalise_intensity
from napari_ssseg.foundation.embedding_cache import embed_slices
from napari_ssseg.foundation.litemedsam import LiteMedSamBackend
from napari_ssseg.io.msd import read_msd
from napari_ssseg.io.nifti import read_labels, read_volume
from napari_ssseg.training.embedding_bank import embedding_vectors, principal_directions

RESULTS = Path(__file__).resolve().parent / "results"
COMPONENTS = (8, 16, 32, 64, 128)
BANK_SLICES = 16
HELD_OUT_SLICES = 8


def spread(count: int, start: int, stop: int) -> list[int]:
    """``count`` slice indices evenly spread over [start, stop)."""
    return sorted({int(i) for i in np.linspace(start, stop - 1, count).round()})


def kept_cosine(embeddings: torch.Tensor, basis: torch.Tensor) -> float:
    """Mean over locations of cos(v, P v) = |P v| / |v| for the vectors of (N, D, g, g)."""
    vectors = embedding_vectors(embeddings)
    norms = vectors.norm(dim=1)
    keep = norms > 1e-12
    if not bool(keep.any()):
        return float("nan")
    return float(((vectors @ basis).norm(dim=1)[keep] / norms[keep]).mean())


def measure(image: Path, labels: Path, backend: LiteMedSamBackend) -> dict:
    volume = read_volume(image)
    data = normalise_intensity(volume.data, IntensityConfig())
    foreground = np.flatnonzero(read_labels(labels, volume).reshape(-1, data.shape[2]).any(0))
    first, last = int(foreground[0]), int(foreground[-1]) + 1
    bank_z = spread(BANK_SLICES, first, last)
    held_z = [z for z in spread(BANK_SLICES + HELD_OUT_SLICES, first, last) if z not in bank_z]
    start = time.perf_counter()
    bank, _ = embed_slices(backend, [data[:, :, z] for z in bank_z])
    held = embed_slices(backend, [data[:, :, z] for z in held_z])[0] if held_z else bank[:0]
    seconds = time.perf_counter() - start
    energy, directions = principal_directions(bank)
    rows = {}
    for k in COMPONENTS:
        basis = directions[:, :k]
        rows[k] = {
            "energy": float(energy[:k].sum() / energy.sum()),
            "cosine_bank": kept_cosine(bank, basis),
            "cosine_held_out": kept_cosine(held, basis),
        }
    return {
        "volume": image.name,
        "bank_slices": len(bank_z),
        "held_out_slices": len(held_z),
        "encoder_seconds": seconds,
        "components": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--volumes", type=int, default=2)
    args = parser.parse_args()

    dataset = read_msd(args.data)
    cases = [case for case in dataset.split(args.split) if case.label is not None]
    backend = LiteMedSamBackend.load().eval()
    volumes = [measure(case.image, case.label, backend) for case in cases[: args.volumes]]

    print(f"{args.data.name}: {len(volumes)} volumes, torch threads {torch.get_num_threads()}")
    print(f"{'k':>4} {'energy':>8} {'cos bank':>9} {'cos held-out':>13}")
    for k in COMPONENTS:
        cells = [v["components"][k] for v in volumes]
        print(
            f"{k:>4} {np.mean([c['energy'] for c in cells]):8.3f} "
            f"{np.mean([c['cosine_bank'] for c in cells]):9.3f} "
            f"{np.mean([c['cosine_held_out'] for c in cells]):13.3f}"
        )
    out = RESULTS / f"bank_components_{args.data.name.lower()}.json"
    out.write_text(json.dumps({"data": str(args.data), "volumes": volumes}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
