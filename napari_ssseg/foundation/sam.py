"""Segment Anything (ViT-B/L/H) and MedSAM (ViT-B) from a checkpoint file the user provides.

The architecture comes from ``segment_anything.sam_model_registry[card.architecture]`` built
without a checkpoint (its own loader unpickles); the weights are hash-checked and loaded with
``torch.load(weights_only=True)`` then strictly into the model.

Input: (B, 3, 1024, 1024) in [0, 1]. SAM cards normalise with SAM's pixel mean/std on a 0-255
scale and keep the padding at 0 afterwards, as ``Sam.preprocess`` does; MedSAM takes [0, 1]
directly and stretches the slice to 1024 x 1024 (its training geometry).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from napari_ssseg.errors import ModelCardError
from napari_ssseg.foundation.backend import FoundationBackend
from napari_ssseg.foundation.checkpoints import load_into, load_state_dict
from napari_ssseg.settings.model_cards import ModelCard, model_card


class SamBackend(FoundationBackend):
    """SAM or MedSAM; see the module docstring for preprocessing."""

    def __init__(
        self,
        card: ModelCard,
        weights_sha256: str,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
        pixel_mean: torch.Tensor,
        pixel_std: torch.Tensor,
    ) -> None:
        super().__init__(card, weights_sha256, image_encoder, prompt_encoder, mask_decoder)
        self.register_buffer("pixel_mean", pixel_mean.reshape(1, 3, 1, 1).float(), False)
        self.register_buffer("pixel_std", pixel_std.reshape(1, 3, 1, 1).float(), False)

    @classmethod
    def from_sam(cls, card: ModelCard, weights_sha256: str, sam: nn.Module) -> SamBackend:
        """Wrap a built ``segment_anything.modeling.Sam`` (its weights already in place)."""
        if card.family != "sam":
            raise ModelCardError(f"{card.model_id} is not a segment-anything model")
        return cls(
            card,
            weights_sha256,
            sam.image_encoder,
            sam.prompt_encoder,
            sam.mask_decoder,
            sam.pixel_mean,
            sam.pixel_std,
        )

    @classmethod
    def load(
        cls, model_id: str, checkpoint: str | Path, allow_unverified: bool = False
    ) -> SamBackend:
        """Build ``model_id`` (e.g. ``"sam_vit_b"``, ``"medsam_vit_b"``) from ``checkpoint``.

        The file must match the card's SHA-256; cards without one (MedSAM) need
        ``allow_unverified=True``.
        """
        card = model_card(model_id)
        if card.family != "sam":
            raise ModelCardError(f"{model_id} is not a segment-anything model; use its own backend")
        state, sha = load_state_dict(checkpoint, card, allow_unverified)
        from segment_anything import sam_model_registry

        sam = sam_model_registry[card.architecture](checkpoint=None)
        names = ("image_encoder", "prompt_encoder", "mask_decoder")
        parts = {name: getattr(sam, name) for name in names}
        load_into(parts, state, str(checkpoint))
        return cls.from_sam(card, sha, sam)

    def embed(
        self, images: torch.Tensor, valid_sizes: Sequence[tuple[int, int]] | None = None
    ) -> torch.Tensor:
        """Images (B, 3, 1024, 1024) in [0, 1] -> (B, 256, 64, 64)."""
        self._check_images(images)
        images = images.to(self.pixel_mean.device, torch.float32)
        if self.card.pixel_normalisation == "imagenet":
            images = (images * 255.0 - self.pixel_mean) / self.pixel_std
            if valid_sizes is not None:
                keep = torch.zeros_like(images[:, :1])
                for i, (h, w) in enumerate(valid_sizes):
                    keep[i, :, :h, :w] = 1.0
                images = images * keep
        return self.image_encoder(images)
