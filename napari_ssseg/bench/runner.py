"""``napari-ssseg bench``: run methods under a protocol, print a table, write JSON.

Protocols:
    sparse: per volume, reveal k slices (see :func:`sparse_slice_indices`), one model per
        volume, score 3-D Dice over every unrevealed slice.
    cases: N cases of ``train_split`` fully labelled, the rest of it unlabelled, one model,
        scored on every slice of ``split``.

Memory: every method runs in this one process (models and volumes are not pickled to
workers), so each row reports the peak RSS of the process while that method segmented that
volume (:class:`PeakMemory`: the kernel's high-water mark when the step raised it, else the
largest 10 ms sample) next to the RSS it started from; the difference is what the step
itself needed. The document's ``peak_rss_mb`` is the whole run's high-water mark.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from napari_ssseg.annotation import AnnotatedVolume, Project, default_slice_axis
from napari_ssseg.bench.methods import FIXED_METHODS, Method, make_method
from napari_ssseg.bench.metrics import (
    PeakMemory,
    dice_per_class,
    mean_dice,
    peak_rss_mib,
    summarise,
)
from napari_ssseg.bench.protocols import (
    acdc_patient,
    cases_split,
    reveal_slices,
    sparse_slice_indices,
)
from napari_ssseg.errors import SsSegError
from napari_ssseg.io.msd import MsdCase, read_msd
from napari_ssseg.io.nifti import read_labels, read_volume
from napari_ssseg.settings import TrainConfig


@dataclass
class BenchSettings:
    """What to benchmark (mirrors the CLI options)."""

    data: Path
    methods: list[str]
    protocol: str = "sparse"
    split: str | None = None
    k: int = 5
    labeled_cases: int = 7
    train_split: str = "train"
    max_volumes: int | None = None
    first_volume: int = 0
    """Index of the first volume of the scored split (volumes before it are left out)."""
    axis: int | None = None
    max_time: float | None = None
    max_iters: int | None = None
    seed: int = 0
    device: str = "auto"
    json_path: Path | None = None
    training: dict = field(default_factory=dict)
    """Training settings (``TrainConfig`` fields) every learned method starts from."""


@dataclass
class MethodResult:
    """Scores of one method: a row per volume."""

    name: str
    volumes: list[dict] = field(default_factory=list)
    fit_seconds: float | None = None
    fit_steps: int | None = None
    fit_memory: dict | None = None

    def peak_rss_mib(self) -> float | None:
        """Largest peak RSS (MiB) over this method's steps (fit and volumes)."""
        peaks = [v["peak_rss_mib"] for v in self.volumes if "peak_rss_mib" in v]
        if self.fit_memory is not None:
            peaks.append(self.fit_memory["peak_rss_mib"])
        return max(peaks) if peaks else None

    def summary(self) -> dict:
        mean, std = summarise([v["mean_dice"] for v in self.volumes])
        per_class = np.array([v["dice"] for v in self.volumes], dtype=float)
        class_means = np.nanmean(per_class, axis=0).tolist() if per_class.size else []
        return {
            "mean_dice": mean,
            "std_dice": std,
            "class_dice": class_means,
            "seconds_per_volume": float(np.mean([v["seconds"] for v in self.volumes]))
            if self.volumes
            else None,
            "fit_seconds": self.fit_seconds,
            "fit_steps": self.fit_steps,
            "fit_memory": self.fit_memory,
            "peak_rss_mib": self.peak_rss_mib(),
            "volumes": self.volumes,
        }


def machine_description() -> dict:
    """Where the numbers come from."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
    }


def scored_cases(cases: list[MsdCase], settings: BenchSettings) -> list[MsdCase]:
    """The volumes to score: ``settings.max_volumes`` of ``cases`` (all without it), from
    index ``settings.first_volume``. A first volume outside the split raises
    :class:`SsSegError`."""
    first = settings.first_volume
    if not 0 <= first < len(cases):
        raise SsSegError(
            f"first volume {first} is outside the scored split's {len(cases)} volumes "
            f"(0 to {len(cases) - 1})"
        )
    last = None if settings.max_volumes is None else first + settings.max_volumes
    return cases[first:last]


def _load_case(case: MsdCase, axis: int | None):
    image = read_volume(case.image)
    labels = read_labels(case.label, like=image) if case.label is not None else None
    return image, labels, default_slice_axis(image.spacing) if axis is None else axis


def _score(pred, ref, num_classes, exclude, axis) -> dict:
    dice = dice_per_class(pred, ref, num_classes, exclude_slices=exclude, axis=axis)
    return {"dice": [None if np.isnan(d) else float(d) for d in dice], "mean_dice": mean_dice(dice)}


def _run_sparse(settings, cases, num_classes, methods, results, report) -> None:
    for case in cases:
        image, ref, axis = _load_case(case, settings.axis)
        if ref is None:
            continue
        annotated = sparse_slice_indices(ref, axis, settings.k)
        revealed = reveal_slices(ref, annotated, axis)
        volume = AnnotatedVolume.from_labels(image, revealed, axis, annotated)
        for method in methods:
            start = time.perf_counter()
            with PeakMemory() as memory:
                pred = method.segment_sparse(volume, num_classes)
            seconds = time.perf_counter() - start - method.last_untimed
            row = {
                "name": case.name,
                "annotated": annotated,
                "seconds": seconds,
                "untimed_seconds": method.last_untimed,
                "steps": method.last_steps,
                "teachers_from": method.last_teachers_from,
                "pretrained": method.last_pretrained,
                "teacher_work": method.last_teacher_work,
                **memory.as_dict(),
            }
            row.update(_score(pred, ref, num_classes, annotated, axis))
            results[method.name].volumes.append(row)
            print(
                f"  {case.name:28s} {method.name:10s} Dice {row['mean_dice']:.3f} {seconds:6.1f} s"
                f" peak {memory.peak_mib:.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
            report()


def _run_cases(settings, dataset, num_classes, methods, results, report) -> None:
    train_cases = dataset.split(settings.train_split)
    names = [c.name for c in train_cases]
    labelled, _ = cases_split(names, settings.labeled_cases, acdc_patient)
    volumes = []
    for case in train_cases:
        image, labels, axis = _load_case(case, settings.axis)
        if case.name in labelled and labels is not None:
            volumes.append(
                AnnotatedVolume.from_labels(image, labels, axis, range(labels.shape[axis]))
            )
        else:
            volumes.append(AnnotatedVolume.unlabelled(image, axis))
    class_names = [dataset.labels.get(i, f"class {i}") for i in range(1, num_classes + 1)]
    project = Project(volumes, class_names)
    test_cases = scored_cases(dataset.split(settings.split), settings)
    for method in methods:
        if not method.learns:
            print(
                f"  {method.name} skipped: it needs annotated slices in every volume",
                file=sys.stderr,
            )
            continue
        start = time.perf_counter()
        with PeakMemory() as memory:
            method.fit(project)
        results[method.name].fit_seconds = time.perf_counter() - start
        results[method.name].fit_steps = method.last_steps
        results[method.name].fit_memory = memory.as_dict()
        for case in test_cases:
            image, ref, axis = _load_case(case, settings.axis)
            start = time.perf_counter()
            with PeakMemory() as memory:
                pred = method.segment(AnnotatedVolume.unlabelled(image, axis))
            row = {"name": case.name, "seconds": time.perf_counter() - start, **memory.as_dict()}
            row.update(_score(pred, ref, num_classes, (), axis))
            results[method.name].volumes.append(row)
            report()
        print(
            f"  {method.name}: fitted in {results[method.name].fit_seconds:.0f} s", file=sys.stderr
        )


def format_table(results: dict[str, MethodResult], class_names: list[str]) -> str:
    header = (
        f"{'method':10s} {'Dice mean ± std':>18s} "
        + " ".join(f"{n[:12]:>12s}" for n in class_names)
        + f" {'s/volume':>9s} {'peak MiB':>8s} {'volumes':>7s}"
    )
    lines = [header, "-" * len(header)]
    for name, result in results.items():
        s = result.summary()
        if not result.volumes:
            continue
        cls = " ".join(f"{c:12.3f}" for c in s["class_dice"])
        peak = f"{s['peak_rss_mib']:8.0f}" if s["peak_rss_mib"] is not None else f"{'-':>8s}"
        lines.append(
            f"{name:10s} {s['mean_dice']:10.3f} ± {s['std_dice']:.3f} {cls} "
            f"{s['seconds_per_volume']:9.1f} {peak} {len(result.volumes):7d}"
        )
    return "\n".join(lines)


def run_benchmark(settings: BenchSettings) -> dict:
    """Run the benchmark, print a table, write JSON (updated after every volume)."""
    budget: dict = {"max_time": settings.max_time}
    if settings.max_iters is not None:
        budget["max_iters"] = settings.max_iters
    config = TrainConfig.from_dict(settings.training).with_values(
        {"seed": settings.seed, "device": settings.device, "budget": budget}
    )
    try:
        methods: list[Method] = [make_method(m, config) for m in settings.methods]
    except SsSegError as error:
        raise SsSegError(f"{error} (or one of {', '.join(FIXED_METHODS)})") from None
    dataset = read_msd(settings.data)
    num_classes = max(i for i in dataset.labels if i > 0)
    class_names = [dataset.labels.get(i, f"class {i}") for i in range(1, num_classes + 1)]
    results = {m.name: MethodResult(m.name) for m in methods}
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

    def document() -> dict:
        return {
            "dataset": dataset.name,
            "data": str(settings.data),
            "protocol": settings.protocol,
            "settings": {
                k: str(v) if isinstance(v, Path) else v for k, v in vars(settings).items()
            },
            "training_config": config.to_dict(),
            "machine": machine_description(),
            "started": started,
            "peak_rss_mb": peak_rss_mib(),
            "class_names": class_names,
            "results": {name: r.summary() for name, r in results.items()},
        }

    def report() -> None:
        if settings.json_path is not None:
            tmp = settings.json_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(document(), indent=1))
            os.replace(tmp, settings.json_path)

    if settings.protocol == "sparse":
        cases = scored_cases(dataset.split(settings.split), settings)
        _run_sparse(settings, cases, num_classes, methods, results, report)
    else:
        _run_cases(settings, dataset, num_classes, methods, results, report)
    report()
    print(
        f"\n{dataset.name}, {settings.protocol} protocol"
        + (
            f", k = {settings.k}"
            if settings.protocol == "sparse"
            else f", {settings.labeled_cases} labelled cases"
        )
        + f", max-time {settings.max_time} s, {machine_description()['cpu_count']} CPUs"
    )
    print(format_table(results, class_names))
    print(f"peak memory {peak_rss_mib():.0f} MiB (whole run)")
    return document()
