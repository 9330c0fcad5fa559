"""File names made from volume names."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[/\\:\x00-\x1f]")


def safe_name(name: str, fallback: str = "volume") -> str:
    """``name`` made usable as a file name that stays in the folder it is joined to.

    A volume's name may come from a napari layer, which can hold anything: path separators,
    drive colons and control characters become ``_`` and leading dots are dropped, so
    ``"../../x"`` gives ``"_.._x"`` and ``"/etc/x"`` gives ``"_etc_x"``, never a path that
    leaves the folder. An empty result becomes ``fallback``.
    """
    cleaned = _UNSAFE.sub("_", name).lstrip(". ").strip()
    return cleaned or fallback
