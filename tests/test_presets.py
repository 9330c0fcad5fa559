"""Method presets: the teachers they name and the parts beyond teachers they switch on."""

from __future__ import annotations

import pytest

from napari_ssseg.errors import SsSegError
from napari_ssseg.training.config import METHODS, PART_OFF, PRESET_PARTS, TrainConfig


def test_parts_come_from_the_preset_unless_given():
    assert TrainConfig(method="ssl").part("distill_weight") == 0.0
    assert not TrainConfig(method="unet").uses_cutmix(3)
    # ssl mixes slices by CutMix on multi-class projects only, unless told otherwise.
    assert TrainConfig(method="ssl").uses_cutmix(3) and TrainConfig(method="ssl").uses_cutmix(2)
    assert not TrainConfig(method="ssl").uses_cutmix(1)
    assert TrainConfig(method="ssl", cutmix=True).uses_cutmix(1)
    assert not TrainConfig(method="ssl", cutmix=False).uses_cutmix(3)
    assert TrainConfig(method="uncol").part("distill_weight") == 1.0
    assert TrainConfig(method="uncol").part("prototype_weight") == 0.0
    full = TrainConfig(method="full")
    assert (full.part("distill_weight"), full.part("prototype_weight"), full.part("cutmix")) == (
        1.0,
        0.5,
        True,
    )
    # Given explicitly, off included, a part's setting wins over its preset.
    assert TrainConfig(method="full", cutmix=False).part("cutmix") is False
    assert TrainConfig(method="uncol", distill_weight=0.0).part("distill_weight") == 0.0
    assert TrainConfig(method="ssl", prototype_weight=0.25).part("prototype_weight") == 0.25


def test_presets_that_use_the_foundation_model():
    assert TrainConfig(method="full").teachers == ("fused", "shape", "self")
    for method in ("sc-sam", "uncol", "full"):
        assert TrainConfig(method=method).uses_foundation_model, method
    assert not TrainConfig(method="ssl").uses_foundation_model
    # A feature term alone loads the foundation model too.
    assert TrainConfig(method="unet", distill_weight=0.5).uses_foundation_model


def test_preset_tables_are_consistent():
    assert set(PRESET_PARTS) <= set(METHODS)
    assert all(set(parts) <= set(PART_OFF) for parts in PRESET_PARTS.values())


def test_a_negative_part_weight_is_refused_by_name():
    with pytest.raises(Exception, match="distill_weight must be 0"):
        TrainConfig(method="uncol", distill_weight=-1.0)


def test_a_config_written_and_read_keeps_preset_parts_unset():
    config = TrainConfig(method="full")
    again = TrainConfig.from_dict(config.to_dict())
    assert again.distill_weight is None and again.part("distill_weight") == 1.0


def test_teachers_override_replaces_the_presets_teachers():
    config = TrainConfig.from_dict({"method": "ssl", "teachers_override": ["mean", "shape", "sam"]})
    assert config.teachers == ("mean", "shape", "sam")
    assert config.uses_foundation_model
    assert TrainConfig(method="ssl", teachers_override=[]).teachers == ()
    assert TrainConfig(method="full").teachers == METHODS["full"]
    with pytest.raises(SsSegError, match="unknown teacher.*glitter"):
        TrainConfig(teachers_override=("mean", "glitter"))
