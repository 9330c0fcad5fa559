"""Settings of prediction and of the foundation model every part shares."""

from __future__ import annotations

from dataclasses import dataclass

from napari_ssseg.settings.model_cards import model_cards
from napari_ssseg.settings.values import in_range, require

REFINE_MODES: tuple[str, ...] = ("off", "auto", "sam")
"""How predictions are refined by the foundation model: ``off``, the U-Net alone; ``auto``,
refined masks for the classes where they measure better on the annotated slices; ``sam``,
refined masks for every class (``inference/sam_refine.py``)."""


@dataclass
class PredictionSettings:
    """Whole-volume prediction (``inference/predict.py``).

    Attributes:
        passes: MC-dropout passes averaged per slice (the uncertainty comes from them).
        refine: one of :data:`REFINE_MODES` (None: the method's preset decides).
        refine_trust: with ``auto``, a class also takes the foundation model's masks when
            they reach this Dice on the annotated slices, whatever the U-Net scores there
            (the U-Net trained on those slices, so its score there says little).
        refine_agreement: with ``auto``, a refined class keeps the U-Net's masks on a slice
            where the two agree less than this (Dice): refined masks fail by leaking or
            vanishing, not by a few pixels. 0: no guard.
        keep_connected: drop predicted 3-D components touching no annotated voxel of their
            class.
    """

    passes: int = 8
    refine: str | None = None
    refine_trust: float = 0.93
    refine_agreement: float = 0.5
    keep_connected: bool = True

    def validate(self) -> None:
        require(self.passes >= 1, "prediction.passes must be at least 1")
        require(
            self.refine is None or self.refine in REFINE_MODES,
            f"prediction.refine must be one of {', '.join(REFINE_MODES)} (or null), "
            f"not {self.refine!r}",
        )
        in_range("prediction.refine_trust", self.refine_trust, 0.0, 1.0)
        in_range("prediction.refine_agreement", self.refine_agreement, 0.0, 1.0)


@dataclass
class FoundationSettings:
    """The foundation model (``foundation/``) that the foundation teacher, the feature terms
    and refinement share.

    Attributes:
        model: a model card of :mod:`~napari_ssseg.settings.model_cards` (``litemedsam`` ships its
            weights; SAM and MedSAM need ``checkpoint``).
        checkpoint: path of the checkpoint file (None: the bundled weights).
        embedding_cache: folder of the on-disk embedding cache (None: the user cache).
    """

    model: str = "litemedsam"
    checkpoint: str | None = None
    embedding_cache: str | None = None

    def validate(self, used: bool, method: str) -> None:
        """Refuse an unknown model, or one whose weights are neither bundled nor given when
        the run ``used`` it (``method`` names the run in the message)."""
        cards = model_cards()
        require(
            self.model in cards,
            f"unknown foundation model {self.model!r}; choose one of {', '.join(cards)}",
        )
        card = cards[self.model]
        require(
            not used or card.bundled_in is not None or bool(self.checkpoint),
            f"method {method} with foundation model {self.model} needs "
            f"foundation.checkpoint: its weights are not bundled (get {card.filename} from "
            f"{card.source_url})",
        )
