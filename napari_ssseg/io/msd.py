"""Read a dataset in the Medical Segmentation Decathlon / nnU-Net folder layout.

::

    root/dataset.json          {"name": ..., "labels": {"0": "background", ...}, "splits": {...}}
    root/imagesTr/NAME.nii.gz  (or nnU-Net style NAME_0000.nii.gz)
    root/labelsTr/NAME.nii.gz  (optional per case: a case without one is unlabelled)

Only file listings are used to build paths; names found in ``dataset.json`` are checked, never
joined onto ``root``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_ssseg.errors import InputError
from napari_ssseg.io.nifti import nifti_suffix

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass
class MsdCase:
    """One case: its image file and its label file (None when unlabelled)."""

    name: str
    image: Path
    label: Path | None = None


@dataclass
class MsdDataset:
    """A dataset folder: class names by label id, named splits of case names, and all cases."""

    root: Path
    name: str
    labels: dict[int, str] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)
    cases: list[MsdCase] = field(default_factory=list)

    def split(self, name: str | None = None) -> list[MsdCase]:
        """Cases of split ``name`` in the listed order, or all cases sorted by name for None."""
        if name is None:
            return sorted(self.cases, key=lambda c: c.name)
        if name not in self.splits:
            available = ", ".join(sorted(self.splits)) or "none"
            raise InputError(
                f"{self.root / 'dataset.json'} has no split {name!r}; available splits: {available}"
            )
        by_name = {case.name: case for case in self.cases}
        return [by_name[case_name] for case_name in self.splits[name]]


def _check_name(source: Path, name: Any, what: str) -> str:
    """Reject names that are not plain strings or could leave the dataset folder."""
    if not isinstance(name, str) or not name:
        raise InputError(f"{source}: {what} {name!r} is not a non-empty string")
    if "/" in name or "\\" in name or ".." in name or name in (".", "~") or "\0" in name:
        raise InputError(f"{source}: {what} {name!r} is not allowed (it could leave the folder)")
    return name


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path} does not exist (an MSD dataset needs dataset.json)")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(content, dict):
        raise InputError(f"{path} must hold a JSON object, got {type(content).__name__}")
    return content


def _parse_labels(path: Path, raw: Any) -> dict[int, str]:
    """``{"0": "background", ...}`` (MSD) or ``{"background": 0, ...}`` (nnU-Net v2)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"{path}: 'labels' must be an object mapping ids to names")
    labels: dict[int, str] = {}
    for key, value in raw.items():
        if isinstance(value, str):
            label_id, label_name = key, value
        elif isinstance(value, int) and not isinstance(value, bool):
            label_id, label_name = value, key
        else:
            raise InputError(f"{path}: label {key!r} maps to {value!r}; expected a name or an id")
        try:
            number = int(label_id)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path}: label id {label_id!r} is not an integer") from exc
        if number < 0:
            raise InputError(f"{path}: label id {number} is negative")
        labels[number] = str(label_name)
    return dict(sorted(labels.items()))


def _parse_splits(path: Path, raw: Any) -> dict[str, list[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"{path}: 'splits' must be an object mapping split names to case lists")
    splits: dict[str, list[str]] = {}
    for split_name, members in raw.items():
        if not isinstance(members, list):
            raise InputError(f"{path}: split {split_name!r} must be a list of case names")
        splits[str(split_name)] = [_check_name(path, m, "case name") for m in members]
    return splits


def _list_nifti(folder: Path) -> dict[str, Path]:
    """Map file name without the NIfTI suffix to path, for visible NIfTI files in ``folder``."""
    found: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        suffix = nifti_suffix(entry.name)
        if entry.name.startswith(".") or suffix is None or not entry.is_file():
            continue
        stem = entry.name[: -len(suffix)]
        if stem in found:
            raise InputError(f"{folder} holds both {found[stem].name} and {entry.name}")
        found[stem] = entry
    return found


def _image_cases(images_dir: Path) -> dict[str, Path]:
    """Case name -> image path; with nnU-Net names only the ``_0000`` channel is used."""
    files = _list_nifti(images_dir)
    nnunet = any(
        (m := _CHANNEL.match(stem)) is not None and m.group("channel") == "0000" for stem in files
    )
    cases: dict[str, Path] = {}
    for stem, file in files.items():
        name = stem
        if nnunet:
            match = _CHANNEL.match(stem)
            if match is not None:
                if match.group("channel") != "0000":
                    continue  # another channel of a multi-channel case
                name = match.group("case")
        if name in cases:
            raise InputError(f"{images_dir} holds two images for case {name!r}")
        cases[name] = file
    return cases


def read_msd(root: str | Path) -> MsdDataset:
    """Read ``root/dataset.json``, ``root/imagesTr`` and (optional) ``root/labelsTr``."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root} does not exist")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder (an MSD dataset folder is needed)")
    json_path = root / "dataset.json"
    meta = _read_json(json_path)
    images_dir = root / "imagesTr"
    if not images_dir.is_dir():
        raise InputError(f"{images_dir} does not exist (an MSD dataset needs imagesTr/)")
    labels_dir = root / "labelsTr"

    images = _image_cases(images_dir)
    if not images:
        raise InputError(f"{images_dir} holds no .nii or .nii.gz images")
    label_files = _list_nifti(labels_dir) if labels_dir.is_dir() else {}
    cases = [MsdCase(name=n, image=images[n], label=label_files.get(n)) for n in sorted(images)]

    splits = _parse_splits(json_path, meta.get("splits"))
    for split_name, members in splits.items():
        missing = [m for m in members if m not in images]
        if missing:
            shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise InputError(
                f"{json_path}: split {split_name!r} lists {len(missing)} case(s) with no image "
                f"in imagesTr: {shown}"
            )
    name = meta.get("name")
    return MsdDataset(
        root=root,
        name=name if isinstance(name, str) and name else root.name,
        labels=_parse_labels(json_path, meta.get("labels")),
        splits=splits,
        cases=cases,
    )
