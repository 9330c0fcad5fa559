"""Which torch device a run or a prediction uses."""

from __future__ import annotations

import torch

from napari_ssseg.errors import SsSegError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SsSegError("device cuda was asked for but no CUDA GPU is available")
    return torch.device(name)
