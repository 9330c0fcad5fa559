"""Image embeddings on disk: the frozen encoder runs once per slice and model.

Each embedding (256, 64, 64) float32 (4 MiB) is one safetensors file named by a key: the
SHA-256 of the slice's float32 bytes and shape, the backend's ``cache_id`` (model id and the
checkpoint's hash) and the input size. A changed slice, another model or other weights give
another key. Files are written to a temporary name and renamed, so readers never see half a
file; the least recently used files are removed once the folder exceeds ``max_bytes``.

Encoder LoRA changes the embeddings without changing the key, so :func:`embed_slices` refuses
to use a cache for an encoder with trainable weights.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from napari_ssseg.errors import InputError
from napari_ssseg.foundation.backend import FoundationBackend
from napari_ssseg.foundation.transforms import SliceTransform
from napari_ssseg.io.tensor_file import save_tensors_atomically

FORMAT = "ssseg-embedding-v1"
SUFFIX = ".safetensors"


class EmbeddingCache:
    """A folder of embeddings keyed by slice content, model and input size.

    Attributes:
        root: the folder (created if missing).
        max_bytes: size bound; None for unbounded.
        hits, misses: lookups answered from disk / not found since creation.
    """

    def __init__(self, root: str | Path, max_bytes: int | None = 2 << 30) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(image: np.ndarray, model_key: str, input_size: int) -> str:
        """Cache key of a slice (H, W) for a model (its ``cache_id``) at an input size."""
        data = np.ascontiguousarray(image, dtype=np.float32)
        digest = hashlib.sha256(f"{FORMAT}|{model_key}|{input_size}|{data.shape}|".encode())
        digest.update(data.tobytes())
        return digest.hexdigest()[:40]

    def _path(self, key: str) -> Path:
        return self.root / f"{key}{SUFFIX}"

    def has(self, key: str) -> bool:
        """Whether an embedding is stored under ``key`` (not counted as a hit or a miss)."""
        return self._path(key).is_file()

    def get(self, key: str) -> torch.Tensor | None:
        """The stored embedding (256, 64, 64) or None; an unreadable file counts as a miss."""
        path = self._path(key)
        try:
            embedding = load_file(path)["embedding"]
            os.utime(path)  # recently used: evicted last
        except (FileNotFoundError, SafetensorError, KeyError, OSError):
            self.misses += 1
            return None
        self.hits += 1
        return embedding

    def put(self, key: str, embedding: torch.Tensor) -> None:
        """Store one embedding (256, 64, 64) atomically, then enforce ``max_bytes``."""
        tensor = embedding.detach().to("cpu", torch.float32)
        save_tensors_atomically({"embedding": tensor}, self._path(key), {"format": FORMAT})
        self._evict(keep=self._path(key))

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob(f"[!.]*{SUFFIX}") if p.is_file())

    def _evict(self, keep: Path) -> None:
        if self.max_bytes is None:
            return
        files = []
        for path in self.root.glob(f"[!.]*{SUFFIX}"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed by another process meanwhile
                continue
            files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size


def embed_slices(
    backend: FoundationBackend,
    slices: Sequence[np.ndarray],
    cache: EmbeddingCache | None = None,
    batch_size: int = 4,
) -> tuple[torch.Tensor, list[SliceTransform]]:
    """Embeddings (B, 256, 64, 64) of slices (H_i, W_i) in [0, 1], using and filling ``cache``.

    Returns the embeddings and each slice's :class:`SliceTransform` (to map prompts in and
    masks out). Only cache misses go through the encoder, in batches of ``batch_size``, without
    gradients.
    """
    if not slices:
        raise InputError("no slices to embed")
    encoder_trains = any(p.requires_grad for p in backend.image_encoder.parameters())
    if cache is not None and encoder_trains:
        raise InputError(
            "the image encoder has trainable (LoRA) weights: its embeddings change during "
            "training, so they must not be cached; call embed_slices without a cache"
        )
    transforms = [backend.slice_transform(np.shape(s)) for s in slices]
    keys = [
        None if cache is None else cache.key(s, backend.cache_id, backend.input_size)
        for s in slices
    ]
    found: dict[int, torch.Tensor] = {}
    if cache is not None:
        for i, key in enumerate(keys):
            hit = cache.get(key)
            if hit is not None:
                found[i] = hit
    missing = [i for i in range(len(slices)) if i not in found]
    for start in range(0, len(missing), batch_size):
        chunk = missing[start : start + batch_size]
        images = torch.stack([transforms[i].image_to_input(slices[i]) for i in chunk])
        sizes = [transforms[i].resized_shape for i in chunk]
        with torch.set_grad_enabled(encoder_trains and torch.is_grad_enabled()):
            embeddings = backend.embed(images, valid_sizes=sizes)
        for i, embedding in zip(chunk, embeddings, strict=True):
            found[i] = embedding
            if cache is not None:
                cache.put(keys[i], embedding)
    device = next(backend.parameters()).device
    return torch.stack([found[i].to(device) for i in range(len(slices))]), transforms
