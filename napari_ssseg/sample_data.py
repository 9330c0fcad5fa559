"""The two small sample volumes shipped in the repository's ``sample_data/`` folder.

Abdominal CT and MR from the TotalSegmentator test files (Apache-2.0, (c) Jakob Wasserthal) with
TotalSegmentator model labels (not manual). ``labels.json`` maps each label-file stem to
``{id: class name}`` for the ids present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from napari_ssseg.errors import InputError

_SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
_CLASS_FILE = "labels.json"

# key -> (image file, label file); the label-file stem keys labels.json.
_FILES: dict[str, tuple[str, str]] = {
    "ct": ("example_ct_sm.nii.gz", "example_seg.nii.gz"),
    "mr": ("example_mr_sm.nii.gz", "example_seg_mr.nii.gz"),
}


@dataclass
class SampleCase:
    """A sample image, its label volume (same grid) and the names of the foreground ids."""

    key: str
    image: Path
    labels: Path
    class_names: dict[int, str] = field(default_factory=dict)


def sample_dir() -> Path:
    """The repository-level ``sample_data/`` folder; InputError if it is missing."""
    if not _SAMPLE_DIR.is_dir():
        raise InputError(
            f"{_SAMPLE_DIR} does not exist: the sample data ships with the napari-ssseg source "
            "repository (sample_data/), not with this installation"
        )
    return _SAMPLE_DIR


def _stem(file_name: str) -> str:
    return file_name.removesuffix(".gz").removesuffix(".nii")


def _class_names(folder: Path, label_file: str, strict: bool) -> dict[int, str]:
    path = folder / _CLASS_FILE
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        names = table[_stem(label_file)]
        return {int(k): str(v) for k, v in sorted(names.items(), key=lambda kv: int(kv[0]))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if strict:
            raise InputError(f"{path} does not name the classes of {label_file}: {exc}") from exc
        return {}


def _case(key: str, folder: Path, strict: bool) -> SampleCase:
    image, labels = _FILES[key]
    return SampleCase(
        key=key,
        image=folder / image,
        labels=folder / labels,
        class_names=_class_names(folder, labels, strict),
    )


# Built at import without failing when the folder is absent; use load_sample() to check it.
SAMPLES: dict[str, SampleCase] = {key: _case(key, _SAMPLE_DIR, strict=False) for key in _FILES}


def load_sample(key: str) -> SampleCase:
    """The sample ``"ct"`` or ``"mr"``, after checking its files exist."""
    if key not in _FILES:
        raise InputError(f"unknown sample {key!r}; available samples: {', '.join(_FILES)}")
    case = _case(key, sample_dir(), strict=True)
    for path in (case.image, case.labels):
        if not path.is_file():
            raise InputError(f"{path} does not exist (sample {key!r} is incomplete)")
    return case
