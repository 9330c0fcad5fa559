"""Safetensors files written atomically: the embedding cache, LoRA adapters and pretrained
students all write this way, so a reader (or a crash) never meets half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file


def save_tensors_atomically(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``tensors`` (moved to the CPU, made contiguous) to ``path`` as safetensors with
    ``metadata``: into a hidden temporary file (``.tmp-<name>.*``) in the same folder, then one
    ``os.replace``; the temporary file is removed whatever happens. Returns ``path``."""
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        ready = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(ready, tmp_name, metadata=metadata)
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return path
