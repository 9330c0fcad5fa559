"""train -> predict through the CLI on a small synthetic volume."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from napari_ssseg.cli import main
from tests.conftest import TINY_CLI_CONFIG, synthetic_case, write_nifti


@pytest.mark.slow
def test_train_then_predict_writes_outputs_on_source_grid(tmp_path, capsys):
    image, labels = synthetic_case()
    affine = np.array([[0.0, -1.2, 0, 10], [1.2, 0, 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    image_path = write_nifti(tmp_path / "case.nii.gz", image, affine)
    labels_path = write_nifti(tmp_path / "case_lab.nii.gz", labels.astype(np.uint8), affine)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(TINY_CLI_CONFIG))
    model_dir = tmp_path / "model"

    code = main(
        [
            "train",
            str(image_path),
            "--labels",
            str(labels_path),
            "--annotated-slices",
            "4,8,12",
            "--classes",
            "organ,lesion",
            "--config",
            str(settings),
            "--max-iters",
            "12",
            "--out",
            str(model_dir),
        ]
    )
    assert code == 0, capsys.readouterr().err
    saved = json.loads((model_dir / "model.json").read_text())
    assert saved["class_names"] == ["organ", "lesion"]
    assert saved["format_version"] == 2 and saved["summary"]["iterations"] == 12
    assert saved["config"]["student"]["image_size"] == 32
    # The file's sections and the command line's budget both reached the run.
    assert saved["config"]["batch"]["target_cache"] == 4
    assert saved["config"]["budget"]["max_iters"] == 12

    out = tmp_path / "pred"
    assert main(["predict", str(image_path), "--model", str(model_dir), "--out", str(out)]) == 0
    seg = nib.load(out / "case_seg.nii.gz")
    unc = nib.load(out / "case_uncertainty.nii.gz")
    assert seg.shape == image.shape and np.allclose(seg.affine, affine)
    assert np.issubdtype(seg.get_data_dtype(), np.integer)
    assert unc.get_data_dtype() == np.float32
    seg_data = np.asarray(seg.dataobj)
    # The model remembered the training annotation: those slices are the user's labels.
    for i in (4, 8, 12):
        assert np.array_equal(seg_data[:, :, i], labels[:, :, i])
    rows = list(csv.DictReader((out / "case_slices.csv").read_text().splitlines()))
    assert len(rows) == image.shape[2]
    assert [int(r["slice"]) for r in rows if r["annotated"] == "1"] == [4, 8, 12]
    unc_data = np.asarray(unc.dataobj)
    assert unc_data.min() >= 0 and unc_data.max() <= 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("values", "named"),
    [({"learning_rate": 0.1}, "learning_rate"), ({"student": {"rate": 0.1}}, "student.rate")],
)
def test_config_with_unknown_key_is_refused(tmp_path, capsys, values, named):
    image, labels = synthetic_case()
    image_path = write_nifti(tmp_path / "case.nii.gz", image)
    labels_path = write_nifti(tmp_path / "case_lab.nii.gz", labels.astype(np.uint8))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(values))
    code = main(
        [
            "train",
            str(image_path),
            "--labels",
            str(labels_path),
            "--config",
            str(settings),
            "--out",
            str(tmp_path / "model"),
        ]
    )
    assert code == 2
    assert f"unknown training setting(s): {named}\n" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
