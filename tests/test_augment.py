"""Augmentation: the common one moves labels with images; the strong view perturbs only."""

from __future__ import annotations

import torch

from napari_ssseg.data.augment import make_strong_perturbation, perturb_batch


def _slices(count: int = 6, size: int = 64) -> torch.Tensor:
    """(count, 1, size, size) slices in [0, 1]: a bright square on a gradient."""
    ramp = torch.linspace(0.0, 0.5, size)
    images = ramp[None, None, :, None].expand(count, 1, size, size).clone()
    images[:, :, 20:40, 24:44] = 0.9
    return images


def test_strong_perturbation_keeps_shape_is_seeded_and_perturbs():
    images = _slices()
    first = perturb_batch(make_strong_perturbation(0, 64), images)
    again = perturb_batch(make_strong_perturbation(0, 64), images)
    other = perturb_batch(make_strong_perturbation(1, 64), images)
    assert first.shape == images.shape and first.dtype == torch.float32
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    changed = [(a - b).abs().max() > 1e-3 for a, b in zip(first, images, strict=True)]
    assert sum(changed) >= len(images) - 1  # at most one of six untouched by chance


def test_strong_perturbation_cuts_out_holes_sized_by_the_slice():
    # Only cut-out can set a whole block of a strictly positive image to exactly 0.
    images = _slices(count=40) + 0.05
    perturbed = perturb_batch(make_strong_perturbation(3, 64), images)
    holes = (perturbed == 0.0).flatten(1).sum(dim=1)
    with_holes = holes[holes > 0]
    assert len(with_holes) >= 5, "cut-out fired on too few of 40 slices"
    # Each hole is 8x8 to 16x16 pixels (an eighth to a quarter of 64), at most three of them.
    assert int(with_holes.min()) >= 8 * 8 - 1
    assert int(with_holes.max()) <= 3 * 16 * 16
