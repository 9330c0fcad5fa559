"""The manifest's contributions inside a real napari viewer (needs an X server: pytest-xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ssseg.io.nifti import read_volume
from napari_ssseg.sample_data import load_sample

pytest.importorskip("napari")


@pytest.mark.gui
def test_sample_and_reader_in_viewer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-ssseg", "ct")
    image, labels = viewer.layers
    volume = read_volume(load_sample("ct").image)
    assert image.data.shape == volume.shape[::-1]
    assert tuple(image.scale) == pytest.approx(volume.spacing[::-1])
    assert labels.data.shape == image.data.shape and labels.data.dtype.kind in "iu"
    assert tuple(labels.scale) == tuple(image.scale)

    # File > Open goes through the plugin's reader; File > Save Layers through its writer.
    layers = viewer.open(str(load_sample("ct").image), plugin="napari-ssseg")
    assert np.array_equal(layers[0].data, image.data)
    out = tmp_path / "labels.nii.gz"
    labels.save(str(out), plugin="napari-ssseg")
    written = read_volume(out)
    assert np.array_equal(written.data, np.transpose(labels.data, (2, 1, 0)))
    assert np.allclose(written.affine, volume.affine)
