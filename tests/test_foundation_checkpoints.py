"""Checkpoints: wrong bytes are refused with both hashes, pickled code never runs, downloads
are verified before they get their final name."""

import dataclasses
import hashlib
import pathlib

import pytest
import torch

from napari_ssseg.errors import ModelCardError, SsSegError
from napari_ssseg.foundation.checkpoints import download_checkpoint, load_state_dict
from napari_ssseg.foundation.errors import CheckpointError
from napari_ssseg.foundation.litemedsam import LiteMedSamBackend
from napari_ssseg.foundation.sam import SamBackend
from napari_ssseg.settings.model_cards import model_card


def _card_for(path, **changes):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return dataclasses.replace(
        model_card("sam_vit_b"), sha256=digest, filename="weights.pth", **changes
    )


def test_checkpoint_with_wrong_bytes_is_refused_naming_file_and_both_hashes(tmp_path):
    bad = tmp_path / "lite_medsam.pth"
    bad.write_bytes(b"not the LiteMedSAM weights")
    actual = hashlib.sha256(bad.read_bytes()).hexdigest()
    expected = model_card("litemedsam").sha256
    with pytest.raises(CheckpointError) as caught:
        LiteMedSamBackend.load(checkpoint=bad)
    message = str(caught.value)
    assert str(bad) in message and expected in message and actual in message
    assert isinstance(caught.value, SsSegError)


def test_card_without_hash_needs_the_explicit_flag(tmp_path):
    path = tmp_path / "medsam_vit_b.pth"
    torch.save({"mask_decoder.w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match="no published SHA-256.*allow_unverified"):
        SamBackend.load("medsam_vit_b", path)
    state, digest = load_state_dict(path, model_card("medsam_vit_b"), allow_unverified=True)
    assert torch.equal(state["mask_decoder.w"], torch.ones(2))
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()


class _WritesAFileWhenUnpickled:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickled_code_is_refused_not_executed(tmp_path):
    path, marker = tmp_path / "evil.pth", tmp_path / "ran"
    torch.save({"model": {"w": torch.ones(1)}, "extra": _WritesAFileWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_state_dict(path, _card_for(path))
    assert not marker.exists()


def test_sam_backend_refuses_a_non_sam_card(tmp_path):
    with pytest.raises(ModelCardError, match="not a segment-anything model"):
        SamBackend.load("litemedsam", tmp_path / "x.pth")


def test_download_verifies_then_renames(tmp_path):
    source = tmp_path / "source.pth"
    source.write_bytes(b"weights" * 1000)
    card = _card_for(source)
    cache = tmp_path / "cache"
    target = download_checkpoint(card, cache, url=source.as_uri())
    assert target == cache / "weights.pth" and target.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == ["weights.pth"]
    # reused, not fetched again: a dead URL does not matter once the file is there
    assert download_checkpoint(card, cache, url=(tmp_path / "gone").as_uri()) == target


def test_download_with_wrong_hash_keeps_nothing(tmp_path):
    source = tmp_path / "source.pth"
    source.write_bytes(b"tampered")
    card = dataclasses.replace(_card_for(source), sha256="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match="expected 0{64}, got"):
        download_checkpoint(card, cache, url=source.as_uri())
    assert list(cache.iterdir()) == []


def test_download_refuses_cards_without_hash_or_url(tmp_path):
    with pytest.raises(CheckpointError, match="no download URL"):
        download_checkpoint(model_card("medsam_vit_b"), tmp_path)
    card = dataclasses.replace(model_card("medsam_vit_b"), download_url="file:///dev/null")
    with pytest.raises(CheckpointError, match="cannot be verified"):
        download_checkpoint(card, tmp_path)
    missing = dataclasses.replace(model_card("sam_vit_b"))
    with pytest.raises(CheckpointError, match="download of sam_vit_b failed"):
        download_checkpoint(missing, tmp_path, url=(tmp_path / "absent").as_uri())
