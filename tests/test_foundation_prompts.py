"""Slice <-> encoder geometry and prompts sampled from a mask, on a non-square slice with the
object off the diagonal, so that swapping x and y or H and W would put prompts elsewhere."""

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from napari_ssseg.errors import InputError
from napari_ssseg.foundation.prompts import prompts_from_mask, prompts_per_class
from napari_ssseg.foundation.transforms import SliceTransform

H, W = 60, 100  # wide slice
ROWS, COLS = slice(8, 24), slice(62, 92)  # object in the upper right


def _object_mask() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[ROWS, COLS] = True
    return mask


def test_longest_side_pad_geometry():
    transform = SliceTransform((H, W), 256)
    assert transform.resized_shape == (154, 256)
    image = np.zeros((H, W), np.float32)
    image[_object_mask()] = 1.0
    encoded = transform.image_to_input(image)
    assert encoded.shape == (3, 256, 256)
    assert torch.equal(encoded[0], encoded[2])
    assert encoded[:, 154:, :].abs().max() == 0  # padding at the bottom
    rows, cols = np.nonzero(encoded[0].numpy() > 0.5)
    assert rows.min() >= 8 * 2.56 - 2 and rows.max() <= 24 * 2.56 + 2
    assert cols.min() >= 62 * 2.56 - 2 and cols.max() <= 92 * 2.56 + 2
    points = torch.tensor([[3.0, 7.0], [99.0, 59.0]])
    assert torch.allclose(transform.points_to_slice(transform.points_to_input(points)), points)


def test_stretch_geometry_scales_axes_separately():
    transform = SliceTransform((H, W), 1024, "stretch")
    assert transform.resized_shape == (1024, 1024)
    box = transform.boxes_to_input(torch.tensor([10.0, 6.0, 50.0, 30.0]))
    assert torch.allclose(box, torch.tensor([102.4, 102.4, 512.0, 512.0]))


def test_logits_map_back_to_the_slice():
    transform = SliceTransform((H, W), 256)
    logits = torch.full((1, 1, 256, 256), -10.0)
    logits[..., 154:, :] = 10.0  # padding must be cropped away
    top, left = int(8 * 2.56), int(62 * 2.56)
    logits[..., top : int(24 * 2.56), left : int(92 * 2.56)] = 10.0
    mask = transform.logits_to_slice(logits)[0, 0].numpy() > 0
    assert mask.shape == (H, W)
    dice = 2 * (mask & _object_mask()).sum() / (mask.sum() + _object_mask().sum())
    assert dice > 0.95


def test_bad_slices_are_refused():
    transform = SliceTransform((H, W), 256)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        transform.image_to_input(np.full((H, W), 300.0))
    with pytest.raises(InputError, match="expected"):
        transform.image_to_input(np.zeros((W, H)))


def test_prompts_land_on_the_object_in_xy_order_in_the_encoder_frame():
    mask = _object_mask()
    transform = SliceTransform((H, W), 256)
    prompts = prompts_from_mask(mask, transform=transform, seed=3)
    assert prompts is not None
    assert (prompts.labels == 1).sum() == 5 and (prompts.labels == 0).sum() == 5
    sx, sy = transform.scale_xy
    # box (x0, y0, x1, y1) in encoder pixels
    assert torch.allclose(prompts.box, torch.tensor([62 * sx, 8 * sy, 91 * sx, 23 * sy]))
    image = np.zeros((H, W), np.float32)
    image[mask] = 1.0
    encoded = transform.image_to_input(image)[0]
    for x, y in prompts.positives.tolist():
        assert encoded[round(y), round(x)] > 0.9  # (x, y): column first
    for x, y in transform.points_to_slice(prompts.negatives).round().long().tolist():
        assert not mask[y, x]


def test_positives_are_deep_and_negatives_near():
    mask = _object_mask()
    prompts = prompts_from_mask(mask, n_positive=8, n_negative=8, seed=0)
    depth = distance_transform_edt(mask)
    outside = distance_transform_edt(~mask)
    for x, y in prompts.positives.long().tolist():
        assert depth[y, x] >= 3  # interior: the better half by depth of a 16-px-high box
    for x, y in prompts.negatives.long().tolist():
        assert 1 < outside[y, x] <= 0.25 * 30 + 1


def test_confident_pixels_are_preferred():
    prob = np.zeros((H, W), np.float32)
    prob[ROWS, 62:77] = 0.55  # left half barely above threshold
    prob[ROWS, 77:92] = 1.0
    prompts = prompts_from_mask(prob, n_positive=5, seed=1)
    assert (prompts.positives[:, 0] >= 77).all()


def test_sampling_is_deterministic_and_seeded():
    mask = _object_mask()
    first, again = prompts_from_mask(mask, seed=5), prompts_from_mask(mask, seed=5)
    assert torch.equal(first.points, again.points)
    other = prompts_from_mask(mask, seed=6)
    assert not torch.equal(first.points, other.points)


def test_empty_region_gives_no_prompt():
    assert prompts_from_mask(np.zeros((H, W))) is None
    probabilities = np.zeros((3, H, W), np.float32)
    probabilities[1][_object_mask()] = 0.9
    per_class = prompts_per_class(probabilities)
    assert per_class[1] is not None and per_class[2] is None
    assert 0 not in per_class


def test_region_filling_the_slice_has_no_negatives():
    prompts = prompts_from_mask(np.ones((8, 8)), n_positive=3)
    assert len(prompts.positives) == 3 and len(prompts.negatives) == 0
