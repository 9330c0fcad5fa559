"""Training settings, serialisable to and from JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from napari_ssseg.data.intensity import MODALITIES, IntensityConfig
from napari_ssseg.errors import SsSegError
from napari_ssseg.foundation.registry import model_cards

METHODS: dict[str, tuple[str, ...]] = {
    "unet": (),
    "mt": ("mean",),
    "shape": ("shape",),
    "connect": ("connect",),
    "ssl": ("mean", "shape"),
    "sc-sam": ("sam",),
    "curriculum": ("self",),
}
"""Method presets and the teachers they train with (see :mod:`napari_ssseg.training.teachers`).

``unet``: supervised on annotated slices only. ``mt``: plus the uncertainty-aware mean teacher
on every unannotated slice. ``shape``: plus shape continuity (targets interpolated between
annotated slices, gated by distance to the contour and to the annotated slices).
``connect``: plus 3-D continuity (predicted components not connected to the annotation taught
as background). ``ssl``: mean teacher and shape continuity. ``sc-sam``: the foundation model
prompted by the student's prediction (frozen for now; see ``training/teachers/foundation.py``)."""


@dataclass
class TrainConfig:
    """Everything that decides a training run (with the data and the seed, its result).

    ``max_iters`` and ``max_time`` both bound the run; whichever is reached first ends it.
    Schedules (learning rate, ramp-up) follow the larger of the two progress fractions, so
    a run stopped by ``max_time`` still completes its schedules. With ``max_time=None`` the
    run is deterministic on the CPU for a given seed.
    """

    # The benchmark (README) measured unet ahead of ssl on both data sets so far.
    method: str = "unet"
    image_size: int = 128
    context: int = 0
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    dropout: float = 0.1
    max_iters: int = 3000
    max_time: float | None = None
    batch_size: int = 4
    unlabelled_batch_size: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-4
    ema_decay: float = 0.95
    consistency_weight: float = 0.1
    consistency_loss: str = "mse"
    ssl_start: float = 0.25
    rampup: float = 0.4
    teacher_passes: int = 4
    teacher_refresh: int = 20
    teacher_cache: int = 16
    teacher_noise: float = 0.1
    threshold_start: float = 0.5
    threshold_end: float = 0.8
    shape_weight: float = 1.0
    shape_margin_mm: float = 2.0
    shape_range_mm: float = 10.0
    connect_weight: float = 1.0
    connect_refresh: int = 50
    curriculum_start_fraction: float = 0.5
    curriculum_weight: float = 0.5
    foundation_model: str = "litemedsam"
    foundation_checkpoint: str | None = None
    embedding_cache: str | None = None
    sam_weight: float = 1.0
    sam_refresh: int = 25
    sam_slices: int = 8
    sam_lora_rank: int = 4
    sam_lr: float = 5e-4
    sam_tune_steps: int = 2
    inference_passes: int = 8
    # Steps between reports of the agreement with the labels on annotated slices (0: never).
    agreement_every: int = 50
    # Drop predicted 3-D components touching no annotated voxel of their class (see
    # inference/connectivity.py); +2 to +20 Dice points per volume on LA and ACDC pilots.
    keep_connected: bool = True
    seed: int = 0
    device: str = "auto"
    intensity: IntensityConfig = field(default_factory=IntensityConfig)

    def __post_init__(self) -> None:
        if isinstance(self.intensity, dict):
            self.intensity = IntensityConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in self.intensity.items()}
            )
        self.channels = tuple(int(c) for c in self.channels)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SsSegError` naming the first bad setting."""
        if self.method not in METHODS:
            raise SsSegError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        stride = 2 ** (len(self.channels) - 1)
        if self.image_size < stride or self.image_size % stride:
            raise SsSegError(
                f"image_size {self.image_size} must be a positive multiple of {stride}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise SsSegError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.max_iters < 1:
            raise SsSegError("max_iters must be at least 1")
        if self.max_time is not None and self.max_time <= 0:
            raise SsSegError(f"max_time must be positive, not {self.max_time}")
        if self.consistency_loss not in ("mse", "ce"):
            raise SsSegError(f"consistency_loss must be mse or ce, not {self.consistency_loss!r}")
        if self.batch_size < 1 or self.unlabelled_batch_size < 1:
            raise SsSegError("batch_size and unlabelled_batch_size must be at least 1")
        if self.teacher_refresh < 1 or self.teacher_cache < 1:
            raise SsSegError("teacher_refresh and teacher_cache must be at least 1")
        if self.shape_margin_mm <= 0 or self.shape_range_mm <= 0 or self.shape_weight < 0:
            raise SsSegError(
                "shape_margin_mm and shape_range_mm must be positive and shape_weight >= 0"
            )
        if self.connect_refresh < 1 or self.connect_weight < 0:
            raise SsSegError("connect_refresh must be at least 1 and connect_weight >= 0")
        if self.sam_refresh < 1 or self.sam_slices < 1 or self.sam_weight < 0:
            raise SsSegError("sam_refresh and sam_slices must be at least 1 and sam_weight >= 0")
        if self.foundation_model not in model_cards():
            raise SsSegError(
                f"unknown foundation model {self.foundation_model!r}; choose one of "
                f"{', '.join(model_cards())}"
            )
        if self.context < 0:
            raise SsSegError("context must be 0 or more")
        if self.intensity.modality not in MODALITIES:
            raise SsSegError(f"modality must be one of {', '.join(MODALITIES)}")

    @property
    def teachers(self) -> tuple[str, ...]:
        """The teachers of this run's method."""
        return METHODS[self.method]

    @property
    def in_channels(self) -> int:
        return 2 * self.context + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from JSON values; unknown keys and wrong types are refused by name."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SsSegError(f"unknown training setting(s): {', '.join(unknown)}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise SsSegError(f"bad training settings: {error}") from error
