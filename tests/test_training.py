"""Short real training runs on the bundled CT sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.bench.metrics import dice_per_class
from napari_ssseg.bench.protocols import reveal_slices, sparse_slice_indices
from napari_ssseg.cli import main
from napari_ssseg.errors import TrainingCancelled
from napari_ssseg.inference.predict import predict_volume
from napari_ssseg.io.nifti import read_labels, read_volume
from napari_ssseg.model_store import load_model, save_model
from napari_ssseg.sample_data import load_sample
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.values import merged
from napari_ssseg.tasks.train import train_model
from tests.conftest import TINY_CLI_CONFIG, synthetic_case, write_nifti

# Liver on the 122 x 101 x 30 CT sample, 4 revealed slices, 150 steps at 64 px.
LIVER_DICE_FLOOR = 0.75


@pytest.fixture(scope="module")
def liver_case():
    case = load_sample("ct")
    image = read_volume(case.image)
    liver = next(i for i, name in case.class_names.items() if name == "liver")
    reference = (read_labels(case.labels, like=image) == liver).astype(np.int16)
    annotated = sparse_slice_indices(reference, 2, 4)
    volume = AnnotatedVolume.from_labels(
        image, reveal_slices(reference, annotated, 2), 2, annotated
    )
    return volume, reference, annotated


QUICK = {
    "seed": 3,
    "student": {"image_size": 64, "channels": [8, 16, 32, 64]},
    "budget": {"max_iters": 150},
    "batch": {"size": 4, "unlabelled": 2, "target_cache": 16},
    "prediction": {"passes": 4},
}

TINY = {
    "method": "mt",
    "student": {"image_size": 32, "channels": [8, 16]},
    "budget": {"max_iters": 4, "teacher_start": 0.5, "gate_dice": 0.0},
    "prediction": {"passes": 1},
}
"""Four steps of the mean teacher on a small network; the teacher from step 2."""


def quick_config(**changes) -> TrainConfig:
    """The settings of a short run on the sample, ``changes`` (by section) written over."""
    return TrainConfig.from_dict(merged(QUICK, changes))


def tiny_config(**changes) -> TrainConfig:
    """:data:`TINY` with ``changes`` (by section) written over."""
    return TrainConfig.from_dict(merged(TINY, changes))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["unet", "ssl"])
def test_training_on_sample_beats_floor_on_held_out_slices(liver_case, method, tmp_path):
    volume, reference, annotated = liver_case
    model = train_model(Project([volume], ["liver"]), quick_config(method=method))
    prediction = predict_volume(model, volume)
    dice = dice_per_class(prediction.labels, reference, 1, annotated, 2)[0]
    assert dice > LIVER_DICE_FLOOR, f"{method}: Dice {dice:.3f} on held-out slices"
    # Annotated slices keep the user's labels exactly.
    for i in annotated:
        assert np.array_equal(prediction.labels[:, :, i], volume.labels[:, :, i])
    assert prediction.uncertainty.min() >= 0.0 and prediction.uncertainty.max() <= 1.0
    assert prediction.slice_scores.shape == (volume.num_slices,)
    assert set(prediction.review_order()).isdisjoint(annotated)

    # Save, reload: same weights, and the model remembers the training annotation.
    save_model(model, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    for key, value in model.state_dict.items():
        assert torch.equal(value, loaded.state_dict[key])
    remembered = loaded.annotation_for(volume.image)
    assert remembered is not None and remembered.annotated_slices == annotated


@pytest.mark.slow
def test_same_seed_same_result_on_cpu(liver_case):
    volume, _, _ = liver_case
    project = Project([volume], ["liver"])
    short = {"method": "ssl", "budget": {"max_iters": 25}}
    config = quick_config(**short, batch={"target_refresh": 10})
    first = train_model(project, config).state_dict
    second = train_model(project, config).state_dict
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = train_model(project, quick_config(**short, seed=4)).state_dict
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_unlabelled_slices_take_places_in_the_batch_once_teachers_start(liver_case, monkeypatch):
    from napari_ssseg.training import loop

    volume, _, _ = liver_case
    labelled = []
    real_draw = loop._draw

    def counting_draw(rng, refs, count):
        if refs and all(
            volume_index == 0 and z in volume.annotated_slices for volume_index, z in refs
        ):
            labelled.append(count)
        return real_draw(rng, refs, count)

    monkeypatch.setattr(loop, "_draw", counting_draw)
    project = Project([volume], ["liver"])
    # The mean teacher starts halfway: steps 0 and 1 are supervised, 2 and 3 share the batch.
    loop.train(project, tiny_config(batch={"unlabelled": 1}))
    assert labelled == [4, 4, 3, 3]
    labelled.clear()
    loop.train(project, tiny_config(batch={"share": False}))
    assert labelled == [4, 4, 4, 4]
    labelled.clear()
    # At least one labelled slice stays.
    loop.train(project, tiny_config(batch={"size": 2, "unlabelled": 3}))
    assert labelled == [2, 2, 1, 1]


def test_strong_view_perturbs_only_the_students_unannotated_slices(liver_case, monkeypatch):
    from napari_ssseg.training import loop

    volume, _, _ = liver_case
    perturbed: list[tuple[int, ...]] = []
    real_perturb = loop.perturb_batch

    def recording_perturb(transform, images):
        perturbed.append(tuple(images.shape))
        return real_perturb(transform, images)

    monkeypatch.setattr(loop, "perturb_batch", recording_perturb)
    project = Project([volume], ["liver"])
    plain = loop.train(project, tiny_config(batch={"unlabelled": 1})).state_dict
    assert perturbed == []
    strong = loop.train(project, tiny_config(batch={"unlabelled": 1, "strong_view": True}))
    strong = strong.state_dict
    # Steps 2 and 3 have the teacher: one unannotated slice each, never the labelled three.
    assert perturbed == [(1, 1, 32, 32), (1, 1, 32, 32)]
    assert not all(torch.equal(plain[k], strong[k]) for k in plain)


def test_teachers_wait_until_the_student_reproduces_every_annotated_class(liver_case, monkeypatch):
    from napari_ssseg.training import loop

    volume, _, _ = liver_case
    checks: list[int] = []
    # Per-class Dice on the annotated slices at each check: below the gate, then above it.
    answers = iter([torch.tensor([0.5, 0.9]), torch.tensor([0.85, 0.9])])

    def scripted_agreement(model, pool, refs, device):
        checks.append(len(checks))
        return next(answers)

    monkeypatch.setattr(loop, "_class_agreement", scripted_agreement)
    project = Project([volume], ["liver"])
    config = tiny_config(
        agreement_every=0, budget={"max_iters": 30, "teacher_start": 0.0, "gate_dice": 0.8}
    )
    reports: list = []
    result = loop.train(project, config, on_progress=reports.append, report_every=1)
    assert len(checks) == 2  # steps 0 and 25, then the gate stays open
    assert result.teachers_from == loop.TEACHER_GATE_EVERY
    taught = [r.iteration for r in reports if "mean" in r.losses]
    assert taught and min(taught) == loop.TEACHER_GATE_EVERY + 1  # reported after the step

    # Never reproduced within the run: it stays supervised.
    monkeypatch.setattr(loop, "_class_agreement", lambda *args: torch.tensor([0.1]))
    result = loop.train(project, config)
    assert result.teachers_from is None


def test_a_warm_started_run_has_its_teachers_from_the_first_step(liver_case):
    """A retrain starts from a model that knows the labels: its mean and shape teachers
    start at once (the gate still checks), not after half of its steps."""
    from napari_ssseg.training import loop

    volume, _, _ = liver_case
    project = Project([volume], ["liver"])
    config = quick_config(method="ssl", budget={"max_iters": 20, "gate_dice": 0.0})
    cold = loop.train(project, config)
    assert cold.teachers_from == 10  # budget.teacher_start 0.5 of 20 steps
    warm = loop.train(project, config, init_state=cold.state_dict)
    assert warm.teachers_from == 0
    assert config.budget.teachers_from(warm_start=False) == 0.5
    assert config.budget.teachers_from(warm_start=True) == 0.0
    assert config.budget.teacher_start == 0.5  # the run's own, unchanged


def test_cancel_before_first_step_raises(liver_case):
    volume, _, _ = liver_case
    with pytest.raises(TrainingCancelled):
        train_model(Project([volume], ["liver"]), quick_config(), should_stop=lambda: True)


def test_cancel_midway_returns_model_trained_so_far(liver_case):
    volume, _, _ = liver_case
    calls = []

    def stop_after_five() -> bool:
        calls.append(1)
        return len(calls) > 5

    model = train_model(Project([volume], ["liver"]), quick_config(), should_stop=stop_after_five)
    assert model.summary["iterations"] == 5 and model.summary["stopped_early"]


def test_progress_reports_agreement_with_the_labels_on_annotated_slices(liver_case):
    volume, _, _ = liver_case
    reports: list = []
    train_model(
        Project([volume], ["liver"]),
        quick_config(agreement_every=20, budget={"max_iters": 40}),
        on_progress=reports.append,
    )
    agreement = {r.iteration: r.losses["agreement"] for r in reports if "agreement" in r.losses}
    assert sorted(agreement) == [20, 40]
    assert all(0.0 <= value <= 1.0 for value in agreement.values())
    # After 40 steps the student already reproduces much of the labelled liver.
    assert agreement[40] > 0.5, agreement


@pytest.mark.slow
def test_same_seed_same_output_files_through_the_cli(tmp_path):
    """train + predict twice with the same seed and an iteration budget: every file the
    user gets (weights, segmentation, uncertainty, slice table) is byte-identical."""
    image, labels = synthetic_case()
    image_path = write_nifti(tmp_path / "case.nii.gz", image)
    labels_path = write_nifti(tmp_path / "case_lab.nii.gz", labels.astype(np.uint8))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(TINY_CLI_CONFIG))

    def run(name: str, seed: int) -> dict[str, bytes]:
        model, out = tmp_path / f"model_{name}", tmp_path / f"pred_{name}"
        train = [str(image_path), "--labels", str(labels_path), "--annotated-slices", "4,8,12"]
        options = ["--config", str(settings), "--max-iters", "8", "--seed", str(seed)]
        assert main(["train", *train, *options, "--device", "cpu", "--out", str(model)]) == 0
        predict = ["predict", str(image_path), "--model", str(model), "--out", str(out)]
        assert main([*predict, "--device", "cpu"]) == 0
        files = {"model.safetensors": (model / "model.safetensors").read_bytes()}
        files.update({p.name: p.read_bytes() for p in sorted(out.iterdir())})
        return files

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first, second, other = run("a", seed=5), run("b", seed=5), run("c", seed=6)
    finally:
        torch.set_num_threads(threads)
    assert sorted(first) == [
        "case_seg.nii.gz",
        "case_slices.csv",
        "case_uncertainty.nii.gz",
        "model.safetensors",
    ]
    assert [name for name in first if first[name] != second[name]] == []
    # The seed matters: another one gives other weights and another uncertainty map.
    assert other["model.safetensors"] != first["model.safetensors"]
    assert other["case_uncertainty.nii.gz"] != first["case_uncertainty.nii.gz"]
