"""Random augmentation of 2-D training samples (MONAI dictionary transforms).

The samples go through the transforms without MONAI's metadata tracking: the slices carry
no affine worth keeping, and tracking (a MetaTensor per key, the affine of every step) took
half the augmentation's time for the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandAdjustContrastd,
    RandAffined,
    RandCoarseDropout,
    RandGaussianNoise,
    RandGaussianNoised,
    RandGaussianSmooth,
    RandScaleIntensity,
    RandScaleIntensityd,
    RandShiftIntensity,
)
from monai.utils import convert_to_tensor


def make_augmentation(seed: int) -> Compose:
    """Rotation, scaling and translation plus intensity jitter.

    Keys: ``image`` (C, S, S); optional ``label`` (1, S, S) resampled nearest and
    ``target`` (K, S, S) soft maps resampled bilinearly. The spatial transform moves all
    keys together; areas moved in from outside the slice are zero in every key.
    """
    transform = Compose(
        [
            RandAffined(
                keys=["image", "label", "target"],
                prob=0.8,
                rotate_range=0.3,
                scale_range=(0.15, 0.15),
                translate_range=(8, 8),
                mode=("bilinear", "nearest", "bilinear"),
                padding_mode="zeros",
                allow_missing_keys=True,
            ),
            RandScaleIntensityd(keys="image", factors=0.1, prob=0.3),
            RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3),
            RandGaussianNoised(keys="image", std=0.03, prob=0.2),
        ]
    )
    transform.set_random_state(seed=seed)
    return transform


def make_strong_perturbation(seed: int, size: int) -> Compose:
    """Strong photometric perturbation and cut-out of an image (C, S, S), geometry unchanged.

    Applied on top of :func:`make_augmentation` to the student's view of unannotated slices
    only (FixMatch-style): the teacher's targets come from the unperturbed slice, so the
    student learns to give the same answer through contrast, blur, noise and missing patches.
    """
    transform = Compose(
        [
            RandAdjustContrast(gamma=(0.5, 2.0), prob=0.8),
            RandScaleIntensity(factors=0.25, prob=0.5),
            RandShiftIntensity(offsets=0.1, prob=0.5),
            RandGaussianSmooth(sigma_x=(0.5, 1.5), sigma_y=(0.5, 1.5), prob=0.3),
            RandGaussianNoise(std=0.08, prob=0.5),
            # One to three holes, each side an eighth to a quarter of the slice's ``size``.
            RandCoarseDropout(
                holes=1,
                max_holes=3,
                spatial_size=max(1, size // 8),
                max_spatial_size=max(1, size // 4),
                fill_value=0.0,
                prob=0.5,
            ),
        ]
    )
    transform.set_random_state(seed=seed)
    return transform


@contextmanager
def untracked() -> Iterator[None]:
    """MONAI's metadata tracking off inside the block. It is a process-wide setting,
    restored on leaving: MONAI code running in another thread meanwhile sees it off too."""
    previous = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(previous)


def perturb_batch(transform: Compose, images: torch.Tensor) -> torch.Tensor:
    """Each sample of (B, C, S, S) ``images`` through ``transform`` independently."""
    with untracked():
        perturbed = [transform(image) for image in images]
    return torch.stack([convert_to_tensor(image, track_meta=False).float() for image in perturbed])


def augment_batch(
    transform: Compose, images: torch.Tensor, extra: dict[str, torch.Tensor] | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Augment each sample of (B, C, S, S) ``images`` independently.

    ``extra`` maps ``label`` ((B, 1, S, S) int) and/or ``target`` ((B, K, S, S) float) to
    tensors moved with the images; they come back under the same keys.
    """
    extra = extra or {}
    out_images: list[torch.Tensor] = []
    out_extra: dict[str, list[torch.Tensor]] = {key: [] for key in extra}
    with untracked():
        for i in range(images.shape[0]):
            sample = {"image": images[i]} | {k: value[i].float() for k, value in extra.items()}
            result = transform(sample)
            out_images.append(convert_to_tensor(result["image"], track_meta=False).float())
            for key in extra:
                value = convert_to_tensor(result[key], track_meta=False)
                out_extra[key].append(value.round().long() if key == "label" else value.float())
    return torch.stack(out_images), {key: torch.stack(v) for key, v in out_extra.items()}
