"""Embedding cache: the encoder runs once per slice and model; changes miss; files are atomic
and the folder stays under its bound. A tiny stand-in encoder keeps this fast."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from napari_ssseg.errors import InputError
from napari_ssseg.foundation.backend import FoundationBackend
from napari_ssseg.foundation.embedding_cache import EmbeddingCache, embed_slices
from napari_ssseg.settings.model_cards import model_card

SIZE = 64


class CountingEncoder(nn.Module):
    """(B, 3, 64, 64) -> (B, 256, 64, 64), counting the images it sees."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 256, 1)
        self.images_seen = 0

    def forward(self, images):
        self.images_seen += images.shape[0]
        return self.conv(images)


class TinyBackend(FoundationBackend):
    def __init__(self, model_id: str = "tiny", weights: str = "a" * 64, seed: int = 0) -> None:
        card = dataclasses.replace(model_card("litemedsam"), model_id=model_id, input_size=SIZE)
        super().__init__(card, weights, CountingEncoder(seed), nn.Identity(), nn.Identity())

    def embed(self, images, valid_sizes=None):
        self._check_images(images)
        return self.image_encoder(images)


def _slices(count=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((30 + i, 50), dtype=np.float32) for i in range(count)]


def test_second_call_is_a_hit_with_identical_embeddings(tmp_path):
    backend, cache = TinyBackend(), EmbeddingCache(tmp_path)
    first, transforms = embed_slices(backend, _slices(), cache)
    assert first.shape == (3, 256, 64, 64) and backend.image_encoder.images_seen == 3
    assert [t.slice_shape for t in transforms] == [(30, 50), (31, 50), (32, 50)]
    again, _ = embed_slices(backend, _slices(), cache)
    assert backend.image_encoder.images_seen == 3  # encoder not run again
    assert cache.hits == 3 and torch.equal(first, again)


def test_a_changed_slice_misses(tmp_path):
    backend, cache = TinyBackend(), EmbeddingCache(tmp_path)
    slices = _slices()
    embed_slices(backend, slices, cache)
    slices[1] = slices[1].copy()
    slices[1][5, 5] += 0.01
    embed_slices(backend, slices, cache)
    assert backend.image_encoder.images_seen == 4 and cache.hits == 2


def test_another_model_or_other_weights_miss(tmp_path):
    cache = EmbeddingCache(tmp_path)
    embed_slices(TinyBackend(), _slices(), cache)
    other_model = TinyBackend(model_id="tiny2")
    embed_slices(other_model, _slices(), cache)
    other_weights = TinyBackend(weights="b" * 64, seed=1)
    embedded, _ = embed_slices(other_weights, _slices(), cache)
    assert other_model.image_encoder.images_seen == 3
    assert other_weights.image_encoder.images_seen == 3
    assert cache.hits == 0
    inputs = [other_weights.slice_transform(s.shape).image_to_input(s) for s in _slices()]
    with torch.no_grad():
        expected = other_weights.embed(torch.stack(inputs))
    assert torch.allclose(embedded, expected)


def test_files_are_safetensors_and_the_folder_stays_bounded(tmp_path):
    one_file = 256 * 64 * 64 * 4
    cache = EmbeddingCache(tmp_path, max_bytes=int(2.5 * one_file))
    backend = TinyBackend()
    embed_slices(backend, _slices(5), cache)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 2 and all(f.suffix == ".safetensors" for f in files)
    assert cache.size_bytes() <= 2.5 * one_file
    embed_slices(backend, _slices(5)[-2:], cache)  # the two most recent are still there
    assert cache.hits == 2


def test_corrupt_file_is_a_miss_and_is_rewritten(tmp_path):
    backend, cache = TinyBackend(), EmbeddingCache(tmp_path)
    embed_slices(backend, _slices(1), cache)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"garbage")
    embed_slices(backend, _slices(1), cache)
    assert cache.hits == 0 and backend.image_encoder.images_seen == 2
    assert EmbeddingCache(tmp_path).get(path.stem) is not None


def test_trainable_encoder_refuses_the_cache(tmp_path):
    backend = TinyBackend()
    backend.image_encoder.conv.weight.requires_grad = True
    with pytest.raises(InputError, match="must not be cached"):
        embed_slices(backend, _slices(1), EmbeddingCache(tmp_path))
    embedded, _ = embed_slices(backend, _slices(1))
    assert embedded.requires_grad
