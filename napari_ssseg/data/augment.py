"""Random augmentation of 2-D training samples (MONAI dictionary transforms)."""

from __future__ import annotations

import torch
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandGaussianNoised,
    RandScaleIntensityd,
)
from monai.utils import convert_to_tensor


def make_augmentation(seed: int) -> Compose:
    """Rotation, scaling and translation plus intensity jitter; keys ``image`` and ``label``.

    The spatial transform moves image and label together; ``label`` may be missing
    (unlabelled samples).
    """
    transform = Compose(
        [
            RandAffined(
                keys=["image", "label"],
                prob=0.8,
                rotate_range=0.3,
                scale_range=(0.15, 0.15),
                translate_range=(8, 8),
                mode=("bilinear", "nearest"),
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


def augment_batch(
    transform: Compose, images: torch.Tensor, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Augment each sample of (B, C, S, S) images (and (B, 1, S, S) labels) independently."""
    out_images, out_labels = [], []
    for i in range(images.shape[0]):
        sample = {"image": images[i]}
        if labels is not None:
            sample["label"] = labels[i].float()
        result = transform(sample)
        out_images.append(convert_to_tensor(result["image"], track_meta=False).float())
        if labels is not None:
            out_labels.append(convert_to_tensor(result["label"], track_meta=False).round().long())
    return torch.stack(out_images), (torch.stack(out_labels) if labels is not None else None)
