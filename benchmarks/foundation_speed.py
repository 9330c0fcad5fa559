"""LiteMedSAM speed on this CPU: seconds per slice (encoder) and per prompt (decoder).

Usage::

    python benchmarks/foundation_speed.py [--slices 4] [--prompts 20] [--threads 1 2]

Each thread count runs one warm-up pass, then times the encoder on ``--slices`` slices one at a
time and the decoder on ``--prompts`` box prompts and as many box + 5 + 5 point prompts (one
decoder call per prompt, as :meth:`FoundationBackend.decode` does per image). Prints a table and
writes ``benchmarks/results/foundation_speed.json``. The machine's load average is recorded
because the 2-core machine is shared: timings taken under load are slower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from napari_ssseg.foundation.litemedsam import LiteMedSamBackend
from napari_ssseg.foundation.prompts import prompts_from_mask

RESULTS = Path(__file__).resolve().parent / "results"


def synthetic_slice(
    seed: int, shape: tuple[int, int] = (200, 240)
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy slice (H, W) in [0, 1] with one bright ellipse, and the ellipse's mask."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    cy, cx = rng.uniform(0.3, 0.7, 2) * shape
    ry, rx = rng.uniform(15, 40, 2)
    mask = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
    image = np.where(mask, 0.8, 0.2) + 0.05 * rng.standard_normal(shape)
    return np.clip(image, 0, 1).astype(np.float32), mask


def time_calls(call, count: int) -> list[float]:
    seconds = []
    for i in range(count):
        start = time.perf_counter()
        call(i)
        seconds.append(time.perf_counter() - start)
    return seconds


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "mean_s": statistics.fmean(seconds),
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "n": len(seconds),
    }


def measure(backend: LiteMedSamBackend, threads: int, n_slices: int, n_prompts: int) -> dict:
    torch.set_num_threads(threads)
    slices = [synthetic_slice(seed) for seed in range(max(n_slices, 1))]
    transform = backend.slice_transform(slices[0][0].shape)
    inputs = [transform.image_to_input(image)[None] for image, _ in slices]
    prompts = [prompts_from_mask(mask, transform=transform, seed=0) for _, mask in slices]
    with torch.no_grad():
        embedding = backend.embed(inputs[0])  # warm-up
        backend.decode_prompts(embedding, prompts[:1])
        encoder = time_calls(lambda i: backend.embed(inputs[i % len(inputs)]), n_slices)
        box_only = time_calls(
            lambda i: backend.decode(embedding, boxes=prompts[i % len(prompts)].box[None]),
            n_prompts,
        )
        box_points = time_calls(
            lambda i: backend.decode_prompts(embedding, [prompts[i % len(prompts)]]), n_prompts
        )
    return {
        "threads": threads,
        "encoder_per_slice": summary(encoder),
        "decoder_per_box_prompt": summary(box_only),
        "decoder_per_box_and_10_points_prompt": summary(box_points),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "foundation_speed.json")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    start = time.perf_counter()
    backend = LiteMedSamBackend.load()
    load_seconds = time.perf_counter() - start
    runs = [measure(backend, t, args.slices, args.prompts) for t in args.threads]
    doc = {
        "benchmark": "foundation_speed",
        "model_id": backend.model_id,
        "input_size": backend.input_size,
        "slice_shape": [200, 240],
        "load_seconds": load_seconds,
        "runs": runs,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_1_5_15_before": load_before,
            "load_average_1_5_15_after": os.getloadavg(),
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")

    print(f"LiteMedSAM on {os.cpu_count()} CPU cores, load {load_seconds:.1f} s to build")
    print("| torch threads | encoder s / slice | decoder s / box | decoder s / box + 10 points |")
    print("| --- | --- | --- | --- |")
    for run in runs:
        cells = [
            run[k]["median_s"]
            for k in (
                "encoder_per_slice",
                "decoder_per_box_prompt",
                "decoder_per_box_and_10_points_prompt",
            )
        ]
        print(f"| {run['threads']} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    print(f"(medians; load average before {load_before[0]:.2f}; written to {args.out})")


if __name__ == "__main__":
    main()
