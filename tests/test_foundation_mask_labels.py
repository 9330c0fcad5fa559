"""Per-class foundation-model masks to labels and probabilities: where masks nest, the
smaller one wins."""

from __future__ import annotations

import numpy as np
import torch

from napari_ssseg.foundation.mask_labels import (
    labels_from_mask_logits,
    nested_class_probabilities,
)


def wall_cavity_corner_logits() -> np.ndarray:
    """(3, 10, 10): a filled wall mask (class 2, 8x8) holding a cavity's (class 3, 4x4) and
    more confident there; a corner mask (class 1, 3x3) overlapping the wall."""
    logits = np.full((3, 10, 10), -5.0, np.float32)
    logits[1, 1:9, 1:9] = 9.0
    logits[2, 3:7, 3:7] = 2.0
    logits[0, 0:3, 0:3] = 1.0
    return logits


def test_nested_masks_give_the_inner_class_its_pixels_whatever_the_logits():
    logits = wall_cavity_corner_logits()
    labels = labels_from_mask_logits(logits, np.array([1, 2, 3]))
    expected = np.zeros((10, 10), np.int16)
    expected[1:9, 1:9] = 2
    expected[3:7, 3:7] = 3
    expected[0:3, 0:3] = 1
    assert np.array_equal(labels, expected)
    # The larger logit would have kept the wall over the cavity.
    assert (logits.argmax(axis=0)[3:7, 3:7] == 1).all()
    assert not labels_from_mask_logits(np.full((2, 4, 4), -1.0), np.array([1, 2])).any()


def test_nested_probabilities_against_hand_values():
    masks = torch.tensor(
        [
            [[0.9, 0.9, 0.9], [0.9, 0.9, 0.9]],  # wall: 6 pixels
            [[0.0, 0.8, 0.0], [0.0, 0.2, 0.0]],  # cavity: 1 pixel above one half
        ]
    )
    out = nested_class_probabilities(masks)
    assert torch.allclose(out[1], masks[1])  # the smallest keeps its own
    expected_wall = torch.tensor([[0.9, 0.9 * 0.2, 0.9], [0.9, 0.9 * 0.8, 0.9]])
    assert torch.allclose(out[0], expected_wall)
    # Hard labels from the probabilities agree with the logit rule on the same masks.
    logits = torch.logit(masks.clamp(1e-4, 1 - 1e-4)).numpy()
    hard = labels_from_mask_logits(logits, np.array([1, 2]))
    soft = np.where(out.max(dim=0).values.numpy() > 0.5, out.argmax(dim=0).numpy() + 1, 0)
    assert np.array_equal(hard, soft)
    assert hard[0, 1] == 2 and hard[1, 1] == 1
