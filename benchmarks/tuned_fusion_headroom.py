"""Could a foundation model tuned on the user's slices, its masks averaged with the U-Net's
probabilities pixel by pixel, beat the U-Net alone on one-class projects (LA)?

``refine_headroom.py`` showed that on LA no per-slice *choice* between the U-Net's masks and
LiteMedSAM's box-prompted ones can add more than 0.2 points: the frozen decoder's masks are
worse on every slice. Two things it did not try, measured here per volume of the sparse
protocol:

* tuning the decoder on the annotated slices (LoRA on its attention, as ``sc-sam`` does, or
  the whole mask decoder), with boxes jittered so that it learns to answer the U-Net's boxes;
  optionally also on the U-Net's masks of the unannotated slices (SC-SAM's U-Net -> SAM
  direction);
* pixel-wise fusion: the mean of the U-Net's foreground probability (MC-dropout mean, as the
  product predicts) and the foundation model's sigmoid, instead of a choice per slice.

For each volume: ``ssl`` trains ``--max-iters`` steps on one thread and predicts without
refinement; every unannotated slice holding the U-Net's foreground is embedded (frozen
encoder, cached) and prompted with the box of the U-Net's region. Per variant of the decoder
(``frozen``, ``lora``, ``lora+pseudo``, ``decoder``) the table gives the 3-D Dice over the
unannotated slices of the foundation model's masks and of the fusion (weights 0.5 and 0.3 for
the foundation model), after the product's connectivity filter, against the U-Net's.

Needs ``../shared/data``; writes results/tuned_fusion_<dataset>[_<tag>].json.

    python benchmarks/tuned_fusion_headroom.py --data ../shared/data/LA --split train --k 5 \\
        --volumes 0-4 --tag a
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from refine_headroom import (  # benchmarks/ is the script's folder
    add_volume_arguments,
    volume_range,
)

from napari_ssseg.annotation import AnnotatedVolume, Project, default_slice_axis, slice_index
from napari_ssseg.bench.metrics import dice_per_class
from napari_ssseg.bench.protocols import reveal_slices, sparse_slice_indices
from napari_ssseg.data.intensity import apply_intensity, intensity_transform
from napari_ssseg.data.slices import prepare_image, stack_context
from napari_ssseg.foundation.embedding_cache import embed_slices
from napari_ssseg.foundation.lora import add_lora
from napari_ssseg.foundation.prompts import prompts_from_mask
from napari_ssseg.inference.connectivity import keep_connected_to_slices
from napari_ssseg.inference.predict import predict_volume
from napari_ssseg.io.msd import read_msd
from napari_ssseg.io.nifti import read_labels, read_volume
from napari_ssseg.pipeline import train_model
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.teachers.foundation import embedding_cache, load_backend
from napari_ssseg.training.uncertainty import mc_dropout_probs

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("frozen", "lora", "lora+pseudo", "decoder")
WEIGHTS = (0.5, 0.3, 0.2)  # the foundation model's share of the fused probability
THRESHOLDS = (0.4, 0.5, 0.6)  # control: the U-Net's probability alone, cut elsewhere
BOX_JITTER = 0.1  # of the box's side, each corner, while tuning


@torch.no_grad()
def unet_foreground(model, volume: AnnotatedVolume) -> np.ndarray:
    """(X, Y, Z) float32: the U-Net's MC-dropout mean probability of class 1."""
    config = model.config
    network = model.network()
    images, grid = prepare_image(volume.image, volume.axis, config.image_size, config.intensity)
    out = np.zeros(volume.image.shape, np.float32)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        for first in range(0, images.shape[0], 8):
            indices = range(first, min(first + 8, images.shape[0]))
            inputs = torch.stack([stack_context(images, i, config.context) for i in indices])
            probs = grid.to_source(mc_dropout_probs(network, inputs, config.inference_passes))
            probs = probs.clamp_min(0) / probs.clamp_min(0).sum(dim=1, keepdim=True).clamp_min(1e-8)
            for j, i in enumerate(indices):
                out[slice_index(volume.axis, i)] = probs[j, 1].numpy()
    return out


def box_prompt(mask: np.ndarray, transform, rng: np.random.Generator | None = None):
    """The box prompt of ``mask`` (H, W) in the input frame, jittered when ``rng`` is given."""
    prompt = prompts_from_mask(mask.astype(np.float32), 0, 0, transform=transform)
    if prompt is None or rng is None:
        return prompt
    x0, y0, x1, y1 = prompt.box.tolist()
    side = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
    box = np.array([x0, y0, x1, y1]) + rng.uniform(-BOX_JITTER, BOX_JITTER, 4) * side
    size = transform.input_size - 1
    box = np.clip(box, 0, size)
    if box[2] <= box[0] + 1 or box[3] <= box[1] + 1:
        return prompt
    return dataclasses.replace(prompt, box=torch.tensor(box, dtype=torch.float32))


class Slices:
    """One volume's [0, 1] slices and their cached embeddings."""

    def __init__(self, volume: AnnotatedVolume, config: TrainConfig, backend, cache) -> None:
        self.volume = volume
        self.transform = intensity_transform(volume.image.data, config.intensity)
        self.backend, self.cache = backend, cache

    def image(self, z: int) -> np.ndarray:
        return apply_intensity(
            self.transform, self.volume.image.data[slice_index(self.volume.axis, z)]
        )

    def embedding(self, z: int) -> tuple[torch.Tensor, object]:
        embedding, transforms = embed_slices(self.backend, [self.image(z)], self.cache)
        return embedding, transforms[0]


def mask_logits(backend, slices: Slices, z: int, mask: np.ndarray, rng=None) -> torch.Tensor | None:
    """(H, W) logits of the decoder prompted with ``mask``'s box on slice z (grad if tuning)."""
    embedding, transform = slices.embedding(z)
    prompt = box_prompt(mask, transform, rng)
    if prompt is None:
        return None
    logits = backend.decode_prompts(embedding, [prompt])
    return transform.logits_to_slice(logits)[0, 0]


def tune(
    backend,
    slices: Slices,
    labelled: dict[int, np.ndarray],
    pseudo: dict[int, np.ndarray],
    steps: int,
    lr: float,
    seed: int,
) -> float:
    """``steps`` AdamW steps of Dice + BCE: each a labelled slice, plus one pseudo-labelled
    slice (half weight) when ``pseudo`` is given. Returns the seconds taken."""
    from monai.losses import DiceLoss

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    parameters = [p for p in backend.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr)
    dice = DiceLoss(sigmoid=True)
    sources = [(labelled, 1.0)] + ([(pseudo, 0.5)] if pseudo else [])
    backend.train()
    with torch.enable_grad():
        for _ in range(steps):
            total = torch.zeros(())
            for pool, weight in sources:
                z = list(pool)[rng.integers(len(pool))]
                logits = mask_logits(backend, slices, z, pool[z], rng)
                if logits is None:
                    continue
                target = torch.from_numpy(pool[z].astype(np.float32))
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
                loss = loss + dice(logits[None, None], target[None, None])
                total = total + weight * loss
            optimizer.zero_grad(set_to_none=True)
            if total.requires_grad:
                total.backward()
                optimizer.step()
    backend.eval()
    return time.perf_counter() - started


def measure_volume(
    image_path: Path,
    label_path: Path,
    k: int,
    config: TrainConfig,
    tune_steps: int,
    variants: tuple[str, ...] = VARIANTS,
) -> dict:
    image = read_volume(image_path)
    reference = read_labels(label_path, like=image) > 0
    axis = default_slice_axis(image.spacing)
    annotated = sparse_slice_indices(reference.astype(np.int16), axis, k)
    volume = AnnotatedVolume.from_labels(
        image, reveal_slices(reference.astype(np.int16), annotated, axis), axis, annotated
    )
    project = Project([volume], ["class 1"])
    with tempfile.TemporaryDirectory(prefix="ssseg-tuned-") as cache_dir:
        run_config = TrainConfig.from_dict(config.to_dict() | {"embedding_cache": cache_dir})
        started = time.perf_counter()
        model = train_model(project, run_config)
        trained = time.perf_counter() - started
        unet = predict_volume(model, volume, refine="off").labels > 0
        probability = unet_foreground(model, volume)
        cache = embedding_cache(run_config)
        unannotated = [z for z in range(volume.num_slices) if z not in annotated]
        prompted = [z for z in unannotated if unet[slice_index(axis, z)].any()]
        unprompted = [z for z in range(volume.num_slices) if z not in prompted]
        labelled = {z: reference[slice_index(axis, z)] for z in annotated}
        pseudo = {z: unet[slice_index(axis, z)] for z in prompted}
        truth = reference.astype(np.int16)

        def scored_dice(mask: np.ndarray) -> float:
            """Dice over the unannotated slices of ``mask`` with the user's labels on the
            annotated ones, after the product's connectivity filter."""
            labels = mask.astype(np.int16)
            for z in annotated:
                labels[slice_index(axis, z)] = truth[slice_index(axis, z)]
            if run_config.keep_connected:
                keep_connected_to_slices(labels, axis, annotated, 1)
            return float(dice_per_class(labels, truth, 1, annotated, axis)[0])

        row = {
            "name": image_path.name,
            "annotated": annotated,
            "steps": model.summary["iterations"],
            "train_seconds": round(trained, 1),
            "prompted_slices": len(prompted),
            "unet": float(dice_per_class(unet.astype(np.int16), truth, 1, annotated, axis)[0]),
            "unet_cut": {str(t): scored_dice(probability > t) for t in THRESHOLDS},
            "variants": {},
        }
        for variant in variants:
            backend = load_backend(run_config)
            slices = Slices(volume, run_config, backend, cache)
            seconds = 0.0
            if variant != "frozen":
                if variant == "decoder":
                    backend.mask_decoder.requires_grad_(True)
                    lr = 1e-4
                else:
                    add_lora(backend, rank=run_config.sam_lora_rank)
                    lr = run_config.sam_lr
                seconds = tune(
                    backend,
                    slices,
                    labelled,
                    pseudo if variant == "lora+pseudo" else {},
                    tune_steps,
                    lr,
                    run_config.seed,
                )
            foundation = np.zeros(reference.shape, np.float32)
            with torch.no_grad():
                for z in prompted:
                    key = slice_index(axis, z)
                    logits = mask_logits(backend, slices, z, unet[key])
                    foundation[key] = torch.sigmoid(logits).numpy()
            result = {"tune_seconds": round(seconds, 1)}
            masks = {"alone": foundation > 0.5}
            for weight in WEIGHTS:
                fused = (1 - weight) * probability + weight * foundation
                # Slices the foundation model was not prompted on keep the U-Net's probability.
                for z in unprompted:
                    fused[slice_index(axis, z)] = probability[slice_index(axis, z)]
                masks[f"fused{weight}"] = fused > 0.5
            for name, mask in masks.items():
                result[name] = scored_dice(mask)
            row["variants"][variant] = result
            print(f"  {variant}: {result}", file=sys.stderr)
    return row


def print_summary(volumes: list[dict]) -> None:
    print(f"{len(volumes)} volume(s); 3-D Dice % over unannotated slices, mean (vs U-Net)")
    unet = np.array([v["unet"] for v in volumes])
    print(f"unet: {100 * unet.mean():.2f}")
    for cut in (str(t) for t in THRESHOLDS):
        values = np.array([v.get("unet_cut", {}).get(cut, np.nan) for v in volumes])
        change = 100 * (values - unet)
        print(f"unet cut at {cut}: {100 * values.mean():6.2f}  {change.mean():+.2f}")
    for variant in [n for n in VARIANTS if all(n in v["variants"] for v in volumes)]:
        for name in ("alone", *[f"fused{w}" for w in WEIGHTS]):
            values = np.array([v["variants"][variant].get(name, np.nan) for v in volumes])
            change = 100 * (values - unet)
            print(
                f"{variant:12s} {name:9s} {100 * values.mean():6.2f}  {change.mean():+.2f}"
                f"  ahead {(change > 0).sum()}/{len(volumes)}  worst {change.min():+.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_volume_arguments(parser)
    parser.add_argument("--max-iters", type=int, default=900)
    parser.add_argument("--tune-steps", type=int, default=200)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args()
    if args.merge:
        print_summary([v for p in args.merge for v in json.loads(p.read_text())["volumes"]])
        return
    torch.set_num_threads(1)
    dataset = read_msd(args.data)
    cases = dataset.split(args.split)
    config = TrainConfig.from_dict(
        {"method": "ssl", "seed": args.seed, "max_iters": args.max_iters, "device": "cpu"}
    )
    suffix = f"_{args.tag}" if args.tag else ""
    out = RESULTS / f"tuned_fusion_{dataset.name}{suffix}.json"
    RESULTS.mkdir(exist_ok=True)
    volumes = []
    for index in volume_range(args.volumes):
        case = cases[index]
        print(f"{case.name} ...", file=sys.stderr)
        volumes.append(
            measure_volume(
                case.image, case.label, args.k, config, args.tune_steps, tuple(args.variants)
            )
        )
        document = {
            "dataset": dataset.name,
            "split": args.split,
            "k": args.k,
            "max_iters": args.max_iters,
            "tune_steps": args.tune_steps,
            "seed": args.seed,
            "volumes": volumes,
        }
        out.write_text(json.dumps(document, indent=1))
    print_summary(volumes)


if __name__ == "__main__":
    main()
