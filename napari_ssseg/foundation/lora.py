"""LoRA adapters (peft) on a foundation backend; only adapters are trained and saved.

Default targets: the q/k/v/out projections of every attention block of the mask decoder's
two-way transformer (self-attention, both cross-attentions and the final token-to-image
attention). Everything else stays frozen, so cached image embeddings remain valid.

``encoder=True`` also adapts the image encoder's ``qkv`` projections. That changes the
embeddings, so the embedding cache cannot be used and the encoder runs with gradients on every
step: practical on a GPU only (LiteMedSAM's encoder takes about 1 s per slice on this CPU
without gradients).

Saved files are safetensors with every trainable tensor (the LoRA matrices) and the settings
in the metadata; loading re-creates the adapters and refuses files that do not fit.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from napari_ssseg.foundation.backend import FoundationBackend
from napari_ssseg.foundation.errors import CheckpointError
from napari_ssseg.io.tensor_file import save_tensors_atomically

log = logging.getLogger(__name__)

DECODER_TARGETS = r"mask_decoder\.transformer\..*\.(q_proj|k_proj|v_proj|out_proj)"
ENCODER_TARGETS = r"image_encoder\..*\.qkv"
ADAPTER_MARK = "lora_"


def trainable_parameter_count(module: nn.Module) -> int:
    """Number of scalar parameters with ``requires_grad``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def add_lora(
    backend: FoundationBackend,
    rank: int = 4,
    alpha: float | None = None,
    dropout: float = 0.0,
    encoder: bool = False,
) -> int:
    """Wrap the decoder's attention projections (and optionally the encoder's qkv) with LoRA.

    Freezes every other weight of ``backend`` and returns (and logs) the trainable parameter
    count. ``alpha`` defaults to ``rank`` (scale 1). A backend takes adapters only once.
    """
    if getattr(backend, "lora_settings", None) is not None:
        raise CheckpointError(f"{backend.model_id} already has LoRA adapters")
    if rank < 1:
        raise CheckpointError(f"LoRA rank must be at least 1, got {rank}")
    from peft import LoraConfig, inject_adapter_in_model

    pattern = DECODER_TARGETS if not encoder else f"(?:{DECODER_TARGETS})|(?:{ENCODER_TARGETS})"
    settings = {
        "model_id": backend.model_id,
        "rank": rank,
        "alpha": float(rank if alpha is None else alpha),
        "dropout": dropout,
        "encoder": encoder,
    }
    config = LoraConfig(
        r=rank,
        lora_alpha=settings["alpha"],
        lora_dropout=dropout,
        target_modules=pattern,
        bias="none",
    )
    backend.requires_grad_(False)
    inject_adapter_in_model(config, backend)
    for name, parameter in backend.named_parameters():
        parameter.requires_grad = ADAPTER_MARK in name
    backend.lora_settings = settings
    count = trainable_parameter_count(backend)
    log.info(
        "LoRA rank %d on %s (%s): %d trainable parameters of %d",
        rank,
        backend.model_id,
        "decoder + encoder" if encoder else "decoder",
        count,
        sum(p.numel() for p in backend.parameters()),
    )
    return count


def save_lora(backend: FoundationBackend, path: str | Path) -> Path:
    """Write the trainable tensors and LoRA settings to ``path`` (safetensors, atomic)."""
    settings = getattr(backend, "lora_settings", None)
    if settings is None:
        raise CheckpointError(f"{backend.model_id} has no LoRA adapters to save")
    tensors = {name: p for name, p in backend.named_parameters() if p.requires_grad}
    return save_tensors_atomically(tensors, path, {"lora": json.dumps(settings)})


def load_lora(backend: FoundationBackend, path: str | Path) -> None:
    """Add the adapters recorded in ``path`` to ``backend`` (if absent) and load their weights.

    Raises:
        CheckpointError: unreadable file, another model, other LoRA settings, or tensors whose
            names or shapes do not match the adapters.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            settings = json.loads((handle.metadata() or {})["lora"])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not a LoRA file written by save_lora ({error})") from error
    if settings.get("model_id") != backend.model_id:
        raise CheckpointError(
            f"{path}: LoRA for {settings.get('model_id')!r}, not for {backend.model_id!r}"
        )
    current = getattr(backend, "lora_settings", None)
    if current is None:
        add_lora(
            backend,
            rank=settings["rank"],
            alpha=settings["alpha"],
            dropout=settings["dropout"],
            encoder=settings["encoder"],
        )
    elif current != settings:
        raise CheckpointError(f"{path}: LoRA settings {settings} differ from the model's {current}")
    params = {name: p for name, p in backend.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: tensors do not fit the adapters (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    with torch.no_grad():
        for name, parameter in params.items():
            if tensors[name].shape != parameter.shape:
                raise CheckpointError(
                    f"{path}: {name} has shape {tuple(tensors[name].shape)}, "
                    f"expected {tuple(parameter.shape)}"
                )
            parameter.copy_(tensors[name])
