"""Settings sections: typed dataclasses read from JSON values and written back.

A section is a dataclass whose fields are plain values (bool, int, float, str, tuples of
them, optional ones) or other sections. :func:`section_from_dict` checks every value against
its field's type and names the setting (``budget.max_iters``) in the one-line error it
raises for an unknown key or a value of the wrong kind.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from typing import Any, TypeVar

from napari_ssseg.errors import SsSegError

S = TypeVar("S")

_KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
_PLURAL_WORDS = {bool: "true/false values", int: "whole numbers", float: "numbers", str: "texts"}


def section_from_dict(cls: type[S], values: Any, path: str = "") -> S:
    """An instance of the section ``cls`` from JSON ``values`` (an object); sections nested in
    it are read the same way. Fields left out keep their defaults."""
    if isinstance(values, cls):
        return values
    where = f"settings {path}" if path else "training settings"
    if not isinstance(values, dict):
        raise SsSegError(f"{where} must be an object, not {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - fields)
    if unknown:
        names = ", ".join(f"{path}.{k}" if path else str(k) for k in unknown)
        raise SsSegError(f"unknown training setting(s): {names}")
    checked = {
        name: _value(f"{path}.{name}" if path else name, value, hints[name])
        for name, value in values.items()
    }
    return cls(**checked)


def section_to_dict(section: Any) -> dict[str, Any]:
    """The JSON values of a section (tuples become lists when serialised)."""
    return dataclasses.asdict(section)


def merged(values: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``values`` with ``changes`` written over it, object by object (nested objects are
    merged, anything else replaced)."""
    out = dict(values)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def _value(name: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the field type ``hint`` (JSON lists become tuples).

    Raises :class:`SsSegError` naming the setting, the expected kind and the value given.
    """

    def refuse(kind: str) -> SsSegError:
        return SsSegError(
            f"training setting {name} must be {kind}, not {value!r} ({type(value).__name__})"
        )

    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _value(name, value, options[0])
    if dataclasses.is_dataclass(hint):
        return section_from_dict(hint, value, name)  # type: ignore[arg-type]
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        item = args[0]
        length = None if len(args) == 2 and args[1] is Ellipsis else len(args)
        kind = f"a list of {f'{length} ' if length else ''}{_PLURAL_WORDS[item]}"
        if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
            raise refuse(kind)
        return tuple(_value(name, v, item) for v in value)
    is_bool = isinstance(value, bool) or type(value).__name__ == "bool_"
    if hint is bool:
        if not is_bool:
            raise refuse(_KIND_WORDS[bool])
        return bool(value)
    if hint is int:
        whole = isinstance(value, numbers.Real) and math.isfinite(value) and value == int(value)
        if is_bool or not whole:
            raise refuse(_KIND_WORDS[int])
        return int(value)
    if hint is float:
        if is_bool or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise refuse("a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise refuse(_KIND_WORDS[str])
        return value
    return value


def require(condition: bool, message: str) -> None:
    """Raise :class:`SsSegError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise SsSegError(message)


def in_range(
    name: str,
    value: float,
    low: float,
    high: float,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    """Refuse ``value`` outside [low, high] (ends excluded where open), naming ``name``."""
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    left, right = "(" if open_low else "[", ")" if open_high else "]"
    require(above and below, f"{name} must lie in {left}{low:g}, {high:g}{right}, not {value}")
