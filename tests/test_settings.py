"""The settings package: presets and their grammar, reading and writing settings by section,
the flat settings of earlier versions, and that it stays small and torch-free."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from napari_ssseg.errors import SsSegError
from napari_ssseg.settings import TrainConfig, legacy
from napari_ssseg.settings.presets import (
    BENCH_FLAGS,
    DEFAULT_METHOD,
    PRESETS,
    SWITCHES,
    TEACHERS,
    parse_method,
)
from napari_ssseg.settings.values import merged

MAX_TOP_LEVEL_FIELDS = 25
"""The issue's limit on TrainConfig's top-level fields (the rest live in sections)."""

EARLIER_TOP_LEVEL = ("method", "seed", "device", "agreement_every")
"""Flat keys of the previous version that kept their name and place."""


def setting(config: TrainConfig, dotted: str):
    """The value of the setting ``section.field`` (or a top-level field) of ``config``."""
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def as_json(values: dict) -> dict:
    """``values`` as a settings file would give them back (tuples as lists)."""
    return json.loads(json.dumps(values))


def flat_settings(config: TrainConfig) -> dict:
    """``config`` as the previous version wrote it (every key of its flat
    ``TrainConfig.to_dict()``): each flat key that moved read back from the setting it moved
    to, the removed ones at the value that left them off."""
    flat = {key: setting(config, targets[0]) for key, targets in legacy.MOVED.items()}
    flat["intensity"] = dataclasses.asdict(config.student.intensity)
    flat |= dict(legacy.REMOVED)
    flat |= {key: getattr(config, key) for key in EARLIER_TOP_LEVEL}
    return as_json(flat)


# -- presets and the method grammar -----------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_parses_to_itself(name):
    method = parse_method(name)
    assert (method.name, method.preset) == (name, name)
    assert method.teachers == PRESETS[name].teachers
    assert method.settings == {} and method.flags == frozenset()
    assert method.values() == {"method": name}
    config = TrainConfig.for_method(name)
    assert config.method == name and config.teachers is None
    assert config.active_teachers == PRESETS[name].teachers
    assert set(config.active_teachers) <= set(TEACHERS)


def test_the_default_method_is_a_main_preset():
    assert DEFAULT_METHOD in PRESETS and not PRESETS[DEFAULT_METHOD].advanced
    assert TrainConfig().method == DEFAULT_METHOD


def test_switches_add_and_take_away_teachers():
    method = parse_method("ssl+sam-shape")
    assert method.preset == "ssl" and method.teachers == ("mean", "sam")
    assert method.values() == {"method": "ssl", "teachers": ["mean", "sam"]}
    config = TrainConfig.for_method("ssl+sam-shape")
    assert config.method == "ssl" and config.active_teachers == ("mean", "sam")
    assert config.uses_foundation_teacher and config.uses_foundation_model
    # A preset whose name holds a dash (sc-sam) is read whole, not as sc with -sam.
    assert parse_method("sc-sam+mean").teachers == ("sam", "mean")
    assert parse_method("unet+shape").teachers == ("shape",)


@pytest.mark.parametrize("part", list(SWITCHES))
def test_a_switch_writes_its_setting_both_ways(part):
    switch = SWITCHES[part]
    section, key = switch.setting.split(".")
    for sign, value in (("+", switch.on), ("-", switch.off)):
        method = parse_method(f"unet{sign}{part}")
        assert method.settings == {section: {key: value}}
        assert method.teachers == () and method.flags == frozenset()
        assert setting(TrainConfig.for_method(f"unet{sign}{part}"), switch.setting) == value


def test_switches_combine_and_win_over_the_values_given():
    config = TrainConfig.for_method(
        "ssl-cutmix+distill-gate",
        {"cutmix": {"on": True, "prob": 0.3}, "budget": {"max_iters": 9, "gate_dice": 0.5}},
    )
    assert config.cutmix.on is False and config.cutmix.prob == 0.3
    assert config.features.distill_weight == 1.0 and config.feature_weight("distill") == 1.0
    assert config.budget.gate_dice == 0.0 and config.budget.max_iters == 9
    assert config.active_teachers == ("mean", "shape")


def test_benchmark_flags():
    precompute = parse_method("ssl+precompute")
    assert precompute.flags == {"precompute"} and precompute.settings == {}
    prepare = parse_method("ssl+prepare-refine")
    assert prepare.flags == {"prepare"}
    pretrain = SWITCHES["pretrain"].on
    assert prepare.settings == {
        "features": {"pretrain_steps": pretrain},
        "prediction": {"refine": "off"},
    }
    assert set(BENCH_FLAGS) == {"precompute", "prepare"}
    both = parse_method("ssl+pretrain+precompute")
    assert both.flags == {"precompute"} and both.settings == {"features": {"pretrain_steps": 200}}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("glitter", "unknown method 'glitter'"),
        ("sslx", "unknown method 'sslx'"),
        ("", "unknown method ''"),
        ("flow", "unknown method 'flow'"),
        ("ssl+glitter", "ssl\\+glitter: unknown part 'glitter'"),
        ("ssl+flow", "unknown part 'flow'"),
        ("ssl-precompute", "unknown part 'precompute'"),
        ("ssl+", "unknown part ''"),
        ("ssl+mean", "ssl\\+mean: ssl has mean"),
        ("full+fused", "full has fused"),
        ("unet-mean", "unet-mean: unet lacks mean"),
        ("ssl-shape-shape", "ssl lacks shape"),
    ],
)
def test_unknown_methods_and_parts_are_refused(name, message):
    with pytest.raises(SsSegError, match=message):
        parse_method(name)
    with pytest.raises(SsSegError, match=message):
        TrainConfig.for_method(name)


# -- reading and writing settings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"bogus": 1}, "unknown training setting\\(s\\): bogus$"),
        ({"budget": {"foo": 1}}, "unknown training setting\\(s\\): budget.foo$"),
        ({"student": {"intensity": {"gamma": 2}}}, "student.intensity.gamma"),
        ({"sam": {"refresh": 5, "zz": 1, "aa": 2}}, "setting\\(s\\): sam.aa, sam.zz$"),
        ({"budget": {"max_iters": 2.5}}, "budget.max_iters must be a whole number, not 2.5"),
        ({"budget": {"max_iters": True}}, "budget.max_iters must be a whole number, not True"),
        ({"budget": {"max_iters": "5"}}, "budget.max_iters must be a whole number, not '5'"),
        ({"batch": {"share": 1}}, "training setting batch.share must be true or false, not 1"),
        ({"student": {"lr": "fast"}}, "student.lr must be a finite number, not 'fast'"),
        ({"student": {"lr": float("nan")}}, "student.lr must be a finite number"),
        ({"student": {"channels": 8}}, "student.channels must be a list of whole numbers"),
        ({"student": {"channels": [8, "a"]}}, "student.channels must be a whole number"),
        (
            {"student": {"intensity": {"ct_window": [1]}}},
            "student.intensity.ct_window must be a list of 2 numbers",
        ),
        ({"method": 3}, "training setting method must be text, not 3"),
        ({"budget": 5}, "settings budget must be an object, not 5"),
        ({"prediction": {"refine": 1}}, "prediction.refine must be text, not 1"),
    ],
)
def test_unknown_keys_and_wrong_types_are_refused_by_dotted_name(values, message):
    with pytest.raises(SsSegError, match=message):
        TrainConfig.from_dict(values)


def test_settings_that_are_not_an_object_are_refused():
    with pytest.raises(SsSegError, match="training settings must be an object, not list"):
        TrainConfig.from_dict([1, 2])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"method": "flowish"}, "unknown method 'flowish'"),
        ({"teachers": ["mean", "glitter"]}, "unknown teacher\\(s\\) glitter"),
        ({"device": "tpu"}, "device must be auto, cpu, cuda, not 'tpu'"),
        ({"student": {"lr": -1}}, "student.lr must be a positive number, not -1.0"),
        ({"budget": {"max_iters": 0}}, "budget.max_iters must be at least 1"),
        ({"budget": {"teacher_start": 1.0}}, "budget.teacher_start must lie in \\[0, 1\\)"),
        (
            {"prediction": {"refine": "x"}},
            "prediction.refine must be one of off, auto, sam \\(or null\\), not 'x'",
        ),
        ({"student": {"image_size": 30}}, "student.image_size 30 must be a positive multiple"),
        ({"fused": {"members": ["fused"]}}, "fused.members \\['fused'\\] must name"),
        ({"features": {"distill_weight": -1}}, "features.distill_weight must be 0"),
        (
            {"method": "sc-sam", "foundation": {"model": "sam_vit_b"}},
            "method sc-sam with foundation model sam_vit_b needs foundation.checkpoint",
        ),
    ],
)
def test_bad_values_are_refused_by_section(values, message):
    with pytest.raises(SsSegError, match=message):
        TrainConfig.from_dict(values)


def test_a_foundation_model_without_bundled_weights_is_fine_when_unused_or_given():
    unused = TrainConfig.from_dict({"method": "ssl", "foundation": {"model": "sam_vit_b"}})
    assert unused.foundation.model == "sam_vit_b" and not unused.uses_foundation_model
    given = {"model": "sam_vit_b", "checkpoint": "b.pth"}
    assert TrainConfig.from_dict({"method": "sc-sam", "foundation": given}).uses_foundation_model


def test_settings_written_and_read_are_the_same():
    config = TrainConfig.from_dict(
        {
            "method": "full",
            "teachers": ["fused", "shape"],
            "seed": 7,
            "device": "cpu",
            "student": {"image_size": 32, "channels": [4, 8, 16], "intensity": {"modality": "ct"}},
            "batch": {"size": 3, "strong_view": True},
            "budget": {"max_iters": 11, "max_time": 4.5},
            "mean": {"passes": 3},
            "sam": {"lora_rank": 0},
            "fused": {"members": ["sam"]},
            "features": {"prototype_weight": 0.0, "components": 0},
            "cutmix": {"on": False},
            "prediction": {"refine": "sam", "keep_connected": False},
        }
    )
    written = as_json(config.to_dict())
    assert TrainConfig.from_dict(written) == config
    assert set(written) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert written["student"]["channels"] == [4, 8, 16]
    assert written["teachers"] == ["fused", "shape"]
    # Unset preset parts stay unset (the preset decides when read back).
    assert written["features"]["distill_weight"] is None
    assert TrainConfig.from_dict(written).feature_weight("distill") == 1.0
    assert TrainConfig.from_dict(as_json(TrainConfig().to_dict())) == TrainConfig()


def test_sections_may_be_left_out_or_given_as_dataclasses():
    from napari_ssseg.settings.budget import Budget

    assert TrainConfig.from_dict({}) == TrainConfig()
    built = TrainConfig(method="mt", budget=Budget(max_iters=5))
    assert built == TrainConfig.from_dict({"method": "mt", "budget": {"max_iters": 5}})
    assert built.budget.rampup == Budget().rampup


def test_with_values_deep_merges_and_validates():
    base = TrainConfig.from_dict(
        {
            "method": "mt",
            "student": {"image_size": 32, "channels": [8, 16]},
            "budget": {"max_iters": 5},
        }
    )
    changed = base.with_values({"student": {"lr": 0.01}, "mean": {"weight": 0.3}})
    assert changed.student == dataclasses.replace(base.student, lr=0.01)
    assert changed.budget == base.budget and changed.method == "mt"
    assert changed.mean == dataclasses.replace(base.mean, weight=0.3)
    assert base.student.lr == TrainConfig().student.lr  # the original is left alone
    # A list is replaced, not merged.
    assert base.with_values({"student": {"channels": [4, 8, 16]}}).student.channels == (4, 8, 16)
    with pytest.raises(SsSegError, match="student.lr must be a positive number"):
        base.with_values({"student": {"lr": -1}})
    with pytest.raises(SsSegError, match="unknown training setting\\(s\\): student.learning_rate"):
        base.with_values({"student": {"learning_rate": 1}})


def test_merged_merges_objects_and_replaces_anything_else():
    values = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": [1, 2], "g": 4}
    changes = {"a": {"c": {"e": 30}}, "f": [3], "g": {"h": 5}}
    assert merged(values, changes) == {
        "a": {"b": 1, "c": {"d": 2, "e": 30}},
        "f": [3],
        "g": {"h": 5},
    }
    assert values["a"]["c"]["e"] == 3  # not changed in place


def test_the_budget_shares_progress_between_steps_and_seconds():
    from napari_ssseg.settings.budget import PRETRAIN_SHARE, Budget, sigmoid_rampup

    steps = Budget(max_iters=100)
    assert steps.progress(25, 1e6) == 0.25 and steps.pretrain_seconds() is None
    timed = Budget(max_iters=100, max_time=40.0, teacher_start=0.3, rampup=0.2)
    assert timed.progress(25, 20.0) == 0.5 and timed.progress(75, 20.0) == 0.75
    assert timed.pretrain_seconds() == PRETRAIN_SHARE * 40.0
    assert (timed.teachers_from(False), timed.teachers_from(True)) == (0.3, 0.0)
    assert timed.ramp(0.4, 0.3) == pytest.approx(sigmoid_rampup(0.1, 0.2))
    assert 0.0 < timed.ramp(0.4, 0.3) < 1.0
    assert timed.ramp(0.5, 0.3) == 1.0 and timed.ramp(0.2, 0.3) == sigmoid_rampup(0, 0.2)


# -- the flat settings of earlier versions ----------------------------------------------------


def test_flat_settings_of_the_previous_version_at_their_defaults_read_as_the_default():
    flat = flat_settings(TrainConfig())
    assert len(flat) == 77  # every field of the previous version's TrainConfig
    assert legacy.is_flat(flat)
    assert TrainConfig.from_dict(flat) == TrainConfig()
    assert TrainConfig().with_values(flat) == TrainConfig()


def test_flat_settings_of_the_previous_version_read_as_what_they_held():
    config = TrainConfig.from_dict(
        {
            "method": "uncol",
            "teachers": ["fused", "shape"],
            "seed": 4,
            "student": {"image_size": 64, "channels": [4, 8], "intensity": {"modality": "mr"}},
            "budget": {"max_time": 60.0, "teacher_start": 0.2},
            "mean": {"ema_decay": 0.9, "passes": 3},
            "curriculum": {"ema_decay": 0.9, "passes": 3},
            "sam": {"refresh": 10},
            "fused": {"members": ["sam"]},
            "features": {"distill_weight": 0.0},
            "cutmix": {"on": True},
            "prediction": {"refine": "auto", "keep_connected": False},
        }
    )
    flat = flat_settings(config)
    assert flat["max_time"] == 60.0 and flat["ssl_start"] == flat["shape_start"] == 0.2
    assert flat["teacher_passes"] == 3 and flat["teachers_override"] == ["fused", "shape"]
    assert TrainConfig.from_dict(flat) == config


def test_flat_settings_move_to_their_sections():
    flat = {
        "method": "mt",
        "max_iters": 7,
        "image_size": 32,
        "channels": [8, 16],
        "ema_decay": 0.9,
        "ssl_start": 0.25,
        "shape_start": 0.25,
        "sam_refresh": 3,
        "inference_passes": 2,
        "refine": "off",
        "cutmix": True,
        "teachers_override": ["mean", "shape"],
        "intensity": {"modality": "mr"},
    }
    config = TrainConfig.from_dict(flat)
    assert config.method == "mt" and config.teachers == ("mean", "shape")
    assert (config.budget.max_iters, config.student.image_size) == (7, 32)
    assert config.student.channels == (8, 16) and config.student.intensity.modality == "mr"
    # One flat key of two sections writes both.
    assert config.mean.ema_decay == config.curriculum.ema_decay == 0.9
    assert config.budget.teacher_start == 0.25 and config.sam.refresh == 3
    prediction = config.prediction
    assert (prediction.passes, prediction.refine, config.cutmix.on) == (2, "off", True)
    assert TrainConfig.for_method("mt", {"max_iters": 7}).budget.max_iters == 7


def changed(value):
    """A valid value of a setting other than its default ``value``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return 2 * value if value >= 1 else value / 2 if value else 1
    raise AssertionError(f"no other value for {value!r}")


OTHER_VALUES = {
    "teachers_override": ["mean"],
    "channels": [8, 16, 32, 64, 128],
    "intensity": {"modality": "ct", "ct_window": [-100.0, 200.0], "mr_percentiles": [1.0, 99.0]},
    "max_time": 30.0,
    "fused_members": ["mean"],
    "foundation_model": "sam_vit_b",
    "foundation_checkpoint": "b.pth",
    "embedding_cache": "cache",
    "distill_weight": 0.5,
    "prototype_weight": 0.25,
    "cutmix": True,
    "refine": "sam",
}
"""Other values of the flat keys :func:`changed` cannot vary."""


def sections(values: dict) -> dict:
    """``{"section.field": value}`` of a settings object (top-level fields by name)."""
    out = {}
    for key, value in values.items():
        if key in {f.name for f in dataclasses.fields(TrainConfig)} and isinstance(value, dict):
            out |= {f"{key}.{field}": inner for field, inner in value.items()}
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("key", list(legacy.MOVED))
def test_every_flat_key_moves_to_the_settings_it_names_and_only_there(key):
    default = sections(as_json(TrainConfig().to_dict()))
    targets = legacy.MOVED[key]
    value = OTHER_VALUES[key] if key in OTHER_VALUES else changed(default[targets[0]])
    assert value != default[targets[0]]
    read = sections(as_json(TrainConfig.from_dict({key: value}).to_dict()))
    differing = {name for name in default if read[name] != default[name]}
    assert differing == set(targets)
    assert all(read[target] == value for target in targets)


@pytest.mark.parametrize("key", list(legacy.REMOVED))
def test_a_removed_key_is_refused_by_name_unless_it_leaves_its_part_off(key):
    off = legacy.REMOVED[key]
    assert TrainConfig.from_dict({"method": "mt", key: off}) == TrainConfig(method="mt")
    other = "on" if isinstance(off, str) else off + 0.5
    with pytest.raises(SsSegError, match=f"training setting {key} was removed"):
        TrainConfig.from_dict({"method": "mt", key: other})
    with pytest.raises(SsSegError, match=f"training setting {key} was removed"):
        TrainConfig().with_values({key: other})


def test_removed_methods_and_teachers_are_refused_in_flat_settings():
    with pytest.raises(SsSegError, match="method flow was removed"):
        TrainConfig.from_dict({"method": "flow", "max_iters": 5})
    with pytest.raises(SsSegError, match="teacher connect was removed"):
        TrainConfig.from_dict({"teachers_override": ["mean", "connect"]})


def test_the_two_starts_now_one_setting_must_agree():
    same = TrainConfig.from_dict({"ssl_start": 0.3, "shape_start": 0.3})
    assert same.budget.teacher_start == 0.3
    with pytest.raises(
        SsSegError,
        match="training settings ssl_start and shape_start are now one setting, "
        "budget.teacher_start; give it once",
    ):
        TrainConfig.from_dict({"ssl_start": 0.5, "shape_start": 0.2})


def test_a_flat_cutmix_value_is_flat_and_a_cutmix_object_is_not():
    assert legacy.is_flat({"cutmix": False})
    assert not legacy.is_flat({"cutmix": {"on": False}})
    assert not legacy.is_flat(TrainConfig().to_dict())
    assert TrainConfig.from_dict({"cutmix": False}).cutmix.on is False
    assert TrainConfig.from_dict({"cutmix": {"on": False}}).cutmix.on is False


# -- size and dependencies -------------------------------------------------------------------


def test_the_settings_package_imports_no_torch():
    modules = [
        "napari_ssseg.settings",
        "napari_ssseg.settings.config",
        "napari_ssseg.settings.legacy",
        "napari_ssseg.settings.presets",
        "napari_ssseg.settings.values",
        "napari_ssseg.settings.budget",
        "napari_ssseg.settings.student",
        "napari_ssseg.settings.teachers",
        "napari_ssseg.settings.parts",
        "napari_ssseg.settings.prediction",
        "napari_ssseg.settings.model_cards",
    ]
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from napari_ssseg.settings import TrainConfig\n"
        "TrainConfig.for_method('full+sam-shape').to_dict()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "napari_ssseg.settings.config" in loaded
    heavy = [m for m in loaded if m.split(".")[0] in ("torch", "monai", "torchvision")]
    assert heavy == []


def test_train_config_has_few_top_level_fields():
    top = [f.name for f in dataclasses.fields(TrainConfig)]
    assert len(top) <= MAX_TOP_LEVEL_FIELDS, top
    assert {"method", "teachers", "seed", "device"} <= set(top)
