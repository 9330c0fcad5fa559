"""Settings of the training parts beyond teachers: imbalance-aware CutMix and the feature
terms learnt from the foundation model's encoder."""

from __future__ import annotations

from dataclasses import dataclass

from napari_ssseg.settings.values import in_range, require


@dataclass
class CutMixSettings:
    """Imbalance-aware CutMix (DINO-Mix, ``training/cutmix.py``).

    Attributes:
        on: mix slices (None: as the method's preset says).
        prob: probability that a step mixes.
        area: share of the slice a pasted box covers.
        anneal: progress at which box placement, first centred preferably on rare classes,
            has faded to uniform (0: uniform from the start).
    """

    on: bool | None = None
    prob: float = 0.5
    area: float = 0.25
    anneal: float = 1.0

    def validate(self) -> None:
        in_range("cutmix.prob", self.prob, 0.0, 1.0)
        in_range("cutmix.area", self.area, 0.0, 1.0, open_low=True, open_high=True)
        require(
            self.anneal >= 0.0,
            "cutmix.anneal must be 0 or more (the training progress at which box placement "
            f"becomes uniform), not {self.anneal}",
        )


@dataclass
class FeatureSettings:
    """Feature-level guidance from the frozen foundation encoder
    (``training/feature_alignment.py``): the U-Net's projected decoder features pulled toward
    the encoder's embeddings per location (distillation, UnCoL) and per class region
    (prototype alignment, BARL), and distillation alone before the first labelled step.

    Attributes:
        distill_weight: weight of distillation (None: the preset's; 0: off).
        prototype_weight: weight of prototype alignment (None: the preset's; 0: off).
        slices: slices embedded once into the feature bank.
        batch: bank slices a step adds.
        components: leading principal directions of the embeddings kept (0: all 256
            channels, which make a step cost about twice as much on a CPU).
        prototype_confidence: unannotated pixels count in a class region where the student's
            probability reaches this.
        pretrain_steps: steps of distillation alone before the first labelled step of a
            fresh run (within the budget's pretraining share; 0: off).
    """

    distill_weight: float | None = None
    prototype_weight: float | None = None
    slices: int = 16
    batch: int = 1
    components: int = 32
    prototype_confidence: float = 0.8
    pretrain_steps: int = 0

    def validate(self) -> None:
        for name in ("distill_weight", "prototype_weight"):
            value = getattr(self, name)
            require(
                value is None or value >= 0,
                f"features.{name} must be 0 (off) or a positive number, not {value}",
            )
        require(
            self.slices >= 1 and self.batch >= 1,
            "features.slices and features.batch must be at least 1",
        )
        require(
            self.components >= 0,
            f"features.components must be 0 (every channel) or more, not {self.components}",
        )
        in_range(
            "features.prototype_confidence", self.prototype_confidence, 0.0, 1.0, open_low=True
        )
        require(
            self.pretrain_steps >= 0,
            f"features.pretrain_steps must be 0 (off) or more, not {self.pretrain_steps}",
        )
