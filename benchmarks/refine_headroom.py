"""How much the foundation model's refined masks could add to the default's prediction, slice
by slice: the ceiling of any rule that picks, per slice and class, the U-Net's masks or the
foundation model's.

For each volume of the sparse protocol (k annotated slices, as ``napari-ssseg bench``), the
default method (``ssl``) trains for ``--max-time`` seconds on one thread and predicts without
refinement; then every unannotated slice with predicted foreground is refined as ``refine
sam`` does (:class:`~napari_ssseg.inference.sam_refine.SliceRefiner`: each class's predicted
region prompts the foundation model with its box). Per class the table gives the U-Net's Dice,
the refined masks' Dice, and the Dice of the per-slice oracle (on each slice the masks with
fewer wrong pixels against the reference), pooled over the unannotated slices of every
volume. It also splits the U-Net's wrong pixels by where they lie: on slices beyond the
annotated range or between annotated slices, and within 2 pixels of the reference's boundary
or farther; and gives both models' per-slice Dice by quartile of the U-Net's slice
uncertainty (the mean normalised entropy over the predicted and reference pixels). Last, a
trust rule: a class takes the refined masks on a volume when they reach a Dice level on its
annotated slices (prompted there from the user's labels), and, with a guard, keeps the
U-Net's on slices where the two masks agree (Dice) less than a level, as ``refine auto``
does; the table gives the paired change of the volume's Dice for a few levels.

Needs ``../shared/data``; writes results/refine_headroom_<dataset>[_<tag>].json.

    python benchmarks/refine_headroom.py --data ../shared/data/LA --split train --k 5 \\
        --volumes 0-4 --tag a
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from napari_ssseg.annotation import AnnotatedVolume, Project, default_slice_axis, slice_index
from napari_ssseg.bench.protocols import reveal_slices, sparse_slice_indices
from napari_ssseg.data.intensity import apply_intensity, intensity_transform
from napari_ssseg.inference.predict import predict_volume
from napari_ssseg.inference.sam_refine import DiceTally, load_refiner
from napari_ssseg.io.msd import read_msd
from napari_ssseg.io.nifti import read_labels, read_volume
from napari_ssseg.pipeline import train_model
from napari_ssseg.training.config import TrainConfig

RESULTS = Path(__file__).resolve().parent / "results"
BAND_PIXELS = 2
TRUST_LEVELS = (0.9, 0.93, 0.95)
AGREEMENT_LEVELS = (0.0, 0.5, 0.8)  # refine auto's per-slice guard (refine_agreement)
# Per-slice guards as (agreement, smallest refined/U-Net area: refine_min_area).
GUARDS = ((0.0, 0.0), *((level, 0.0) for level in AGREEMENT_LEVELS[1:]), (0.5, 0.8))


def volume_range(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"3"`` -> [3]."""
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def slice_counts(predicted: np.ndarray, reference: np.ndarray) -> dict:
    """Pixel counts of one class on one slice: predicted, reference, both, and the wrong
    pixels within ``BAND_PIXELS`` of the reference's boundary."""
    wrong = predicted ^ reference
    band = ndimage.binary_dilation(reference, iterations=BAND_PIXELS) & ~ndimage.binary_erosion(
        reference, iterations=BAND_PIXELS
    )
    return {
        "predicted": int(predicted.sum()),
        "reference": int(reference.sum()),
        "both": int((predicted & reference).sum()),
        "wrong_near_boundary": int((wrong & band).sum()),
    }


def measure_volume(
    image_path: Path, label_path: Path, num_classes: int, k: int, config: TrainConfig
) -> dict:
    """Train, predict, refine every unannotated slice; per slice and class, both models'
    counts."""
    image = read_volume(image_path)
    reference = read_labels(label_path, like=image)
    axis = default_slice_axis(image.spacing)
    annotated = sparse_slice_indices(reference, axis, k)
    volume = AnnotatedVolume.from_labels(
        image, reveal_slices(reference, annotated, axis), axis, annotated
    )
    project = Project([volume], [f"class {c}" for c in range(1, num_classes + 1)])
    with tempfile.TemporaryDirectory(prefix="ssseg-headroom-") as cache:
        run_config = TrainConfig.from_dict(config.to_dict() | {"embedding_cache": cache})
        started = time.perf_counter()
        model = train_model(project, run_config)
        trained = time.perf_counter() - started
        prediction = predict_volume(model, volume, refine="off")
        refiner = load_refiner(run_config, num_classes, torch.device("cpu"))
        transform = intensity_transform(image.data, run_config.intensity)
        classes = range(1, num_classes + 1)
        # The refined masks on the annotated slices, prompted from the user's labels there
        # (which the U-Net, trained on them, reproduces): what a trust rule can measure.
        on_annotated = DiceTally(num_classes)
        for z in annotated:
            key = slice_index(axis, z)
            truth = reference[key].astype(np.int16)
            image_slice = apply_intensity(transform, image.data[key])
            on_annotated.add(refiner.refine(image_slice, truth, z), truth)
        slices = []
        for z in range(reference.shape[axis]):
            key = slice_index(axis, z)
            unet, truth = prediction.labels[key], reference[key]
            if z in annotated or not (unet.any() or truth.any()):
                continue
            refined = (
                refiner.refine(apply_intensity(transform, image.data[key]), unet, z)
                if unet.any()
                else unet
            )
            shown = (unet > 0) | (truth > 0)
            slices.append(
                {
                    "z": z,
                    "where": "between" if annotated[0] < z < annotated[-1] else "beyond",
                    "uncertainty": float(prediction.uncertainty[key][shown].mean()),
                    "unet": [slice_counts(unet == c, truth == c) for c in classes],
                    "refined": [slice_counts(refined == c, truth == c) for c in classes],
                    # pixels both models give the class: their agreement, for per-slice rules
                    "agreed": [int(((unet == c) & (refined == c)).sum()) for c in classes],
                }
            )
    return {
        "name": image_path.name,
        "annotated": annotated,
        "steps": model.summary["iterations"],
        "train_seconds": round(trained, 1),
        "refined_dice_on_annotated": on_annotated.dice(),
        "slices": slices,
    }


def dice(counts: list[dict]) -> float:
    """Dice pooled over ``counts`` (nan without any pixel of either)."""
    total = sum(c["predicted"] + c["reference"] for c in counts)
    return 2 * sum(c["both"] for c in counts) / total if total else float("nan")


def wrong(count: dict) -> int:
    return count["predicted"] + count["reference"] - 2 * count["both"]


def summarise(volumes: list[dict]) -> dict:
    """Pooled Dice per class (U-Net, refined, per-slice oracle), where the U-Net's wrong
    pixels lie, and per-slice Dice by uncertainty quartile."""
    slices = [s for v in volumes for s in v["slices"]]
    num_classes = len(slices[0]["unet"]) if slices else 0
    classes = []
    for c in range(num_classes):
        unet = [s["unet"][c] for s in slices]
        refined = [s["refined"][c] for s in slices]
        oracle = [min(u, r, key=wrong) for u, r in zip(unet, refined, strict=True)]
        classes.append({"unet": dice(unet), "refined": dice(refined), "oracle": dice(oracle)})
    where = {}
    for zone in ("between", "beyond"):
        counts = [c for s in slices if s["where"] == zone for c in s["unet"]]
        errors = sum(wrong(c) for c in counts)
        where[zone] = {
            "wrong_pixels": errors,
            "missed": sum(c["reference"] - c["both"] for c in counts),
            "extra": sum(c["predicted"] - c["both"] for c in counts),
            "near_boundary": sum(c["wrong_near_boundary"] for c in counts) / max(errors, 1),
        }
    scored = sorted(
        (s for s in slices if any(c["predicted"] for c in s["unet"])),
        key=lambda s: s["uncertainty"],
    )
    quartiles = []
    for part in np.array_split(np.arange(len(scored)), 4):
        chosen = [scored[i] for i in part]
        quartiles.append(
            {
                "slices": len(chosen),
                "uncertainty": float(np.mean([s["uncertainty"] for s in chosen])),
                "unet": float(np.nanmean([dice(s["unet"]) for s in chosen])),
                "refined": float(np.nanmean([dice(s["refined"]) for s in chosen])),
            }
        )
    trust = {}
    guarded = all("agreed" in s for s in slices)  # counted since 2026-12-06
    for level in TRUST_LEVELS:
        for guard, min_area in GUARDS if guarded else ((0.0, 0.0),):
            gains = [
                trust_gain(v, level, guard, min_area)
                for v in volumes
                if "refined_dice_on_annotated" in v
            ]
            name = f"{level}" + (f", agreement {guard}" if guard else "")
            name += f", area {min_area}" if min_area else ""
            if gains:
                trust[name] = {
                    "mean_gain": float(np.mean(gains)),
                    "ahead": sum(g > 0 for g in gains),
                    "behind": sum(g < 0 for g in gains),
                    "volumes": len(gains),
                }
    return {
        "classes": classes,
        "where": where,
        "uncertainty_quartiles": quartiles,
        "trust_rule": trust,
    }


def agreement(unet: dict, refined: dict, agreed: int) -> float:
    """Dice between the U-Net's and the refined masks of one class on one slice (1 if both
    are empty)."""
    total = unet["predicted"] + refined["predicted"]
    return 2 * agreed / total if total else 1.0


def trust_gain(volume: dict, level: float, guard: float = 0.0, min_area: float = 0.0) -> float:
    """Change of the volume's Dice (mean over classes present) when each class whose refined
    masks reach ``level`` on the annotated slices takes them on every slice where they agree
    with the U-Net's at least ``guard`` and cover at least ``min_area`` times the U-Net's
    pixels (a class's counts swapped slice by slice: overlaps between classes are not
    resolved as ``compose`` does)."""
    slices = volume["slices"]
    before, after = [], []
    for c, trusted in enumerate(volume["refined_dice_on_annotated"]):
        unet = [s["unet"][c] for s in slices]
        if np.isnan(dice(unet)):
            continue
        chosen = unet
        if trusted is not None and trusted >= level:
            chosen = [
                s["refined"][c]
                if agreement(s["unet"][c], s["refined"][c], s["agreed"][c]) >= guard
                and s["refined"][c]["predicted"] >= min_area * s["unet"][c]["predicted"]
                else s["unet"][c]
                for s in slices
            ]
        before.append(dice(unet))
        after.append(dice(chosen))
    return float(np.mean(after) - np.mean(before)) if before else 0.0


def print_summary(name: str, summary: dict, volumes: int) -> None:
    print(f"\n{name}: {volumes} volume(s), Dice pooled over unannotated slices, per class")
    print("| class | U-Net | refined | per-slice oracle |\n| --- | --- | --- | --- |")
    for c, row in enumerate(summary["classes"], start=1):
        print(
            f"| {c} | {100 * row['unet']:.1f} | {100 * row['refined']:.1f} "
            f"| {100 * row['oracle']:.1f} |"
        )
    print("\n| U-Net's wrong pixels | count | missed | extra | within 2 px of the boundary |")
    print("| --- | --- | --- | --- | --- |")
    for zone, row in summary["where"].items():
        print(
            f"| {zone} annotated slices | {row['wrong_pixels']} | {row['missed']} "
            f"| {row['extra']} | {100 * row['near_boundary']:.0f} % |"
        )
    if summary["trust_rule"]:
        print("\n| trust level | mean change of Dice | ahead | behind | volumes |")
        print("| --- | --- | --- | --- | --- |")
        for level, row in summary["trust_rule"].items():
            print(
                f"| {level} | {100 * row['mean_gain']:+.2f} | {row['ahead']} | {row['behind']} "
                f"| {row['volumes']} |"
            )
    print("\n| uncertainty quartile | slices | mean uncertainty | U-Net Dice | refined Dice |")
    print("| --- | --- | --- | --- | --- |")
    for q, row in enumerate(summary["uncertainty_quartiles"], start=1):
        print(
            f"| {q} | {row['slices']} | {row['uncertainty']:.3f} | {100 * row['unet']:.1f} "
            f"| {100 * row['refined']:.1f} |"
        )


def add_volume_arguments(parser: argparse.ArgumentParser) -> None:
    """The options the headroom scripts share: data set, split, k, volumes, seed, result tag
    and ``--merge``."""
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--volumes", default="0-9", help="indices in the split, e.g. 0-4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="suffix of the JSON file (parallel streams)")
    parser.add_argument(
        "--merge", nargs="*", type=Path, help="print the summary of these JSON files together"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_volume_arguments(parser)
    parser.add_argument("--max-time", type=float, default=120.0)
    args = parser.parse_args()
    if args.merge:
        volumes = [v for path in args.merge for v in json.loads(path.read_text())["volumes"]]
        print_summary(" + ".join(p.name for p in args.merge), summarise(volumes), len(volumes))
        return
    torch.set_num_threads(1)
    dataset = read_msd(args.data)
    cases = dataset.split(args.split)
    num_classes = max(i for i in dataset.labels if i > 0)
    config = TrainConfig.from_dict(
        {"method": "ssl", "seed": args.seed, "max_time": args.max_time, "device": "cpu"}
    )
    suffix = f"_{args.tag}" if args.tag else ""
    out = RESULTS / f"refine_headroom_{dataset.name}{suffix}.json"
    RESULTS.mkdir(exist_ok=True)
    volumes = []
    for index in volume_range(args.volumes):
        case = cases[index]
        volumes.append(measure_volume(case.image, case.label, num_classes, args.k, config))
        row = volumes[-1]
        print(f"{case.name}: {row['steps']} steps in {row['train_seconds']} s", file=sys.stderr)
        document = {
            "dataset": dataset.name,
            "split": args.split,
            "k": args.k,
            "max_time": args.max_time,
            "seed": args.seed,
            "volumes": volumes,
            "summary": summarise(volumes),
        }
        out.write_text(json.dumps(document, indent=1))
    print_summary(dataset.name, summarise(volumes), len(volumes))


if __name__ == "__main__":
    main()
