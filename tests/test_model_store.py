"""Model folders: weights that do not fit the recorded architecture are refused."""

import json

import pytest

from napari_ssseg.errors import InputError
from napari_ssseg.model_store import TrainedModel, load_model, save_model
from napari_ssseg.networks.unet import build_unet
from napari_ssseg.training.config import TrainConfig


def test_weights_from_another_architecture_are_refused(tmp_path):
    config = TrainConfig(image_size=32, channels=(4, 8, 16))
    state = build_unet(1, 2, config.channels).state_dict()
    save_model(TrainedModel(state, config, ["a", "b"]), tmp_path / "model")
    assert load_model(tmp_path / "model").num_classes == 2

    settings_path = tmp_path / "model" / "model.json"
    settings = json.loads(settings_path.read_text())
    settings["config"]["channels"] = [4, 8, 32]
    settings_path.write_text(json.dumps(settings))
    with pytest.raises(InputError, match="weights do not fit the architecture"):
        load_model(tmp_path / "model")


def test_save_refuses_to_replace_a_folder_of_other_files(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "scan.nii.gz").write_bytes(b"precious")
    config = TrainConfig(image_size=32, channels=(4, 8, 16))
    model = TrainedModel(build_unet(1, 2, config.channels).state_dict(), config, ["organ"])
    with pytest.raises(InputError, match="is not a model folder"):
        save_model(model, folder)
    assert (folder / "scan.nii.gz").read_bytes() == b"precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert save_model(model, empty) == empty  # an empty folder, then a model folder, may go
    assert save_model(model, empty) == empty
