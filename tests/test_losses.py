"""Loss, uncertainty and schedule functions against values computed by hand."""

import math

import pytest
import torch

from napari_ssseg.networks.uncertainty import (
    mc_dropout_probs,
    normalised_entropy,
    slice_uncertainty_scores,
)
from napari_ssseg.settings.budget import poly_lr, sigmoid_rampup
from napari_ssseg.training.losses import (
    gated_consistency_loss,
    gated_pseudo_label_loss,
    supervised_loss,
    weighted_pseudo_label_loss,
)


def test_normalised_entropy_hand_values():
    probs = torch.tensor([[0.5, 1.0, 0.9], [0.5, 0.0, 0.1]]).reshape(1, 2, 3)
    expected = [1.0, 0.0, -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)]
    assert normalised_entropy(probs)[0].tolist() == pytest.approx(expected, abs=1e-6)
    uniform = torch.full((1, 4, 2, 2), 0.25)
    assert torch.allclose(normalised_entropy(uniform), torch.ones(1, 2, 2))


def test_gated_consistency_hand_value():
    # Two pixels, two classes. Student logits 0 -> probs (0.5, 0.5).
    student = torch.zeros(1, 2, 1, 2)
    teacher = torch.tensor([[1.0, 0.8], [0.0, 0.2]]).reshape(1, 2, 1, 2)
    uncertainty = torch.tensor([[[0.1, 0.9]]])
    # Pixel 0 counts: (0.5 - 1)^2 + (0.5 - 0)^2 = 0.5; pixel 1 is gated out.
    assert float(gated_consistency_loss(student, teacher, uncertainty, 0.5)) == pytest.approx(0.5)
    # Both count: pixel 1 gives 0.3^2 * 2 = 0.18; mean (0.5 + 0.18) / 2.
    assert float(gated_consistency_loss(student, teacher, uncertainty, 1.0)) == pytest.approx(0.34)
    assert float(gated_consistency_loss(student, teacher, uncertainty, 0.05)) == 0.0


def test_gated_pseudo_label_hand_value():
    student = torch.tensor([[2.0, 0.0], [0.0, 0.0]]).reshape(1, 2, 1, 2)
    teacher = torch.tensor([[0.9, 0.3], [0.1, 0.7]]).reshape(1, 2, 1, 2)
    uncertainty = torch.tensor([[[0.2, 0.2]]])
    # Pixel 0: target 0, CE = log(1 + e^-2); pixel 1: target 1, CE = log 2.
    expected = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    assert float(gated_pseudo_label_loss(student, teacher, uncertainty, 0.5)) == pytest.approx(
        expected, rel=1e-5
    )


def test_weighted_pseudo_label_hand_value():
    student = torch.tensor([[2.0, 0.0], [0.0, 0.0]]).reshape(1, 2, 1, 2)
    teacher = torch.tensor([[0.9, 0.3], [0.1, 0.7]]).reshape(1, 2, 1, 2)
    weight = torch.tensor([[[1.0, 0.5]]])
    # Mean over both pixels of weight * CE: (log(1 + e^-2) + 0.5 log 2) / 2.
    expected = (math.log(1 + math.exp(-2)) + 0.5 * math.log(2)) / 2
    loss = weighted_pseudo_label_loss(student, teacher, weight)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(weighted_pseudo_label_loss(student, teacher, torch.zeros(1, 1, 2))) == 0.0


def test_supervised_loss_is_low_for_perfect_logits_and_high_for_wrong():
    labels = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    labels[..., 1:3, 1:3] = 1
    onehot = torch.cat([(labels == 0), (labels == 1)], dim=1).float()
    loss = supervised_loss()
    assert float(loss(onehot * 20 - 10, labels)) < 0.01
    assert float(loss((1 - onehot) * 20 - 10, labels)) > 1.5


def test_sigmoid_rampup_and_poly_lr():
    assert sigmoid_rampup(0.0, 0.4) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(0.2, 0.4) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(0.9, 0.4) == 1.0
    assert sigmoid_rampup(0.1, 0.0) == 1.0
    assert poly_lr(1.0, 0.5, power=1.0) == pytest.approx(0.5)
    assert poly_lr(2e-3, 1.0) == 0.0


def test_mc_dropout_mean_and_spread():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Conv2d(1, 2, 1))
    model.eval()
    x = torch.ones(3, 1, 4, 4)
    probs = mc_dropout_probs(model, x, passes=16)
    assert probs.shape == (3, 2, 4, 4)
    assert torch.allclose(probs.sum(dim=1), torch.ones(3, 4, 4), atol=1e-5)
    # Dropout was active: different pixels saw different masks, so results differ.
    assert probs.std() > 0
    assert not model.training and not model[0].training  # modes restored


def test_slice_scores_are_means():
    u = torch.zeros(3, 2, 2)
    u[1] = 1.0
    u[2, 0, 0] = 0.4
    assert slice_uncertainty_scores(u).tolist() == pytest.approx([0.0, 1.0, 0.1])


def test_ema_teacher_warm_up_and_decay():
    from napari_ssseg.training.ema import ema_teacher

    student = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        student.weight.fill_(0.0)
    teacher = ema_teacher(student, decay=0.9)
    values = []
    for target in (1.0, 2.0, 3.0, 4.0):
        with torch.no_grad():
            student.weight.fill_(target)
        teacher.update_parameters(student)
        values.append(float(teacher.module.weight))
    # n=0: copy (1); n=1: alpha 0.5 -> 1.5; n=2: alpha 2/3 -> 2; n=3: alpha min(0.75, 0.9) -> 2.5
    assert values == pytest.approx([1.0, 1.5, 2.0, 2.5])
    for _ in range(30):
        teacher.update_parameters(student)
    # The gap to the student (4 - 2.5) shrinks by alpha each update: alpha = n / (n + 1) for
    # n = 4..8, then capped at 0.9 for the remaining 25 updates.
    gap = 1.5 * (4 / 5) * (5 / 6) * (6 / 7) * (7 / 8) * (8 / 9) * 0.9**25
    assert float(teacher.module.weight) == pytest.approx(4 - gap, rel=1e-5)
