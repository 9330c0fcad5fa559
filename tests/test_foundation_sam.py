"""SamBackend preprocessing against segment-anything's own ``Sam.preprocess``, with a stand-in
image encoder (no SAM weights are available offline) on a small input size."""

import dataclasses

import numpy as np
import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from napari_ssseg.foundation.sam import SamBackend
from napari_ssseg.settings.model_cards import model_card

SIZE = 32


class RecordingEncoder(nn.Module):
    img_size = SIZE  # Sam.preprocess pads to this

    def forward(self, images):
        self.seen = images.clone()
        return torch.zeros(images.shape[0], 256, 64, 64)


def _sam() -> Sam:
    return Sam(
        image_encoder=RecordingEncoder(),
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(64, 64),
            input_image_size=(SIZE, SIZE),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=256,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=64, num_heads=8),
        ),
    )


def test_sam_input_matches_upstream_preprocess():
    card = dataclasses.replace(model_card("sam_vit_b"), input_size=SIZE)
    sam = _sam()
    backend = SamBackend.from_sam(card, "0" * 64, sam)
    image = np.random.default_rng(0).random((12, 20), dtype=np.float32)  # (H, W), wide
    transform = backend.slice_transform(image.shape)
    assert transform.resized_shape == (19, 32)
    encoded = transform.image_to_input(image)
    backend.embed(encoded[None], valid_sizes=[transform.resized_shape])
    ours = backend.image_encoder.seen

    h, w = transform.resized_shape
    upstream = sam.preprocess(255.0 * encoded[None, :, :h, :w])
    assert torch.allclose(ours, upstream, atol=1e-4)
    assert ours[..., h:, :].abs().max() == 0


def test_medsam_input_is_the_stretched_unit_image():
    card = dataclasses.replace(model_card("medsam_vit_b"), input_size=SIZE)
    backend = SamBackend.from_sam(card, "0" * 64, _sam())
    image = np.random.default_rng(1).random((12, 20), dtype=np.float32)
    transform = backend.slice_transform(image.shape)
    assert transform.resized_shape == (SIZE, SIZE)
    encoded = transform.image_to_input(image)
    backend.embed(encoded[None], valid_sizes=[transform.resized_shape])
    assert torch.equal(backend.image_encoder.seen, encoded[None])
    assert encoded.min() >= 0.0 and encoded.max() <= 1.0
