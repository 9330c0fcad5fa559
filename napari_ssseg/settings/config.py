"""Everything that decides a training run, grouped by the part that owns each setting.

Serialised as JSON with one object per section::

    {"method": "ssl", "seed": 0, "budget": {"max_time": 120}, "sam": {"refresh": 100}}

Sections left out keep their defaults; flat settings of earlier versions are read too
(:mod:`~napari_ssseg.settings.legacy`). A method may carry switches (``ssl+sam``), which
:meth:`TrainConfig.for_method` turns into the settings they write.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from napari_ssseg.errors import SsSegError
from napari_ssseg.settings import legacy
from napari_ssseg.settings.budget import Budget
from napari_ssseg.settings.parts import CutMixSettings, FeatureSettings
from napari_ssseg.settings.prediction import FoundationSettings, PredictionSettings
from napari_ssseg.settings.presets import (
    DEFAULT_METHOD,
    FOUNDATION_TEACHER,
    PRESETS,
    TEACHERS,
    on_for,
    parse_method,
    preset_part,
)
from napari_ssseg.settings.student import BatchSettings, StudentSettings
from napari_ssseg.settings.teachers import (
    CurriculumSettings,
    FusedSettings,
    MeanSettings,
    SamSettings,
    ShapeSettings,
)
from napari_ssseg.settings.values import merged, require, section_from_dict

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """A run's settings; with the data and the seed, its result.

    Attributes:
        method: a preset of :data:`~napari_ssseg.settings.presets.PRESETS`.
        teachers: the teachers to train with instead of the preset's (None: the preset's).
        seed: seeds every random draw; a step-bounded run on the CPU is deterministic.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        agreement_every: steps between reports of the student's agreement with the labels
            on annotated slices (0: never).
        student, batch, budget: the network and its data, what a step draws, how long the
            run lasts and how its phases share it.
        mean, shape, curriculum, sam, fused: each teacher's own settings.
        foundation: the foundation model the teacher, the feature terms and refinement share.
        features, cutmix: the parts beyond teachers.
        prediction: how the trained model predicts.
    """

    method: str = DEFAULT_METHOD
    teachers: tuple[str, ...] | None = None
    seed: int = 0
    device: str = "auto"
    agreement_every: int = 50
    student: StudentSettings = field(default_factory=StudentSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    budget: Budget = field(default_factory=Budget)
    mean: MeanSettings = field(default_factory=MeanSettings)
    shape: ShapeSettings = field(default_factory=ShapeSettings)
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    sam: SamSettings = field(default_factory=SamSettings)
    fused: FusedSettings = field(default_factory=FusedSettings)
    foundation: FoundationSettings = field(default_factory=FoundationSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    cutmix: CutMixSettings = field(default_factory=CutMixSettings)
    prediction: PredictionSettings = field(default_factory=PredictionSettings)

    def __post_init__(self) -> None:
        if self.teachers is not None:
            self.teachers = tuple(self.teachers)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SsSegError` naming the first bad setting."""
        require(
            self.method in PRESETS,
            f"unknown method {self.method!r}; choose one of {', '.join(PRESETS)}",
        )
        unknown = sorted(set(self.active_teachers) - set(TEACHERS))
        require(
            not unknown,
            f"unknown teacher(s) {', '.join(unknown)}; choose from {', '.join(TEACHERS)}",
        )
        require(
            self.device in DEVICES,
            f"device must be {', '.join(DEVICES)}, not {self.device!r}",
        )
        require(self.agreement_every >= 0, "agreement_every must be 0 (never) or more")
        for section in (
            self.student,
            self.batch,
            self.budget,
            self.mean,
            self.shape,
            self.curriculum,
            self.sam,
            self.fused,
            self.features,
            self.cutmix,
            self.prediction,
        ):
            section.validate()
        self.foundation.validate(self.uses_foundation_model, self.method)

    # -- what the run uses ------------------------------------------------------------------

    @property
    def active_teachers(self) -> tuple[str, ...]:
        """The teachers of this run: ``teachers`` if given, else the preset's."""
        return self.teachers if self.teachers is not None else PRESETS[self.method].teachers

    @property
    def uses_foundation_teacher(self) -> bool:
        """Whether a teacher of the run (or a member of its fused teacher) is the foundation
        model."""
        teachers = self.active_teachers
        fused = "fused" in teachers and self.fused.uses_foundation_model()
        return FOUNDATION_TEACHER in teachers or fused

    def feature_weight(self, part: str) -> float:
        """The weight of ``distill`` or ``prototype`` for this run: the one set, else the
        preset's."""
        value = getattr(self.features, f"{part}_weight")
        return float(preset_part(self.method, part) if value is None else value)

    def resolved_features(self) -> FeatureSettings:
        """The feature settings with both weights resolved (the preset's where unset)."""
        return dataclasses.replace(
            self.features,
            distill_weight=self.feature_weight("distill"),
            prototype_weight=self.feature_weight("prototype"),
        )

    @property
    def uses_feature_terms(self) -> bool:
        """Whether feature distillation or prototype alignment is on (the feature bank)."""
        return self.feature_weight("distill") > 0 or self.feature_weight("prototype") > 0

    @property
    def uses_feature_bank(self) -> bool:
        """Whether the run embeds a feature bank: a feature term, or pretraining."""
        return self.uses_feature_terms or self.features.pretrain_steps > 0

    @property
    def uses_foundation_model(self) -> bool:
        """Whether the run loads the foundation model (its teacher or a feature bank)."""
        return self.uses_foundation_teacher or self.uses_feature_bank

    def uses_cutmix(self, num_classes: int) -> bool:
        """Whether a run on ``num_classes`` foreground classes mixes slices by CutMix."""
        value = self.cutmix.on
        return on_for(preset_part(self.method, "cutmix") if value is None else value, num_classes)

    def refine_mode(self, num_classes: int) -> str:
        """How this model's predictions of ``num_classes`` classes are refined unless a
        prediction asks otherwise: ``prediction.refine``, else ``auto`` for a model trained
        with the foundation model, else the preset's."""
        if self.prediction.refine is not None:
            return self.prediction.refine
        if self.uses_foundation_model:
            return "auto"
        return "auto" if on_for(PRESETS[self.method].refine, num_classes) else "off"

    # -- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from JSON values (sections as objects, or the flat keys of earlier
        versions); unknown keys and wrong types are refused by name."""
        if not isinstance(values, dict):
            raise SsSegError(f"training settings must be an object, not {type(values).__name__}")
        return section_from_dict(cls, legacy.read(values))

    def with_values(self, changes: dict[str, Any]) -> TrainConfig:
        """A copy with ``changes`` (JSON values, nested by section) written over these."""
        return TrainConfig.from_dict(merged(self.to_dict(), legacy.read(changes)))

    @classmethod
    def for_method(cls, name: str, values: dict[str, Any] | None = None) -> TrainConfig:
        """The settings ``values`` (default: none) with the method ``name`` and what its
        switches write (``ssl+sam``: ssl's teachers and the foundation teacher); the
        switches win over ``values``."""
        return cls.from_dict(merged(legacy.read(values or {}), parse_method(name).values()))
