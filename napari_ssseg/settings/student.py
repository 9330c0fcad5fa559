"""Settings of the student network and of the data it learns from."""

from __future__ import annotations

from dataclasses import dataclass, field

from napari_ssseg.settings.values import in_range, require

MODALITIES = ("auto", "ct", "mr")


@dataclass(frozen=True)
class IntensityConfig:
    """How voxel values become network inputs (``data/intensity.py``).

    Attributes:
        modality: ``"ct"``, ``"mr"`` or ``"auto"`` (CT when the volume reaches air, -500 HU).
        ct_window: Hounsfield window (low, high) mapped to [0, 1]; default soft tissue.
        mr_percentiles: percentiles (low, high) of the volume clipped and mapped to [0, 1].
    """

    modality: str = "auto"
    ct_window: tuple[float, float] = (-160.0, 240.0)
    mr_percentiles: tuple[float, float] = (0.5, 99.5)

    def validate(self) -> None:
        require(self.modality in MODALITIES, f"modality must be one of {', '.join(MODALITIES)}")
        low, high = self.ct_window
        require(low < high, f"ct_window {low:g}..{high:g} must go from low to high")
        low, high = self.mr_percentiles
        require(
            0 <= low < high <= 100,
            f"mr_percentiles {low:g}..{high:g} must satisfy 0 <= low < high <= 100",
        )


@dataclass
class StudentSettings:
    """The 2-D U-Net (``networks/unet.py``), its optimiser and its inputs.

    Attributes:
        image_size: side of the square grid slices are resized to.
        channels: feature maps per U-Net level (at least two levels).
        dropout: dropout rate; also what MC-dropout inference samples.
        lr: AdamW's learning rate at the start (it decays with training progress).
        weight_decay: AdamW's weight decay.
        intensity: how voxel values become inputs.
    """

    image_size: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    dropout: float = 0.1
    lr: float = 2e-3
    weight_decay: float = 1e-4
    intensity: IntensityConfig = field(default_factory=IntensityConfig)

    def validate(self) -> None:
        require(
            len(self.channels) >= 2 and min(self.channels) >= 1,
            f"student.channels {list(self.channels)} must list at least 2 positive feature "
            "counts (one per U-Net level)",
        )
        stride = 2 ** (len(self.channels) - 1)
        require(
            self.image_size >= stride and self.image_size % stride == 0,
            f"student.image_size {self.image_size} must be a positive multiple of {stride}",
        )
        in_range("student.dropout", self.dropout, 0.0, 1.0, open_high=True)
        require(self.lr > 0, f"student.lr must be a positive number, not {self.lr}")
        require(self.weight_decay >= 0, "student.weight_decay must be 0 or more")
        self.intensity.validate()


@dataclass
class BatchSettings:
    """What a training step draws (``training/loop.py``).

    Attributes:
        size: slices a step, labelled ones and (once teachers teach) unannotated ones.
        unlabelled: unannotated slices a step once teachers teach.
        share: the unannotated slices take places in the batch (at least one labelled slice
            stays) instead of being added, so a step with teachers costs about what a
            supervised step costs and a time budget buys about as many steps.
        strong_view: the student sees unannotated slices through a strong perturbation
            (contrast, blur, noise, cut-out) on top of the common augmentation, the
            teachers' targets coming from the unperturbed slice (weak/strong views).
        target_refresh: steps between refreshes of the teachers' cached targets.
        target_cache: unannotated slices whose targets are cached at a refresh (the mean
            teacher's MC-dropout passes would cost more than a step if made every step).
    """

    size: int = 4
    unlabelled: int = 1
    share: bool = True
    strong_view: bool = False
    target_refresh: int = 50
    target_cache: int = 16

    def validate(self) -> None:
        require(
            self.size >= 1 and self.unlabelled >= 1,
            "batch.size and batch.unlabelled must be at least 1",
        )
        require(
            self.target_refresh >= 1 and self.target_cache >= 1,
            "batch.target_refresh and batch.target_cache must be at least 1",
        )
