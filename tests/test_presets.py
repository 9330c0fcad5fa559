"""Method presets: the teachers they name and the parts beyond teachers they switch on."""

from __future__ import annotations

import pytest

from napari_ssseg.errors import SsSegError
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.presets import (
    DEFAULT_METHOD,
    MULTI_CLASS,
    PRESETS,
    SWITCHES,
    TEACHERS,
    offered_methods,
    on_for,
    preset_part,
)


def config(method: str, **sections) -> TrainConfig:
    """The settings of ``method`` with ``sections`` (nested JSON values) written over them."""
    return TrainConfig.from_dict({"method": method, **sections})


def test_parts_come_from_the_preset_unless_given():
    assert config("ssl").feature_weight("distill") == 0.0
    assert not config("unet").uses_cutmix(3)
    # ssl mixes slices by CutMix on multi-class projects only, unless told otherwise.
    assert config("ssl").uses_cutmix(3) and config("ssl").uses_cutmix(2)
    assert not config("ssl").uses_cutmix(1)
    assert config("ssl", cutmix={"on": True}).uses_cutmix(1)
    assert not config("ssl", cutmix={"on": False}).uses_cutmix(3)
    assert config("uncol").feature_weight("distill") == 1.0
    assert config("uncol").feature_weight("prototype") == 0.0
    full = config("full")
    weights = (full.feature_weight("distill"), full.feature_weight("prototype"))
    assert weights == (1.0, 0.5) and full.uses_cutmix(1)
    assert full.resolved_features().distill_weight == 1.0
    assert full.resolved_features().prototype_weight == 0.5
    # Given explicitly, off included, a part's setting wins over its preset.
    assert not config("full", cutmix={"on": False}).uses_cutmix(3)
    assert config("uncol", features={"distill_weight": 0.0}).feature_weight("distill") == 0.0
    ssl = config("ssl", features={"prototype_weight": 0.25})
    assert ssl.feature_weight("prototype") == 0.25 and ssl.uses_feature_terms


def test_presets_that_use_the_foundation_model():
    assert config("full").active_teachers == ("fused", "shape", "self")
    for method in ("sc-sam", "uncol", "full"):
        assert config(method).uses_foundation_model, method
    assert config("sc-sam").uses_foundation_teacher and not config("sc-sam").uses_feature_bank
    for method in ("unet", "mt", "shape", "ssl", "curriculum"):
        assert not config(method).uses_foundation_model, method
    # A feature term alone loads the foundation model too, and so does pretraining.
    distil = config("unet", features={"distill_weight": 0.5})
    assert distil.uses_foundation_model and not distil.uses_foundation_teacher
    pretrain = config("unet", features={"pretrain_steps": 5})
    assert pretrain.uses_feature_bank and not pretrain.uses_feature_terms
    assert pretrain.uses_foundation_model
    # The fused teacher loads it only while the foundation model is one of its members.
    mean_only = config("uncol", fused={"members": ["mean"]}, features={"distill_weight": 0})
    assert not mean_only.uses_foundation_model
    assert config("uncol", features={"distill_weight": 0}).uses_foundation_teacher


def test_preset_tables_are_consistent():
    assert DEFAULT_METHOD in PRESETS
    for name, preset in PRESETS.items():
        assert set(preset.teachers) <= set(TEACHERS), name
        assert set(preset.parts) <= set(SWITCHES), name
        assert all(value is True or value == MULTI_CLASS for value in preset.parts.values())
        assert preset.refine in (True, False, MULTI_CLASS), name
        assert preset.summary and preset.measured, name


def test_preset_part_and_on_for():
    assert preset_part("ssl", "cutmix") == MULTI_CLASS
    assert preset_part("full", "prototype") == SWITCHES["prototype"].on
    assert preset_part("unet", "distill") == SWITCHES["distill"].off == 0.0
    assert preset_part("ssl", "refine") == SWITCHES["refine"].off
    assert on_for(MULTI_CLASS, 2) and not on_for(MULTI_CLASS, 1)
    assert on_for(True, 1) and not on_for(False, 3)


def test_the_offered_methods_are_every_preset_once_the_winner_first():
    main, advanced = offered_methods()
    assert main == [DEFAULT_METHOD]
    assert sorted(main + advanced) == sorted(PRESETS)
    assert not set(main) & set(advanced)


def test_a_negative_part_weight_is_refused_by_name():
    with pytest.raises(SsSegError, match="features.distill_weight must be 0"):
        config("uncol", features={"distill_weight": -1.0})


def test_a_config_written_and_read_keeps_preset_parts_unset():
    again = TrainConfig.from_dict(config("full").to_dict())
    assert again.features.distill_weight is None and again.feature_weight("distill") == 1.0
    assert again.cutmix.on is None and again.uses_cutmix(1)


def test_teachers_replace_the_presets_teachers():
    chosen = config("ssl", teachers=["mean", "shape", "sam"])
    assert chosen.active_teachers == ("mean", "shape", "sam")
    assert chosen.uses_foundation_model
    assert config("ssl", teachers=[]).active_teachers == ()
    assert config("full").active_teachers == PRESETS["full"].teachers
    with pytest.raises(SsSegError, match="unknown teacher.*glitter"):
        TrainConfig(teachers=("mean", "glitter"))
