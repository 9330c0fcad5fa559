"""Model folders: weights that do not fit the recorded architecture are refused, and folders
of the previous format (flat settings) still load and predict the same."""

import json

import numpy as np
import pytest

from napari_ssseg.errors import InputError, SsSegError
from napari_ssseg.inference.predict import predict_volume
from napari_ssseg.model_store import FORMAT_VERSION, TrainedModel, load_model, save_model
from napari_ssseg.networks.unet import build_unet
from tests.test_settings import flat_settings
from tests.test_tasks import case, small_settings, untrained


def small_model(classes=("a", "b"), **sections) -> TrainedModel:
    """A model of small CPU settings without refinement (``sections`` written over them),
    random weights."""
    return untrained(small_settings(**sections), classes)


def rewrite_settings(folder, change) -> None:
    """Apply ``change`` to the model.json of ``folder`` in place."""
    path = folder / "model.json"
    saved = json.loads(path.read_text())
    change(saved)
    path.write_text(json.dumps(saved))


def test_a_model_is_saved_with_settings_by_section(tmp_path):
    model = small_model(budget={"max_iters": 7})
    folder = save_model(model, tmp_path / "model")
    saved = json.loads((folder / "model.json").read_text())
    assert saved["format_version"] == FORMAT_VERSION == 2
    assert saved["config"]["student"]["channels"] == [4, 8, 16]
    assert saved["config"]["budget"]["max_iters"] == 7 and "max_iters" not in saved["config"]
    assert load_model(folder).config == model.config


def test_weights_from_another_architecture_are_refused(tmp_path):
    model = small_model()
    state = build_unet(1, 2, model.config.student.channels).state_dict()
    save_model(TrainedModel(state, model.config, ["a", "b"]), tmp_path / "model")
    assert load_model(tmp_path / "model").num_classes == 2

    def widen(saved):
        saved["config"]["student"]["channels"] = [4, 8, 32]

    rewrite_settings(tmp_path / "model", widen)
    with pytest.raises(InputError, match="weights do not fit the architecture"):
        load_model(tmp_path / "model")


def test_save_refuses_to_replace_a_folder_of_other_files(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "scan.nii.gz").write_bytes(b"precious")
    model = small_model(classes=["organ"])
    with pytest.raises(InputError, match="is not a model folder"):
        save_model(model, folder)
    assert (folder / "scan.nii.gz").read_bytes() == b"precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert save_model(model, empty) == empty  # an empty folder, then a model folder, may go
    assert save_model(model, empty) == empty


def test_a_folder_of_format_1_with_flat_settings_loads_and_predicts_the_same(tmp_path):
    model = small_model(
        ["ellipsoid", "blob"],
        seed=5,
        method="mt",
        prediction={"passes": 3, "keep_connected": False},
        student={"dropout": 0.2, "intensity": {"modality": "mr"}},
    )
    volume = case()[1]
    model.remember(volume)
    folder = save_model(model, tmp_path / "model")
    now = predict_volume(load_model(folder), volume)

    def as_format_1(saved):
        saved["format_version"] = 1
        saved["config"] = flat_settings(model.config)

    rewrite_settings(folder, as_format_1)
    flat = json.loads((folder / "model.json").read_text())["config"]
    assert flat["inference_passes"] == 3 and flat["keep_connected"] is False
    assert flat["refine"] == "off" and "prediction" not in flat
    old = load_model(folder)
    assert old.config == model.config and old.class_names == ["ellipsoid", "blob"]
    assert old.annotations.keys() == model.annotations.keys()
    before = predict_volume(old, volume)
    np.testing.assert_array_equal(before.labels, now.labels)
    np.testing.assert_array_equal(before.uncertainty, now.uncertainty)
    np.testing.assert_array_equal(before.slice_scores, now.slice_scores)
    # The flat settings mattered: three passes with dropout 0.2 differ from the default's.
    other = predict_volume(small_model(["ellipsoid", "blob"], seed=5), volume)
    assert not np.array_equal(other.uncertainty, now.uncertainty)


def test_a_folder_of_format_1_with_a_removed_part_on_is_refused(tmp_path):
    folder = save_model(small_model(), tmp_path / "model")

    def with_flow(saved):
        saved["format_version"] = 1
        saved["config"] = flat_settings(small_model().config) | {"flow_weight": 1.0}

    rewrite_settings(folder, with_flow)
    with pytest.raises(SsSegError, match="training setting flow_weight was removed"):
        load_model(folder)


def test_an_unknown_format_version_is_refused(tmp_path):
    folder = save_model(small_model(), tmp_path / "model")
    rewrite_settings(folder, lambda saved: saved.update(format_version=3))
    with pytest.raises(
        InputError, match="model format 3 is not supported \\(expected one of 1, 2\\)"
    ):
        load_model(folder)
