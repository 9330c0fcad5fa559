"""The interface every foundation model offers: a frozen image encoder and a prompt decoder.

Shapes (S = the card's input size, 256 for LiteMedSAM and 1024 for SAM/MedSAM):

* ``embed``: images (B, 3, S, S) float in [0, 1] -> embeddings (B, 256, 64, 64);
* ``decode``: embeddings (B, 256, 64, 64) and one prompt set per image -> mask logits
  (B, 1, s, s) at the decoder's low resolution (s = 256 for every card here);
* ``upscale``: (B, 1, s, s) -> (B, 1, S, S); :meth:`SliceTransform.logits_to_slice` goes on to
  the slice's own pixels.

Upstream segment-anything pairs *one* image with many prompts: given B images and B boxes its
mask decoder repeats every image B times. :meth:`FoundationBackend.decode` therefore calls the
decoder once per image with that image's prompts (the decoder is small next to the encoder).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from napari_ssseg.errors import InputError
from napari_ssseg.foundation.prompts import PromptSet
from napari_ssseg.foundation.transforms import SliceTransform
from napari_ssseg.settings.model_cards import ModelCard

PerImage = torch.Tensor | Sequence[torch.Tensor | None] | None


def _per_image(value: PerImage, count: int, name: str) -> list[torch.Tensor | None]:
    """Split a batched tensor or a list into one entry per image (None: no such prompt)."""
    if value is None:
        return [None] * count
    if len(value) != count:
        raise InputError(f"{name} has {len(value)} entries for {count} images")
    return [None if v is None else torch.as_tensor(v) for v in value]


class FoundationBackend(nn.Module, ABC):
    """A Segment-Anything-style model: ``image_encoder``, ``prompt_encoder``, ``mask_decoder``.

    The prompt encoder and mask decoder are segment-anything's own classes. All weights are
    frozen after loading (``requires_grad`` False); :mod:`napari_ssseg.foundation.lora` makes
    chosen adapters trainable.
    """

    def __init__(
        self,
        card: ModelCard,
        weights_sha256: str,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
    ) -> None:
        super().__init__()
        self.card = card
        self.weights_sha256 = weights_sha256
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.lora_settings: dict | None = None  # set by napari_ssseg.foundation.lora.add_lora
        self.requires_grad_(False)
        self.eval()

    @property
    def model_id(self) -> str:
        return self.card.model_id

    @property
    def input_size(self) -> int:
        """S: the encoder takes (B, 3, S, S)."""
        return self.card.input_size

    @property
    def cache_id(self) -> str:
        """Identifies the encoder's weights for the embedding cache: model id and file hash."""
        return f"{self.model_id}@{self.weights_sha256[:16]}"

    def slice_transform(self, slice_shape: tuple[int, int]) -> SliceTransform:
        """The geometry between a slice of ``slice_shape`` (H, W) and this encoder's input."""
        return SliceTransform(tuple(slice_shape), self.input_size, self.card.resize)

    def _check_images(self, images: torch.Tensor) -> None:
        size = self.input_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise InputError(
                f"{self.model_id} takes images (B, 3, {size}, {size}), got {tuple(images.shape)}"
            )

    @abstractmethod
    def embed(
        self, images: torch.Tensor, valid_sizes: Sequence[tuple[int, int]] | None = None
    ) -> torch.Tensor:
        """Images (B, 3, S, S) float in [0, 1] -> embeddings (B, 256, 64, 64).

        ``valid_sizes`` gives each image's (h, w) before padding (``SliceTransform``'s
        ``resized_shape``); backends whose normalisation moves the padding away from 0 use it
        to keep the padding at 0 as upstream preprocessing does.
        """

    def decode(
        self,
        embeddings: torch.Tensor,
        points: PerImage = None,
        point_labels: PerImage = None,
        boxes: PerImage = None,
    ) -> torch.Tensor:
        """Mask logits (B, 1, s, s) from embeddings (B, 256, 64, 64) and per-image prompts.

        Args:
            embeddings: (B, 256, 64, 64) from :meth:`embed` or the cache.
            points: (B, N, 2) or B tensors (N_i, 2) or None entries; (x, y) in the input frame.
            point_labels: matching (B, N) or B tensors (N_i,); 1 positive, 0 negative.
            boxes: (B, 4) or B tensors (4,) or None entries; (x0, y0, x1, y1), input frame.

        Every image needs at least one point or a box. Gradients flow (for LoRA training).
        """
        if embeddings.ndim != 4 or tuple(embeddings.shape[1:]) != self.card.embedding_shape:
            raise InputError(
                f"embeddings must be (B, {', '.join(map(str, self.card.embedding_shape))}), "
                f"got {tuple(embeddings.shape)}"
            )
        count = embeddings.shape[0]
        point_list = _per_image(points, count, "points")
        label_list = _per_image(point_labels, count, "point_labels")
        box_list = _per_image(boxes, count, "boxes")
        device = embeddings.device
        image_pe = self.prompt_encoder.get_dense_pe()
        masks = []
        for i in range(count):
            sparse_points = None
            if point_list[i] is not None and point_list[i].numel() > 0:
                if label_list[i] is None or label_list[i].shape[0] != point_list[i].shape[0]:
                    raise InputError(f"image {i}: point_labels must give one label per point")
                coords = point_list[i].to(device, torch.float32).reshape(1, -1, 2)
                labels = label_list[i].to(device, torch.int64).reshape(1, -1)
                sparse_points = (coords, labels)
            box = None if box_list[i] is None else box_list[i].to(device, torch.float32)
            if sparse_points is None and box is None:
                raise InputError(f"image {i} has neither points nor a box to prompt with")
            sparse, dense = self.prompt_encoder(
                points=sparse_points, boxes=None if box is None else box.reshape(1, 4), masks=None
            )
            low_res, _ = self.mask_decoder(
                image_embeddings=embeddings[i : i + 1],
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            masks.append(low_res)
        return torch.cat(masks)

    def decode_prompts(
        self, embeddings: torch.Tensor, prompts: Sequence[PromptSet]
    ) -> torch.Tensor:
        """:meth:`decode` with one :class:`PromptSet` (already in the input frame) per image."""
        return self.decode(
            embeddings,
            points=[p.points for p in prompts],
            point_labels=[p.labels for p in prompts],
            boxes=[p.box for p in prompts],
        )

    def upscale(self, logits: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits (B, 1, s, s) -> (B, 1, S, S) at the encoder input size."""
        size = self.input_size
        return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
