"""Ray scenarios run by ``tests/test_ray.py`` inside a loopback-only network namespace.

``python tests/ray_scenarios.py OUT.json [SCENARIO ...]`` starts one private Ray cluster of
2 CPUs (no dashboard, usage statistics off), runs the scenarios (all by default) and writes
what each observed into OUT.json; the test file asserts on it. Run it only inside
``unshare -n`` (see ``docs/cluster.md``): outside such a namespace Ray also talks over the
machine's own network address.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# On a loaded machine a Ray worker can take more than Ray's default 60 s to start.
os.environ.setdefault("RAY_worker_register_timeout_seconds", "600")

from napari_ssseg.errors import InputError  # noqa: E402
from napari_ssseg.runner import ProgressEvent, RunStatus, StatusEvent  # noqa: E402
from napari_ssseg.runner.job import TrainingJob, VolumeInput  # noqa: E402
from napari_ssseg.runner.ray_runner import RayRunner  # noqa: E402
from napari_ssseg.settings.values import merged  # noqa: E402
from tests.conftest import synthetic_case, synthetic_job, write_nifti  # noqa: E402
from tests.ray_namespace import interfaces, listening_addresses  # noqa: E402


def sample_job(folder: Path, **config) -> TrainingJob:
    """The bundled CT's liver, 4 annotated slices (as the demo reveals them)."""
    from napari_ssseg.bench.protocols import reveal_slices, sparse_slice_indices
    from napari_ssseg.io.nifti import read_labels, read_volume
    from napari_ssseg.sample_data import load_sample

    case = load_sample("ct")
    image = read_volume(case.image)
    liver = next(k for k, v in case.class_names.items() if v == "liver")
    reference = (read_labels(case.labels, like=image) == liver).astype(np.int16)
    annotated = sparse_slice_indices(reference, 2, 4)
    volume = VolumeInput(
        labels=reveal_slices(reference, annotated, 2),
        annotated_slices=list(annotated),
        axis=2,
        image_path=case.image,  # read by the runner and shipped: no shared file system
        name=image.name,
    )
    settings = merged(
        {"device": "cpu", "student": {"image_size": 64}, "prediction": {"passes": 2}}, config
    )
    return TrainingJob([volume], ["liver"], settings, folder / "model")


def follow(runner: RayRunner, timeout: float) -> dict:
    """Wait for the run, recording its statuses and progress stages."""
    statuses, stages, iterations = [runner.status.value], set(), []
    deadline = time.monotonic() + timeout
    while runner.running and time.monotonic() < deadline:
        for event in runner.poll():
            if isinstance(event, StatusEvent):
                statuses.append(event.status.value)
            elif isinstance(event, ProgressEvent):
                stages.add(event.stage)
                if event.stage == "train":
                    iterations.append(event.iteration)
        time.sleep(0.05)
    return {
        "statuses": statuses,
        "stages": sorted(stages),
        "iterations": iterations,
        "final": runner.status.value,
        "message": runner.message,
    }


def scenario_train_predict(folder: Path) -> dict:
    """2 data-parallel workers train on the sample, then predict it; model comes back."""
    from napari_ssseg.model_store import load_model

    runner = RayRunner(workers=2, work_root=folder / "work")
    start = time.monotonic()
    runner.start(sample_job(folder, budget={"max_iters": 30}))
    seen = follow(runner, timeout=300)
    seen["seconds"] = round(time.monotonic() - start, 1)
    if runner.status is RunStatus.DONE:
        result = runner.result()
        model = load_model(result.model_dir)
        (volume,) = result.volumes
        seen |= {
            "model_dir": str(result.model_dir),
            "model_iterations": model.summary["iterations"],
            "labels_shape": list(volume.prediction.labels.shape),
            "annotated": volume.prediction.annotated,
            "uncertainty_range": [
                float(volume.prediction.uncertainty.min()),
                float(volume.prediction.uncertainty.max()),
            ],
            "foreground_voxels": int((volume.prediction.labels > 0).sum()),
        }
    runner.close()
    return seen


def scenario_single_worker_matches_local(folder: Path) -> dict:
    """One Ray Train worker and the in-process loop, same seed and steps: same weights."""
    import torch

    from napari_ssseg.model_store import load_model
    from napari_ssseg.tasks.train import train_model

    job = synthetic_job(
        folder / "model", seed=3, method="mt", budget={"max_iters": 12, "teacher_start": 0.0}
    )
    for volume in job.volumes:
        volume.predict = False
    job.threads = 1
    runner = RayRunner(workers=1, work_root=folder / "work")
    runner.start(job)
    seen = follow(runner, timeout=300)
    if runner.status is RunStatus.DONE:
        remote = load_model(job.model_dir).state_dict
        torch.set_num_threads(1)
        local = train_model(job.project(), job.config).state_dict
        seen["max_abs_difference"] = max(float((remote[k] - local[k]).abs().max()) for k in local)
        seen["same_keys"] = sorted(remote) == sorted(local)
    runner.close()
    return seen


def scenario_cancel(folder: Path) -> dict:
    """A long run on 2 workers is cancelled once training reports progress."""
    runner = RayRunner(workers=2, work_root=folder / "work")
    runner.start(synthetic_job(folder / "model", budget={"max_iters": 1_000_000}))
    deadline = time.monotonic() + 300
    trained = False
    while runner.running and time.monotonic() < deadline and not trained:
        trained = any(isinstance(e, ProgressEvent) and e.stage == "train" for e in runner.poll())
        time.sleep(0.05)
    asked = time.monotonic()
    runner.cancel()
    final = runner.wait(timeout=30)
    seen = {
        "trained_before_cancel": trained,
        "final": final.value,
        "message": runner.message,
        "cancel_seconds": round(time.monotonic() - asked, 2),
        "model_written": (folder / "model").exists(),
    }
    runner.close()
    return seen


def scenario_worker_error(folder: Path) -> dict:
    """Warm-starting a 2-class model with 3 class names fails on the training workers."""
    from napari_ssseg.model_store import save_model
    from napari_ssseg.tasks.train import train_model

    first = synthetic_job(folder / "first" / "model", budget={"max_iters": 2})
    (folder / "first").mkdir(parents=True)
    save_model(train_model(first.project(), first.config), folder / "first" / "model")
    job = synthetic_job(folder / "model", budget={"max_iters": 2})
    job.class_names = ["ellipsoid", "blob", "third"]
    job.init_model_dir = folder / "first" / "model"
    runner = RayRunner(workers=2, work_root=folder / "work")
    runner.start(job)
    seen = follow(runner, timeout=300)
    seen["model_written"] = (folder / "model").exists()
    runner.close()
    return seen


def scenario_predict_folder(folder: Path) -> dict:
    """A folder of 3 volumes predicted by 2 parallel Ray tasks, outputs back here."""
    from napari_ssseg.model_store import save_model
    from napari_ssseg.runner.ray_predict import predict_folder
    from napari_ssseg.tasks.train import train_model

    job = synthetic_job(folder / "model", budget={"max_iters": 2})
    data = folder / "images"
    data.mkdir(parents=True)
    save_model(train_model(job.project(), job.config), folder / "model")
    image, _ = synthetic_case()
    for i in range(3):
        write_nifti(data / f"vol_{i}.nii.gz", image + i)
    (data / "broken.nii.gz").write_bytes(b"not a nifti file")
    reported: list[str] = []
    error = ""
    try:
        predict_folder(
            folder / "model",
            data,
            folder / "out",
            workers=2,
            on_volume=lambda name, paths: reported.append(name),
            skip_bad=True,
        )
    except InputError as failure:
        error = str(failure)
    return {
        "written": sorted(p.name for p in (folder / "out").iterdir()),
        "reported": sorted(reported),
        "error": error,
    }


class SamRecorder:
    """An actor collecting what each training worker's foundation teacher held."""

    def __init__(self) -> None:
        self.entries: list[dict] = []

    def record(self, entry: dict) -> None:
        self.entries.append(entry)

    def seen(self) -> list[dict]:
        return self.entries


def tensor_digest(tensors) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def teacher_state(teacher: Any) -> dict:
    """Digests of a foundation teacher's adapters and targets, and its embedding counts."""
    adapters = [p for _, p in sorted(teacher.backend.named_parameters()) if p.requires_grad]
    refs = sorted(teacher._targets)
    return {
        "adapters": tensor_digest(adapters),
        "targets": tensor_digest(teacher._targets[ref] for ref in refs),
        "target_slices": [list(ref) for ref in refs],
        "embedded": teacher.cache.misses,
        "received": teacher.embeddings_received,
    }


@dataclasses.dataclass
class ObservedSamLoad:
    """``load`` for the training workers: the job with an embedding cache folder per worker
    (as on nodes without a shared file system), and the foundation teacher's ``prepare``
    wrapped to report the teacher's state after every refresh."""

    inputs: Any
    cache_root: str
    recorder: Any

    def __call__(self) -> Any:
        import ray
        import ray.train

        from napari_ssseg.tasks.distributed import TrainingInputs
        from napari_ssseg.training.teachers import foundation

        rank = ray.train.get_context().get_world_rank()
        recorder, original = self.recorder, foundation.SamTeacher.prepare

        def observed(teacher, student, iteration, fraction):
            before = teacher_state(teacher)["adapters"]
            original(teacher, student, iteration, fraction)
            if teacher.refreshed == iteration:  # refreshed (and tuned) just now
                entry = {"rank": rank, "iteration": iteration, "adapters_before": before}
                ray.get(recorder.record.remote(entry | teacher_state(teacher)))

        foundation.SamTeacher.prepare = observed
        cache = str(Path(self.cache_root) / f"rank{rank}")
        config = self.inputs.config.with_values({"foundation": {"embedding_cache": cache}})
        return TrainingInputs(self.inputs.project, config, self.inputs.init, threads=1)


@dataclasses.dataclass
class LossNames:
    """``on_progress`` for rank 0: the names of the reported loss terms, to the recorder."""

    recorder: Any

    def __call__(self, snapshot: Any) -> None:
        import ray

        entry = {"rank": "progress", "iteration": snapshot.iteration}
        ray.get(self.recorder.record.remote(entry | {"losses": sorted(snapshot.losses)}))


def scenario_sc_sam(folder: Path) -> dict:
    """sc-sam (real LiteMedSAM) on 2 workers, each with its own embedding cache folder,
    warm-started from a small U-Net so the student prompts from the first refresh."""
    import ray
    import torch

    from napari_ssseg.tasks.distributed import TrainingInputs, train_data_parallel
    from napari_ssseg.tasks.train import train_model

    torch.set_num_threads(1)
    warm = synthetic_job(folder / "warm", budget={"max_iters": 40}, seed=1)
    init = train_model(warm.project(), warm.config)
    job = synthetic_job(
        folder / "model",
        method="sc-sam",
        budget={"max_iters": 10, "teacher_start": 0.0, "gate_dice": 0.0},
        sam={"slices": 2, "refresh": 4, "tune_steps": 2},
        seed=1,
    )
    recorder = ray.remote(num_cpus=0)(SamRecorder).remote()
    inputs = TrainingInputs(job.project(), job.config, init)
    start = time.monotonic()
    model = train_data_parallel(
        ObservedSamLoad(inputs, str(folder / "embeddings"), recorder),
        workers=2,
        on_progress=LossNames(recorder),
    )
    seen: dict = {"seconds": round(time.monotonic() - start, 1)}
    entries = ray.get(recorder.seen.remote())
    ray.kill(recorder)
    caches = {}
    for rank in (0, 1):
        files = sorted((folder / "embeddings" / f"rank{rank}").glob("*.safetensors"))
        caches[rank] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in files}
    return seen | {
        "model_iterations": model.summary["iterations"],
        "refreshes": {str(rank): [e for e in entries if e["rank"] == rank] for rank in (0, 1)},
        "loss_names": sorted({n for e in entries if e["rank"] == "progress" for n in e["losses"]}),
        "cache_files": {str(rank): caches[rank] for rank in (0, 1)},
    }


SCENARIOS: dict[str, Callable[[Path], dict]] = {
    "train_predict": scenario_train_predict,
    "single_worker_matches_local": scenario_single_worker_matches_local,
    "cancel": scenario_cancel,
    "worker_error": scenario_worker_error,
    "predict_folder": scenario_predict_folder,
    "sc_sam": scenario_sc_sam,
}


def main(argv: list[str]) -> int:
    import tempfile

    out = Path(argv[0])
    names = argv[1:] or list(SCENARIOS)
    report: dict = {"interfaces": interfaces()}
    with tempfile.TemporaryDirectory(prefix="ssseg-ray-") as tmp:
        runner = RayRunner(workers=2)
        runner.connect()  # one private cluster of 2 CPUs for every scenario
        report["listening_with_ray"] = listening_addresses()
        for name in names:
            start = time.monotonic()
            try:
                report[name] = SCENARIOS[name](Path(tmp) / name)
            except Exception:
                report[name] = {"crashed": traceback.format_exc()}
            report[name]["scenario_seconds"] = round(time.monotonic() - start, 1)
            print(f"{name}: {report[name]}", file=sys.stderr, flush=True)
        report["listening_after"] = listening_addresses()
        runner.close()
        import ray

        ray.shutdown()
    out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
