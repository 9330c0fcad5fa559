"""How the foundation model's per-class masks become labels, and whether a zoomed crop helps:
the refined masks' Dice when every prompt comes from the reference (the best a U-Net's boxes
could give).

On every slice of a volume holding a reference label, each class's reference region prompts
LiteMedSAM as :class:`~napari_ssseg.inference.sam_refine.SliceRefiner` prompts from the
U-Net's labels (the region's bounding box; points too for models trained with them); the
class masks become labels by one of two rules: ``logit``
(a pixel inside several masks takes the class with the larger logit: the rule before
2026-12-06) or ``smaller`` (the class with the smaller mask: today's
:func:`~napari_ssseg.foundation.mask_labels.labels_from_mask_logits`). Each rule runs on
the whole slice and on crops around the slice's foreground (a square of ``--zoom`` times the
foreground's longer side, resized to the encoder's input, so the structure fills more of it).
Prints Dice per class pooled over the volumes' slices; writes
results/refine_composition_<dataset>[_<tag>].json.

    python benchmarks/refine_composition.py --data ../shared/data/ACDC --split val --volumes 0-9
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from napari_ssseg.annotation import default_slice_axis, slice_index
from napari_ssseg.data.intensity import apply_intensity, intensity_transform
from napari_ssseg.foundation.embedding_cache import embed_slices
from napari_ssseg.foundation.mask_labels import labels_from_mask_logits
from napari_ssseg.foundation.prompts import prompts_from_mask
from napari_ssseg.inference.sam_refine import DiceTally
from napari_ssseg.io.msd import read_msd
from napari_ssseg.io.nifti import read_labels, read_volume
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.teachers.foundation import load_backend

RESULTS = Path(__file__).resolve().parent / "results"


def by_larger_logit(logits: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The former rule: the class with the largest logit among those above 0."""
    return np.where(logits.max(axis=0) > 0, classes[logits.argmax(axis=0)], 0).astype(np.int16)


RULES = {"logit": by_larger_logit, "smaller": labels_from_mask_logits}


def crop_window(reference: np.ndarray, zoom: float | None) -> tuple[slice, slice]:
    """The whole slice (``zoom`` None) or a square of ``zoom`` times the foreground's longer
    side around its centre, clipped to the slice."""
    if zoom is None:
        return slice(None), slice(None)
    rows, cols = np.nonzero(reference)
    side = zoom * max(np.ptp(rows) + 1, np.ptp(cols) + 1)
    centre_row, centre_col = (rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2
    height, width = reference.shape
    return (
        slice(int(max(0, centre_row - side / 2)), int(min(height, centre_row + side / 2 + 1))),
        slice(int(max(0, centre_col - side / 2)), int(min(width, centre_col + side / 2 + 1))),
    )


@torch.no_grad()
def class_logits(backend, image: np.ndarray, reference: np.ndarray, zoom: float | None):
    """Mask logits (N, H, W) in slice pixels, one per class present, prompted from the
    reference as the refiner prompts from the U-Net's labels (the region's box, points for
    models trained with points); and those classes (N,)."""
    window = crop_window(reference, zoom)
    crop, truth = image[window], reference[window]
    classes = np.array([c for c in np.unique(truth) if c > 0])
    embedding, (transform,) = embed_slices(backend, [crop], None)
    points = 3 if "point" in backend.card.trained_prompts else 0
    prompts = [
        prompts_from_mask((truth == c).astype(np.float32), points, points, transform=transform)
        for c in classes
    ]
    logits = backend.decode_prompts(embedding.expand(len(classes), -1, -1, -1), prompts)
    logits = transform.logits_to_slice(logits.float())[:, 0].numpy()
    full = np.full((len(classes), *reference.shape), -50.0, np.float32)
    full[(slice(None), *window)] = logits
    return full, classes


def measure_volume(backend, case, num_classes: int, zooms: list[float | None]) -> dict:
    """Per frame and rule, per-class pixel counts (predicted, reference, both) over slices."""
    image = read_volume(case.image)
    reference = read_labels(case.label, like=image)
    axis = default_slice_axis(image.spacing)
    transform = intensity_transform(image.data, TrainConfig().intensity)
    tallies = {f"{zoom}/{rule}": DiceTally(num_classes) for zoom in zooms for rule in RULES}
    for z in range(reference.shape[axis]):
        key = slice_index(axis, z)
        truth = reference[key]
        if not truth.any():
            continue
        plane = apply_intensity(transform, image.data[key])
        for zoom in zooms:
            logits, classes = class_logits(backend, plane, truth, zoom)
            for rule, compose in RULES.items():
                tallies[f"{zoom}/{rule}"].add(compose(logits, classes), truth)
    counts = {  # per class: predicted, reference, both
        variant: np.stack([t.predicted, t.reference, t.intersection], axis=1)[1:].tolist()
        for variant, t in tallies.items()
    }
    return {"name": case.name, "counts": counts}


def pooled_dice(volumes: list[dict]) -> dict[str, list[float]]:
    """Variant -> per-class Dice % pooled over volumes."""
    totals: dict[str, np.ndarray] = {}
    for volume in volumes:
        for variant, counts in volume["counts"].items():
            totals[variant] = totals.get(variant, 0) + np.asarray(counts)
    return {
        variant: [round(200 * both / max(p + r, 1), 1) for p, r, both in total]
        for variant, total in totals.items()
    }


def print_table(name: str, volumes: list[dict]) -> None:
    dice = pooled_dice(volumes)
    num_classes = len(next(iter(dice.values())))
    print(f"\n{name}: {len(volumes)} volume(s), prompts from the reference, Dice % pooled")
    print("| frame | rule | " + " | ".join(f"class {c}" for c in range(1, num_classes + 1)) + " |")
    print("| --- | --- |" + " --- |" * num_classes)
    for variant, row in dice.items():
        zoom, rule = variant.split("/")
        frame = "whole slice" if zoom == "None" else f"crop x{zoom}"
        print(f"| {frame} | {rule} | " + " | ".join(f"{d:.1f}" for d in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--volumes", default="0-9", help="indices in the split, e.g. 0-4")
    parser.add_argument("--zoom", type=float, nargs="*", default=[1.5, 2.5])
    parser.add_argument("--tag", default="", help="suffix of the JSON file (parallel streams)")
    parser.add_argument(
        "--merge", nargs="*", type=Path, help="print the table of these JSON files together"
    )
    args = parser.parse_args()
    if args.merge:
        documents = [json.loads(path.read_text()) for path in args.merge]
        print_table(documents[0]["dataset"], [v for d in documents for v in d["volumes"]])
        return
    torch.set_num_threads(1)
    dataset = read_msd(args.data)
    cases = dataset.split(args.split)
    num_classes = max(i for i in dataset.labels if i > 0)
    backend = load_backend(TrainConfig())
    zooms = [None, *args.zoom]
    first, _, last = args.volumes.partition("-")
    volumes = []
    out = RESULTS / f"refine_composition_{dataset.name}{'_' + args.tag if args.tag else ''}.json"
    RESULTS.mkdir(exist_ok=True)
    for index in range(int(first), int(last or first) + 1):
        volumes.append(measure_volume(backend, cases[index], num_classes, zooms))
        summary = pooled_dice(volumes)
        out.write_text(
            json.dumps(
                {"dataset": dataset.name, "split": args.split, "volumes": volumes, "dice": summary},
                indent=1,
            )
        )
        print(cases[index].name, flush=True)
    print_table(dataset.name, volumes)


if __name__ == "__main__":
    main()
