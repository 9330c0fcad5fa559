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


def test_channel_dropout_drops_whole_maps_and_survives_saving(tmp_path):
    """``dropout_shape`` "channel": every dropout layer is a Dropout2d (a whole feature map
    zeroed or kept), MC dropout still varies, and a saved model rebuilds the same layers."""
    import torch

    from napari_ssseg.training.uncertainty import mc_dropout_probs

    config = TrainConfig(image_size=16, channels=(4, 8), dropout=0.5, dropout_shape="channel")
    net = build_unet(config.in_channels, 1, config.channels, config.dropout, config.dropout_shape)
    layers = [m for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    assert layers and all(type(m) is torch.nn.Dropout2d for m in layers)
    drop = layers[0].train()
    kept = drop(torch.ones(1, 64, 5, 5))[0]
    per_map = kept.flatten(1)
    assert set(per_map.min(dim=1).values.tolist()) <= {0.0, 2.0}
    assert torch.equal(per_map.min(dim=1).values, per_map.max(dim=1).values)  # whole maps
    saved = save_model(TrainedModel(net.state_dict(), config, ["organ"]), tmp_path / "model")
    rebuilt = load_model(saved).network()
    assert all(
        type(m) is torch.nn.Dropout2d
        for m in rebuilt.modules()
        if isinstance(m, torch.nn.modules.dropout._DropoutNd)
    )
    x = torch.rand(2, config.in_channels, 16, 16)
    torch.manual_seed(0)
    first = mc_dropout_probs(rebuilt, x, passes=2)
    torch.manual_seed(1)
    assert first.shape == (2, 2, 16, 16)
    assert not torch.allclose(first, mc_dropout_probs(rebuilt, x, passes=2))  # dropout acts
    with pytest.raises(ValueError, match="dropout_shape must be element or channel"):
        build_unet(1, 2, (4, 8), 0.1, "pixel")
