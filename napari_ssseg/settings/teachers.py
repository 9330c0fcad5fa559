"""Each teacher's own settings; a teacher (``training/teachers/<module>``) receives only its
section. When a teacher starts and how its weight ramps up is the budget's
(:mod:`napari_ssseg.settings.budget`)."""

from __future__ import annotations

from dataclasses import dataclass

from napari_ssseg.settings.presets import FOUNDATION_TEACHER, TEACHERS
from napari_ssseg.settings.values import in_range, require


@dataclass
class EmaTeacherSettings:
    """What the teachers built on an exponential moving average of the student share; each
    has its own copy (``mean.*``, ``curriculum.*``).

    Attributes:
        ema_decay: decay of the exponential moving average of the student.
        passes: MC-dropout passes its targets average.
        threshold_start, threshold_end: a pixel counts while its normalised predictive
            entropy is below a threshold rising between the two with the ramp-up.
    """

    ema_decay: float = 0.95
    passes: int = 2
    threshold_start: float = 0.5
    threshold_end: float = 0.8

    def _validate_ema(self, name: str) -> None:
        in_range(f"{name}.ema_decay", self.ema_decay, 0.0, 1.0)
        require(self.passes >= 1, f"{name}.passes must be at least 1")
        in_range(f"{name}.threshold_start", self.threshold_start, 0.0, 1.0)
        in_range(f"{name}.threshold_end", self.threshold_end, 0.0, 1.0)


@dataclass
class MeanSettings(EmaTeacherSettings):
    """The uncertainty-aware mean teacher (``teachers/mean.py``).

    Attributes:
        weight: weight of its squared-error term, ramped up from the teachers' start.
        noise: standard deviation of the Gaussian noise added to its inputs.
    """

    weight: float = 0.1
    noise: float = 0.1

    def validate(self) -> None:
        require(self.weight >= 0, f"mean.weight must be 0 or more, not {self.weight}")
        require(self.noise >= 0, f"mean.noise must be 0 or more, not {self.noise}")
        self._validate_ema("mean")


@dataclass
class ShapeSettings:
    """Shape continuity (``teachers/shape.py``).

    Attributes:
        weight: weight of its confidence-weighted cross-entropy.
        margin_mm: distance from the interpolated contour over which confidence rises.
        range_mm: distance from the nearer annotated slice over which confidence falls.
        extent: also teach background on slices well beyond the outermost labelled slice.
    """

    weight: float = 1.0
    margin_mm: float = 2.0
    range_mm: float = 10.0
    extent: bool = True

    def validate(self) -> None:
        require(
            self.margin_mm > 0 and self.range_mm > 0 and self.weight >= 0,
            "shape.margin_mm and shape.range_mm must be positive and shape.weight >= 0",
        )


@dataclass
class CurriculumSettings(EmaTeacherSettings):
    """The confidence curriculum (``teachers/curriculum.py``).

    Attributes:
        weight: weight of its gated cross-entropy, ramped up from the teachers' start.
        first_share: share of the ranked slices admitted at the start, growing linearly to
            all slices over training.
        refresh: steps between refreshes of its whole-volume pseudo-labels.
        slices: slices predicted at one refresh, whole volumes taken in turn (a project of
            many volumes would otherwise cost a prediction of all of them each time).
    """

    weight: float = 0.5
    first_share: float = 0.5
    refresh: int = 50
    slices: int = 256

    def validate(self) -> None:
        require(self.weight >= 0, f"curriculum.weight must be 0 or more, not {self.weight}")
        in_range("curriculum.first_share", self.first_share, 0.0, 1.0)
        require(self.refresh >= 1, "curriculum.refresh must be at least 1")
        require(self.slices >= 1, f"curriculum.slices must be at least 1, not {self.slices}")
        self._validate_ema("curriculum")


@dataclass
class SamSettings:
    """The foundation-model teacher (``teachers/foundation.py``): the foundation model
    prompted by the student's prediction, its decoder LoRA-tuned.

    Attributes:
        weight: weight of its confidence-weighted cross-entropy, ramped up.
        refresh: steps between refreshes of its targets.
        slices: unannotated slices whose targets a refresh decodes.
        lora_rank: rank of the decoder's LoRA adapters (0: a frozen decoder).
        lr: the adapters' learning rate.
        tune_steps: adapter steps a refresh.
    """

    weight: float = 1.0
    refresh: int = 25
    slices: int = 8
    lora_rank: int = 4
    lr: float = 5e-4
    tune_steps: int = 2

    def validate(self) -> None:
        require(
            self.refresh >= 1 and self.slices >= 1 and self.weight >= 0,
            "sam.refresh and sam.slices must be at least 1 and sam.weight >= 0",
        )
        require(self.lora_rank >= 0, "sam.lora_rank must be 0 (frozen) or more")
        require(self.lr > 0, f"sam.lr must be a positive number, not {self.lr}")
        require(self.tune_steps >= 0, "sam.tune_steps must be 0 or more")


FUSED_MEMBERS: tuple[str, ...] = ("mean", "sam")
"""The teachers UnCoL's fused teacher fuses (earlier ones win ties)."""


@dataclass
class FusedSettings:
    """UnCoL's dual teacher (``teachers/fused.py``).

    Attributes:
        weight: weight of its confidence-weighted cross-entropy, ramped up.
        members: the teachers whose targets it fuses, per pixel the most confident.
    """

    weight: float = 1.0
    members: tuple[str, ...] = FUSED_MEMBERS

    def validate(self) -> None:
        require(self.weight >= 0, f"fused.weight must be 0 or more, not {self.weight}")
        allowed = [t for t in TEACHERS if t != "fused"]
        require(
            bool(self.members) and set(self.members) <= set(allowed),
            f"fused.members {list(self.members)} must name at least one teacher of "
            f"{', '.join(allowed)}",
        )

    def uses_foundation_model(self) -> bool:
        return FOUNDATION_TEACHER in self.members
