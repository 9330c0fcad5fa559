"""Imbalance-aware CutMix: box placement, exact pasting, mixed targets, settings, the loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.errors import SsSegError
from napari_ssseg.io.volume import Volume
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.parts import CutMixSettings
from napari_ssseg.training.cutmix import (
    Box,
    ImbalanceCutMix,
    class_frequencies,
    labels_as_target,
    paste,
    rare_weight,
    sample_box,
)
from napari_ssseg.training.loop import train
from tests.conftest import synthetic_case

RARE_PIXEL = (10, 20)
# Class shares of a labelled set in which class 2 is rare (inverse weights 1 : 50 : 2000).
RARE_FREQUENCIES = torch.tensor([0.98, 0.0195, 0.0005], dtype=torch.float64)


def _one_rare_pixel(size: int = 32) -> torch.Tensor:
    classes = torch.zeros(size, size, dtype=torch.int64)
    classes[RARE_PIXEL] = 2
    return classes


def _contains(box: Box, pixel: tuple[int, int]) -> bool:
    row, column = pixel
    return box.top <= row < box.top + box.height and box.left <= column < box.left + box.width


def _box_of(mask: torch.Tensor) -> Box:
    """The box a (S, S) bool mask covers; fails unless the mask is exactly a rectangle."""
    rows = mask.any(dim=1).nonzero()[:, 0]
    columns = mask.any(dim=0).nonzero()[:, 0]
    box = Box(
        int(rows[0]),
        int(columns[0]),
        int(rows[-1] - rows[0] + 1),
        int(columns[-1] - columns[0] + 1),
    )
    rectangle = torch.zeros_like(mask)
    rectangle[box.region] = True
    assert torch.equal(mask, rectangle), "the pasted region is not a box"
    return box


ALWAYS = CutMixSettings(on=True, prob=1.0, area=0.25)
"""CutMix at every step, a box a quarter of the slice."""


def test_class_frequencies_hand_values_and_rare_weight_schedule():
    labels = [torch.tensor([[0, 0, 1], [0, 0, 0]]), torch.tensor([2, 0])]
    # Counts 6, 1, 1, 0 of 8 pixels, add-one smoothed over 4 classes.
    expected = torch.tensor([7, 2, 2, 1], dtype=torch.float64) / 12
    assert torch.allclose(class_frequencies(labels, 4), expected)
    assert rare_weight(0.0, 0.8) == 1.0
    assert rare_weight(0.4, 0.8) == pytest.approx(0.5)
    assert rare_weight(0.8, 0.8) == 0.0 and rare_weight(1.0, 0.8) == 0.0
    assert rare_weight(0.0, 0.0) == 0.0


@pytest.mark.parametrize("shape", [(32, 32), (24, 40)])
@pytest.mark.parametrize("area", [0.05, 0.25, 0.5])
@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_box_has_the_requested_area_and_stays_inside_the_slice(shape, area, weight):
    rand_state = np.random.RandomState(0)
    generator = torch.Generator().manual_seed(0)
    classes = torch.randint(0, 3, shape, generator=generator)
    classes[:2, :2] = 2  # rare class in a corner, where boxes must be moved inward
    for _ in range(200):
        box = sample_box(classes, 1.0 / RARE_FREQUENCIES, area, weight, rand_state)
        # Each side is the slice's side times sqrt(area), rounded to whole pixels.
        assert abs(box.height - shape[0] * math.sqrt(area)) <= 0.5
        assert abs(box.width - shape[1] * math.sqrt(area)) <= 0.5
        assert box.top >= 0 and box.top + box.height <= shape[0]
        assert box.left >= 0 and box.left + box.width <= shape[1]
    # A quarter of a 32 x 32 slice is exactly 16 x 16.
    box = sample_box(_one_rare_pixel(), 1.0 / RARE_FREQUENCIES, 0.25, weight, rand_state)
    assert (box.height, box.width) == (16, 16)


def test_rare_class_attracts_boxes_until_annealed_to_uniform():
    rand_state = np.random.RandomState(1)
    classes = _one_rare_pixel()
    draws = 2000

    def hits(weight: float) -> tuple[float, np.ndarray]:
        boxes = [
            sample_box(classes, 1.0 / RARE_FREQUENCIES, 1 / 16, weight, rand_state)
            for _ in range(draws)
        ]
        centres = np.array([(b.top + b.height / 2, b.left + b.width / 2) for b in boxes])
        return np.mean([_contains(b, RARE_PIXEL) for b in boxes]), centres

    # An 8 x 8 box placed uniformly covers the (interior) rare pixel 1/16 of the time; with the
    # rare pixel weighted 2000 against 1023 background pixels weighted 1.02, about 68 %.
    favoured, favoured_centres = hits(1.0)
    uniform, uniform_centres = hits(0.0)
    assert favoured > 0.5, favoured
    assert abs(uniform - 1 / 16) < 0.025, uniform
    assert np.allclose(uniform_centres.mean(axis=0), 16.0, atol=0.6), uniform_centres.mean(0)
    # Favoured centres sit on the rare pixel's side of the slice.
    assert favoured_centres.mean(axis=0)[1] > uniform_centres.mean(axis=0)[1] + 1.5


def test_paste_is_exact_inside_and_outside_the_box():
    destination = torch.arange(2 * 6 * 7, dtype=torch.float32).reshape(2, 6, 7)
    source = -destination - 1
    box = Box(top=1, left=2, height=3, width=4)
    mixed = paste(destination, source, box)
    inside = torch.zeros(6, 7, dtype=torch.bool)
    inside[1:4, 2:6] = True
    assert torch.equal(mixed[:, inside], source[:, inside])
    assert torch.equal(mixed[:, ~inside], destination[:, ~inside])
    assert torch.equal(destination, torch.arange(2 * 6 * 7).reshape(2, 6, 7).float())


def test_labelled_mixing_pastes_images_and_labels_from_another_slice():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 3, (4, 1, 32, 32), generator=generator)
    cutmix = ImbalanceCutMix(RARE_FREQUENCIES, ALWAYS, seed=0)
    mixed_images, mixed_labels, unlabelled, targets = cutmix.mix(images, labels, None, [], 0.3)
    assert unlabelled is None and targets == []
    sources = []
    for i in range(4):
        box = _box_of((mixed_images[i] != images[i]).any(dim=0))
        assert (box.height, box.width) == (16, 16)
        inside = torch.zeros(32, 32, dtype=torch.bool)
        inside[box.region] = True
        matches = [
            j for j in range(4) if torch.equal(mixed_images[i][box.region], images[j][box.region])
        ]
        assert len(matches) == 1 and matches[0] != i
        j = matches[0]
        sources.append(j)
        assert torch.equal(mixed_images[i][:, ~inside], images[i][:, ~inside])
        assert torch.equal(mixed_labels[i][:, inside], labels[j][:, inside])
        assert torch.equal(mixed_labels[i][:, ~inside], labels[i][:, ~inside])
    assert sorted(sources) == [0, 1, 2, 3]  # every slice lends a box once


def test_mixed_teacher_targets_trust_the_pasted_labels_and_keep_the_teacher_elsewhere():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(3, 1, 32, 32, generator=generator)
    labels = torch.randint(0, 3, (3, 1, 32, 32), generator=generator)
    unlabelled = torch.rand(2, 1, 32, 32, generator=generator) + 2.0  # never equal to images
    teachers = []
    for confidence in (0.3, 0.6):
        probs = torch.softmax(torch.randn(2, 3, 32, 32, generator=generator), dim=1)
        teachers.append(torch.cat([probs, torch.full((2, 1, 32, 32), confidence)], dim=1))
    cutmix = ImbalanceCutMix(RARE_FREQUENCIES, ALWAYS, seed=0)
    _, _, mixed, targets = cutmix.mix(images, labels, unlabelled, teachers, 0.0)
    label_targets = labels_as_target(labels, 3)

    # Position 0: the unlabelled slice with a labelled box pasted in.
    from_labelled = mixed[0] < 2.0
    box = _box_of(from_labelled[0])
    (i,) = [i for i in range(3) if torch.equal(mixed[0][box.region], images[i][box.region])]
    for target, teacher in zip(targets, teachers, strict=True):
        assert torch.equal(target[0][:, from_labelled[0]], label_targets[i][:, from_labelled[0]])
        assert torch.all(target[0][-1][from_labelled[0]] == 1.0)
        assert torch.equal(target[0][:, ~from_labelled[0]], teacher[0][:, ~from_labelled[0]])

    # Position 1: a labelled slice with a box of the unlabelled one pasted in.
    from_unlabelled = mixed[1] >= 2.0
    box = _box_of(from_unlabelled[0])
    assert (box.height, box.width) == (16, 16)
    outside = ~from_unlabelled[0]
    (i,) = [i for i in range(3) if torch.equal(mixed[1][:, outside], images[i][:, outside])]
    for target, teacher in zip(targets, teachers, strict=True):
        assert torch.equal(target[1][:, outside], label_targets[i][:, outside])
        assert torch.all(target[1][-1][outside] == 1.0)
        assert torch.equal(target[1][:, ~outside], teacher[1][:, ~outside])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("prob", -0.1),
        ("prob", 1.5),
        ("prob", float("nan")),
        ("area", 0.0),
        ("area", 1.0),
        ("area", -0.2),
        ("anneal", -1.0),
    ],
)
def test_bad_cutmix_settings_are_refused_by_name(name, value):
    with pytest.raises(SsSegError, match=rf"cutmix\.{name} must"):
        TrainConfig.from_dict({"cutmix": {name: value}})


def test_cutmix_settings_round_trip_and_wrong_types_are_refused():
    config = TrainConfig.from_dict(
        {"cutmix": {"on": True, "prob": 0.3, "area": 0.1, "anneal": 0.5}}
    )
    assert config.cutmix == CutMixSettings(on=True, prob=0.3, area=0.1, anneal=0.5)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(SsSegError, match=r"cutmix\.on must be true or false"):
        TrainConfig.from_dict({"cutmix": {"on": "yes"}})
    with pytest.raises(SsSegError, match=r"cutmix\.area must be a finite number"):
        TrainConfig.from_dict({"cutmix": {"area": "0.2"}})


@pytest.fixture(scope="module")
def small_project() -> Project:
    image, labels = synthetic_case()
    volume = AnnotatedVolume.from_labels(
        Volume(data=image, affine=np.diag([1.0, 1.0, 2.0, 1.0]), name="case"),
        labels,
        axis=2,
        annotated_slices=[4, 8, 12],
    )
    return Project([volume], ["ellipsoid", "blob"])


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_weights(project: Project, **cutmix) -> dict[str, torch.Tensor]:
    """The weights of a 20-step ``ssl`` run on ``project`` with the CutMix settings
    ``cutmix``. Mean teacher and shape continuity teach from the first step, so unlabelled
    slices are mixed too."""
    values = {
        "method": "ssl",
        "agreement_every": 0,
        "device": "cpu",
        "seed": 5,
        "student": {"image_size": 32, "channels": [8, 16, 32]},
        "budget": {"max_iters": 20, "max_time": None, "teacher_start": 0.0, "gate_dice": 0.0},
        "batch": {
            "size": 2,
            "unlabelled": 2,
            "share": False,
            "target_cache": 4,
            "target_refresh": 10,
        },
        "cutmix": cutmix,
    }
    result = train(project, TrainConfig.from_dict(values))
    assert result.iterations == 20
    assert all(torch.isfinite(v).all() for v in result.state_dict.values())
    return result.state_dict


def test_training_with_cutmix_runs_and_probability_zero_changes_nothing(small_project, one_thread):
    plain = _train_weights(small_project, on=False)
    never = _train_weights(small_project, on=True, prob=0.0)
    always = _train_weights(small_project, on=True, prob=1.0, anneal=0.5)
    assert all(torch.equal(plain[k], never[k]) for k in plain)
    assert not all(torch.equal(plain[k], always[k]) for k in plain)


def test_ssl_mixes_by_default_with_two_classes_and_not_with_one(small_project, one_thread):
    def same(first: dict, second: dict) -> bool:
        return all(torch.equal(first[k], second[k]) for k in first)

    two_classes = _train_weights(small_project)
    assert same(two_classes, _train_weights(small_project, on=True))
    (volume,) = small_project.volumes
    merged = AnnotatedVolume.from_labels(
        volume.image,
        (volume.labels > 0).astype(volume.labels.dtype),
        axis=2,
        annotated_slices=[4, 8, 12],
    )
    one_class = Project([merged], ["organ"])
    one_class_default = _train_weights(one_class)
    assert same(one_class_default, _train_weights(one_class, on=False))
    assert not same(one_class_default, _train_weights(one_class, on=True))
