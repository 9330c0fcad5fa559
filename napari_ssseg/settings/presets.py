"""Method presets, the parts they turn on, and the grammar that changes them.

A method is a preset name optionally followed by switches: ``ssl+sam-shape`` is ``ssl``
with the foundation-model teacher added and shape continuity taken away. The command line,
the dock and the benchmark all read methods through :func:`parse_method`.

Parts a preset may leave to the project (CutMix, refinement) take :data:`MULTI_CLASS`: on
for projects of two classes or more, off for one class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from napari_ssseg.errors import SsSegError

MULTI_CLASS = "multi-class"
"""A preset's value for a part that is on with two classes or more and off with one."""

TEACHERS: tuple[str, ...] = ("mean", "shape", "self", "sam", "fused")
"""Every teacher a run can train with (``training/teachers``): the mean teacher, shape
continuity, the confidence curriculum, the foundation model, and UnCoL's fused teacher."""

FOUNDATION_TEACHER = "sam"
"""The teacher that is the foundation model (the fused teacher may hold it as a member)."""


@dataclass(frozen=True)
class Preset:
    """One method: its teachers, the parts it turns on, and what the benchmarks measured.

    Attributes:
        teachers: names from :data:`TEACHERS`.
        parts: part name (a key of :data:`SWITCHES`) -> its value when the settings leave it
            unset (None): the switch's ``on`` value, or :data:`MULTI_CLASS`.
        refine: whether predictions are refined by the foundation model (``auto``) when the
            settings do not say and the run does not use the foundation model (a run that
            does refines): True, False or :data:`MULTI_CLASS`.
        advanced: offered in the dock's Advanced section rather than as a main choice.
        summary: what the preset is, in a few words.
        measured: what the benchmarks measured of it (docs/results.md), shown in the dock.
    """

    teachers: tuple[str, ...]
    parts: dict[str, Any] = field(default_factory=dict)
    refine: bool | str = False
    advanced: bool = True
    summary: str = ""
    measured: str = ""


PRESETS: dict[str, Preset] = {
    "unet": Preset((), summary="the U-Net on the labelled slices alone", measured="the baseline"),
    "mt": Preset(("mean",), summary="unet with the mean teacher", measured="an ablation of ssl"),
    "shape": Preset(("shape",), summary="unet with shape continuity", measured="an ablation"),
    "ssl": Preset(
        ("mean", "shape"),
        parts={"cutmix": MULTI_CLASS},
        refine=MULTI_CLASS,
        advanced=False,
        summary="mean teacher and shape continuity; with two classes or more also CutMix "
        "and refinement by the foundation model",
        measured="the default, ahead of unet, interp and sam-box on both benchmark sets",
    ),
    "sc-sam": Preset(
        ("sam",),
        summary="the foundation model prompted by the U-Net, its decoder tuned (SC-SAM)",
        measured="in 120 s on a CPU below ssl: LA 83.4 against 91.7, ACDC 84.4 against 85.5",
    ),
    "curriculum": Preset(
        ("self",),
        summary="whole-volume pseudo-labels admitted by confidence",
        measured="on a CPU about unet's Dice, below ssl",
    ),
    "uncol": Preset(
        ("fused",),
        parts={"distill": True},
        summary="UnCoL: mean teacher and foundation model fused by uncertainty, with feature "
        "distillation",
        measured="in 120 s on a CPU below ssl: LA 70.3 against 91.7, ACDC 70.3 against 85.5",
    ),
    "full": Preset(
        ("fused", "shape", "self"),
        parts={"distill": True, "prototype": True, "cutmix": True},
        summary="every teacher and part",
        measured="in 120 s on a CPU below ssl: LA 58.8 against 91.7, ACDC 67.9 against 85.5",
    ),
}
"""The methods, by name (the dock and the command line offer these)."""

DEFAULT_METHOD = "ssl"


@dataclass(frozen=True)
class Switch:
    """A part that ``+part`` turns on and ``-part`` off: the setting it writes
    (``section.field``) and its value each way."""

    setting: str
    on: Any
    off: Any


SWITCHES: dict[str, Switch] = {
    "cutmix": Switch("cutmix.on", True, False),
    "distill": Switch("features.distill_weight", 1.0, 0.0),
    "prototype": Switch("features.prototype_weight", 0.5, 0.0),
    "pretrain": Switch("features.pretrain_steps", 200, 0),
    "gate": Switch("budget.gate_dice", 0.8, 0.0),
    "strong": Switch("batch.strong_view", True, False),
    "refine": Switch("prediction.refine", "auto", "off"),
}
"""Parts beyond teachers that a method's switches turn on or off."""

BENCH_FLAGS = ("precompute", "prepare")
"""Switches only the benchmark understands: ``+precompute`` embeds every slice a run needs
before it starts, outside its time; ``+prepare`` is ``+pretrain+precompute`` with the
pretraining made before the run too (as the dock does while the user labels)."""


@dataclass(frozen=True)
class Method:
    """A parsed method name.

    Attributes:
        name: as written (``ssl+sam``).
        preset: the preset it starts from.
        teachers: the teachers after the switches.
        settings: the settings the switches write, as nested JSON values.
        flags: benchmark-only switches given (from :data:`BENCH_FLAGS`).
    """

    name: str
    preset: str
    teachers: tuple[str, ...]
    settings: dict[str, Any]
    flags: frozenset[str]

    def values(self) -> dict[str, Any]:
        """The training settings this method writes: ``method``, ``teachers`` when the
        switches changed them, and the parts' settings."""
        out: dict[str, Any] = {"method": self.preset, **self.settings}
        if self.teachers != PRESETS[self.preset].teachers:
            out["teachers"] = list(self.teachers)
        return out


def _changes(rest: str) -> list[tuple[str, str]]:
    """``+sam-shape`` -> [("+", "sam"), ("-", "shape")]."""
    out, sign, word = [], "", ""
    for char in rest:
        if char in "+-":
            if sign:
                out.append((sign, word))
            sign, word = char, ""
        else:
            word += char
    if sign:
        out.append((sign, word))
    return out


def parse_method(name: str) -> Method:
    """Read a method name: a preset of :data:`PRESETS` followed by any number of ``+part`` or
    ``-part`` switches (teachers of :data:`TEACHERS`, parts of :data:`SWITCHES`, or
    :data:`BENCH_FLAGS`). Raises :class:`SsSegError` naming what is not understood."""
    preset = next((p for p in sorted(PRESETS, key=len, reverse=True) if name.startswith(p)), None)
    rest = name[len(preset) :] if preset else name
    if preset is None or (rest and rest[0] not in "+-"):
        raise SsSegError(
            f"unknown method {name!r}: choose one of {', '.join(PRESETS)}, optionally "
            "followed by +part/-part switches"
        )
    teachers = list(PRESETS[preset].teachers)
    settings: dict[str, Any] = {}
    flags: set[str] = set()
    for sign, part in _changes(rest):
        if part in TEACHERS:
            if (sign == "+") == (part in teachers):
                raise SsSegError(f"{name}: {preset} {'has' if sign == '+' else 'lacks'} {part}")
            if sign == "+":
                teachers.append(part)
            else:
                teachers.remove(part)
        elif part in SWITCHES:
            switch = SWITCHES[part]
            section, key = switch.setting.split(".")
            settings.setdefault(section, {})[key] = switch.on if sign == "+" else switch.off
        elif part in BENCH_FLAGS and sign == "+":
            flags.add(part)
            if part == "prepare":
                settings.setdefault("features", {})["pretrain_steps"] = SWITCHES["pretrain"].on
        else:
            known = ", ".join([*TEACHERS, *SWITCHES, *BENCH_FLAGS])
            raise SsSegError(f"{name}: unknown part {part!r}; parts: {known}")
    return Method(name, preset, tuple(teachers), settings, frozenset(flags))


def on_for(value: Any, num_classes: int) -> bool:
    """Whether a part whose value is ``value`` (a bool or :data:`MULTI_CLASS`) is on for a
    project of ``num_classes`` foreground classes."""
    return num_classes >= 2 if value == MULTI_CLASS else bool(value)


def preset_part(method: str, part: str) -> Any:
    """The value the preset ``method`` gives ``part`` when the settings leave it unset: the
    switch's ``on`` value (or :data:`MULTI_CLASS`) where the preset turns it on, else its
    ``off`` value."""
    value = PRESETS[method].parts.get(part)
    switch = SWITCHES[part]
    if value is None:
        return switch.off
    return switch.on if value is True else value


def offered_methods() -> tuple[list[str], list[str]]:
    """(the main choices, the Advanced ones). The main choices are the methods the benchmarks
    show winning, for one class and for several (today ``ssl`` for both)."""
    main = [name for name, preset in PRESETS.items() if not preset.advanced]
    advanced = [name for name, preset in PRESETS.items() if preset.advanced]
    return main, advanced
