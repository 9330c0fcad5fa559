"""Training settings, serialisable to and from JSON."""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from napari_ssseg.data.intensity import MODALITIES, IntensityConfig
from napari_ssseg.errors import SsSegError
from napari_ssseg.foundation.registry import model_cards

METHODS: dict[str, tuple[str, ...]] = {
    "unet": (),
    "mt": ("mean",),
    "shape": ("shape",),
    "flow": ("flow",),
    "connect": ("connect",),
    "ssl": ("mean", "shape"),
    "sc-sam": ("sam",),
    "curriculum": ("self",),
    "uncol": ("fused",),
    "full": ("fused", "shape", "self"),
}
"""Method presets and the teachers they train with (see :mod:`napari_ssseg.training.teachers`).

``unet``: supervised on annotated slices only. ``mt``: plus the uncertainty-aware mean teacher
on every unannotated slice. ``shape``: plus shape continuity (targets interpolated between
annotated slices, gated by distance to the contour and to the annotated slices and by how well
the two annotated shapes agree; background beyond the annotated structure's ends).
``flow``: plus slice propagation (the annotated labels carried to neighbouring slices by
optical flow on the images, ``training/teachers/flow.py``).
``connect``: plus 3-D continuity (predicted components not connected to the annotation taught
as background). ``ssl``: mean teacher and shape continuity. ``sc-sam``: the
foundation model prompted by the student's prediction, its decoder LoRA-tuned
(``training/teachers/foundation.py``).
``curriculum``: whole-volume EMA pseudo-labels admitted by confidence. ``uncol``: UnCoL's dual
teacher, the mean teacher and the foundation model both supervising through one target per
slice, each pixel taken from the member with the lower uncertainty (the teachers of
:data:`FUSED_MEMBERS`; ``training/teachers/fused.py``), with feature distillation.
``full``: every part on (see :data:`PRESET_PARTS`)."""

TEACHERS: tuple[str, ...] = ("mean", "shape", "flow", "connect", "self", "sam", "fused")
"""Every teacher a run can train with (``training/teachers``)."""

FUSED_MEMBERS: tuple[str, ...] = ("mean", "sam")
"""The teachers whose targets the ``fused`` teacher fuses (earlier ones win ties)."""

REFINE_MODES: tuple[str, ...] = ("off", "auto", "sam")
"""How predictions are refined by the foundation model: ``off``, the U-Net alone; ``auto``,
refined masks for the classes where they measure better on the annotated slices; ``sam``,
refined masks for every class (``inference/sam_refine.py``)."""

PART_OFF: dict[str, Any] = {"distill_weight": 0.0, "prototype_weight": 0.0, "cutmix": False}
"""The parts beyond teachers, each a setting, and its value when off."""

MULTI_CLASS = "multi-class"
"""A preset's value for CutMix or refinement: on for projects of two or more classes, off for
one class."""

PRESET_PARTS: dict[str, dict[str, Any]] = {
    "ssl": {"cutmix": MULTI_CLASS},
    "uncol": {"distill_weight": 1.0},
    "full": {"distill_weight": 1.0, "prototype_weight": 0.5, "cutmix": True},
}
"""The parts a preset switches on beyond its teachers (a part's setting given explicitly, off
included, wins over its preset). ``ssl``: imbalance-aware CutMix when the project has two or
more classes (two paired ACDC runs, three classes: +0.4 and +0.9 Dice over ``unet``, ahead
on 15 of 20 volumes; LA, one class: it cost ``ssl`` Dice; README, Results). ``uncol``:
UnCoL's feature distillation with its dual teacher. ``full``: every part: the dual teacher,
shape continuity, the confidence curriculum, feature distillation, BARL's prototype
alignment and imbalance-aware CutMix."""

PRESET_REFINE: dict[str, bool | str] = {"ssl": MULTI_CLASS}
"""Whether a preset's predictions are refined (``auto``: True or :data:`MULTI_CLASS`) when
neither the model's ``refine`` setting nor the prediction says (the others: ``auto`` with a
foundation-model teacher or feature term, else ``off``). ``ssl``: ``auto`` with two classes
or more (ACDC, three classes, the same model refined and not, 20 ``val`` volumes: +0.45 Dice
on average, ahead on 15, largest loss -4.8); ``off`` for one class (LA: ``auto`` kept the
U-Net's masks on all 20 volumes, at the cost of loading the foundation model and embedding
the annotated slices; README, Results)."""


def _on_for(value: bool | str, num_classes: int) -> bool:
    """Whether a part set to ``value`` (a bool or :data:`MULTI_CLASS`) is on for a project of
    ``num_classes`` foreground classes."""
    return num_classes >= 2 if value == MULTI_CLASS else bool(value)


@dataclass
class TrainConfig:
    """Everything that decides a training run (with the data and the seed, its result).

    ``max_iters`` and ``max_time`` both bound the run; whichever is reached first ends it.
    Schedules (learning rate, ramp-up) follow the larger of the two progress fractions, so
    a run stopped by ``max_time`` still completes its schedules. With ``max_time=None`` the
    run is deterministic on the CPU for a given seed.
    """

    # The benchmark chose it (README, Results): ssl 91.7 vs unet 85.6 Dice on LA; on ACDC,
    # with CutMix (three classes), 0.8 ahead of unet over three paired runs; the
    # foundation-model presets scored 70.3 (LA) and 73.1 (uncol, ACDC) on a CPU.
    method: str = "ssl"
    # The teachers to train with instead of the method's (None: the method's; ablations, e.g.
    # ssl with the foundation-model teacher added, are written this way).
    teachers_override: tuple[str, ...] | None = None
    image_size: int = 128
    context: int = 0
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    dropout: float = 0.1
    # "element" or "channel" (whole feature maps dropped; see networks.unet.build_unet).
    dropout_shape: str = "element"
    max_iters: int = 3000
    max_time: float | None = None
    batch_size: int = 4
    unlabelled_batch_size: int = 1
    # True: once teachers are on, the unlabelled slices take places in the batch (at least one
    # labelled slice stays) instead of being added to it, so a step costs about what a
    # supervised step costs and a time budget buys about as many steps as the U-Net alone gets
    # (2-core CPU, LA and ACDC: 90 % of them instead of 55 %).
    share_batch: bool = True
    # The student sees unannotated slices through a strong perturbation (contrast, blur, noise,
    # cut-out; data/augment.py) on top of the common augmentation, the teachers' targets coming
    # from the unperturbed slice (FixMatch's weak/strong views).
    strong_view: bool = False
    lr: float = 2e-3
    weight_decay: float = 1e-4
    ema_decay: float = 0.95
    consistency_weight: float = 0.1
    consistency_loss: str = "mse"
    ssl_start: float = 0.5
    rampup: float = 0.4
    teacher_passes: int = 2
    teacher_refresh: int = 50
    teacher_cache: int = 16
    teacher_noise: float = 0.1
    threshold_start: float = 0.5
    threshold_end: float = 0.8
    shape_weight: float = 1.0
    # The shape teacher waits for half the run like the mean teacher: a U-Net first fitted to
    # the labelled slices alone keeps a small structure (ACDC's end-systolic LV) that early
    # low-confidence interpolated targets otherwise wash out (engine_v3 benchmark, README).
    shape_start: float = 0.5
    shape_margin_mm: float = 2.0
    shape_range_mm: float = 10.0
    # Teach background on slices well beyond the outermost labelled slice (shape.py).
    shape_extent: bool = True
    # Slice propagation (teachers/flow.py), from shape_start at full weight: labels carried
    # up to flow_reach slices from each annotated slice, by Lucas-Kanade flow over windows of
    # flow_radius_mm; confidence falls with the image mismatch after warping (scale
    # flow_sigma, intensities in [0, 1]) and by flow_decay per further slice.
    # 3: beside the mean teacher and shape continuity (ssl+flow) it has a third of the
    # unannotated slices the loop draws; at weight 1 it changed nothing on a 4-volume ACDC
    # pilot, at 3 it helped there but lost 1.0 Dice to unet on 10 volumes (README).
    flow_weight: float = 3.0
    flow_reach: int = 1
    flow_radius_mm: float = 15.0
    flow_sigma: float = 0.1
    flow_decay: float = 0.7
    connect_weight: float = 1.0
    connect_refresh: int = 50
    curriculum_start_fraction: float = 0.5
    curriculum_weight: float = 0.5
    # Slices the curriculum predicts at one refresh, whole volumes taken in turn (a project of
    # many volumes would otherwise cost a prediction of every slice of all of them each time).
    curriculum_slices: int = 256
    foundation_model: str = "litemedsam"
    foundation_checkpoint: str | None = None
    embedding_cache: str | None = None
    sam_weight: float = 1.0
    sam_refresh: int = 25
    sam_slices: int = 8
    sam_lora_rank: int = 4
    sam_lr: float = 5e-4
    sam_tune_steps: int = 2
    # Per-class trust in the foundation model, measured at every refresh on (up to 8) annotated
    # slices: its masks prompted with each labelled class's box must reach this Dice with the
    # user's labels, or the class is not taught from its masks (0: trust every class).
    # LiteMedSAM's box-prompted mask of ACDC's myocardium ring is the filled disc.
    sam_trust_dice: float = 0.0
    # At most this share of max_time goes to new foundation-model embeddings (the encoder:
    # seconds per slice on a CPU), all parts together; the feature bank takes at most half of
    # it, and once it is spent the foundation teacher refreshes its targets only on slices
    # already embedded. 1: no cap. Without max_time there is no cap.
    foundation_time_share: float = 1.0
    # With max_time, the foundation teacher's refreshes (the student's prediction, decoding
    # its targets, tuning the adapters, new embeddings) take at most this share of the time
    # since its first refresh: a due refresh waits while they have taken more. A refresh
    # costs about 8 s on one CPU thread (ACDC, 3 classes, 8 slices; half of it the adapters),
    # some 55 student steps: in 120 s on ACDC the refreshes took 40 to 47 s, two thirds of
    # the teacher's half (sam_teacher_time_v1.sh). 1: no cap. Step-bounded runs (no
    # max_time) are never capped.
    sam_time_share: float = 1.0
    # Weight of the fused (UnCoL) teacher's confidence-weighted CE, ramped up from ssl_start.
    fused_weight: float = 1.0
    # The teachers the fused teacher fuses (earlier ones win ties; UnCoL: FUSED_MEMBERS).
    fused_members: tuple[str, ...] = FUSED_MEMBERS
    # Feature-level guidance from the frozen foundation encoder (training/feature_alignment.py),
    # any method, off at 0: the U-Net's projected decoder features pulled toward the encoder's
    # embeddings per location (distill, UnCoL) and per class region (prototype, BARL), on
    # distill_batch extra slices per step drawn from distill_slices slices embedded once
    # (cached). Unannotated regions: the student's argmax where its probability reaches
    # prototype_confidence.
    # None: the method's preset decides (PRESET_PARTS; off for most); read through part().
    distill_weight: float | None = None
    prototype_weight: float | None = None
    distill_slices: int = 16
    distill_batch: int = 1
    # The bank's embeddings kept along this many leading principal directions (0: all 256
    # channels); 256 made a distillation step cost twice a plain one on the CPU
    # (training/embedding_bank.py).
    distill_components: int = 32
    prototype_confidence: float = 0.8
    # Steps of feature distillation alone before a fresh run's first supervised step
    # (FeatureAlignment.pretrain): the student's projected decoder features pulled toward the
    # bank's embeddings, batch_size bank slices a step, no labels used; inside the run's time
    # (at most half of max_time). 0: off. A warm-started run (a retrain) skips it.
    pretrain_steps: int = 0
    # Imbalance-aware CutMix (DINO-Mix, training/cutmix.py), any method: with probability
    # cutmix_prob a step pastes boxes covering cutmix_area of the slice between labelled slices
    # and between labelled and unlabelled ones, centred preferably on rare classes; the
    # preference fades linearly to uniform placement at progress cutmix_anneal (0: uniform).
    # None: the preset decides (ssl: on with two classes or more); read through uses_cutmix().
    cutmix: bool | None = None
    cutmix_prob: float = 0.5
    cutmix_area: float = 0.25
    cutmix_anneal: float = 1.0
    inference_passes: int = 8
    # How this model's predictions are refined unless the prediction asks otherwise (one of
    # REFINE_MODES; None: the preset's, see refine_mode()).
    refine: str | None = None
    # With refine auto, a class also takes the foundation model's masks when they reach this
    # Dice on the annotated slices, whatever the U-Net scores there: the U-Net trained on those
    # slices, so its score there says little of the others, and its pooled Dice on the
    # unannotated slices of the sparse benchmark stayed below 0.93 for every class
    # (benchmarks/refine_headroom.py). 1: only masks matching the labels exactly.
    refine_trust: float = 0.93
    # With refine auto, a class taking the foundation model's masks keeps the U-Net's on a
    # slice where the two masks agree less than this (their Dice there; a slice where neither
    # holds the class agrees): the refined masks fail by leaking or vanishing, not by a few
    # pixels (ACDC, benchmarks/refine_headroom.py: the left ventricle's refined masks were
    # better on 75 of 87 slices and lost most on the 5 agreeing below 0.8). 0: no guard.
    refine_agreement: float = 0.5
    # With refine auto, a class taking the foundation model's masks also keeps the U-Net's on a
    # slice where its refined mask covers fewer pixels than this times the U-Net's: a mask that
    # shrinks round a core agrees well enough to pass refine_agreement (ACDC patient039_frame02:
    # the right ventricle 78.2 -> 63.7 with the agreement guard alone; 0.8 mends it). Off (0)
    # by default: on data it was not set on it also turns down masks rightly smaller than an
    # over-segmenting U-Net's (ACDC train volumes -0.3 estimated, the bundled liver -1.8).
    refine_min_area: float = 0.0
    # Steps between reports of the agreement with the labels on annotated slices (0: never).
    agreement_every: int = 50
    # Teachers wait until the student reproduces every class on the annotated slices it is
    # trained on (Dice of each class >= this, checked every agreement_every steps; 0: no
    # wait): pseudo-labels from a student that has not learnt a small class yet (ACDC's
    # end-systolic left ventricle) lack it and would teach it away. If the student never
    # gets there within the budget, the run stays supervised.
    teacher_gate_dice: float = 0.8
    # Drop predicted 3-D components touching no annotated voxel of their class (see
    # inference/connectivity.py); +2 to +20 Dice points per volume on LA and ACDC pilots.
    keep_connected: bool = True
    seed: int = 0
    device: str = "auto"
    intensity: IntensityConfig = field(default_factory=IntensityConfig)

    def __post_init__(self) -> None:
        if isinstance(self.intensity, dict):
            self.intensity = _setting("intensity", self.intensity, IntensityConfig)
        if not isinstance(self.intensity, IntensityConfig):
            raise SsSegError(
                f"training setting intensity must be an object, not {self.intensity!r}"
            )
        self.channels = tuple(int(c) for c in self.channels)
        self.fused_members = tuple(self.fused_members)
        if self.teachers_override is not None:
            self.teachers_override = tuple(self.teachers_override)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SsSegError` naming the first bad setting."""
        if self.method not in METHODS:
            raise SsSegError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        unknown = sorted(set(self.teachers) - set(TEACHERS))
        if unknown:
            raise SsSegError(
                f"unknown teacher(s) {', '.join(unknown)}; choose from {', '.join(TEACHERS)}"
            )
        members = set(self.fused_members)
        if not members or not members <= set(TEACHERS) - {"fused"}:
            raise SsSegError(
                f"fused_members {list(self.fused_members)} must name at least one teacher of "
                f"{', '.join(t for t in TEACHERS if t != 'fused')}"
            )
        stride = 2 ** (len(self.channels) - 1)
        if self.image_size < stride or self.image_size % stride:
            raise SsSegError(
                f"image_size {self.image_size} must be a positive multiple of {stride}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise SsSegError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if len(self.channels) < 2 or min(self.channels) < 1:
            raise SsSegError(
                f"channels {list(self.channels)} must list at least 2 positive feature counts "
                "(one per U-Net level)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise SsSegError(f"dropout must lie in [0, 1), not {self.dropout}")
        if self.dropout_shape not in ("element", "channel"):
            raise SsSegError(
                f"dropout_shape must be element or channel, not {self.dropout_shape!r}"
            )
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise SsSegError(f"lr must be a positive number, not {self.lr}")
        if self.max_iters < 1:
            raise SsSegError("max_iters must be at least 1")
        if self.max_time is not None and self.max_time <= 0:
            raise SsSegError(f"max_time must be positive, not {self.max_time}")
        if self.consistency_loss not in ("mse", "ce"):
            raise SsSegError(f"consistency_loss must be mse or ce, not {self.consistency_loss!r}")
        if self.batch_size < 1 or self.unlabelled_batch_size < 1:
            raise SsSegError("batch_size and unlabelled_batch_size must be at least 1")
        if not 0.0 <= self.refine_trust <= 1.0:
            raise SsSegError(f"refine_trust must lie in [0, 1], not {self.refine_trust}")
        if not 0.0 <= self.refine_agreement <= 1.0:
            raise SsSegError(f"refine_agreement must lie in [0, 1], not {self.refine_agreement}")
        if not 0.0 <= self.refine_min_area <= 1.0:
            raise SsSegError(f"refine_min_area must lie in [0, 1], not {self.refine_min_area}")
        if self.refine is not None and self.refine not in REFINE_MODES:
            raise SsSegError(
                f"refine must be one of {', '.join(REFINE_MODES)} (or null), not {self.refine!r}"
            )
        if self.inference_passes < 1 or self.teacher_passes < 1:
            raise SsSegError("inference_passes and teacher_passes must be at least 1")
        if self.teacher_refresh < 1 or self.teacher_cache < 1:
            raise SsSegError("teacher_refresh and teacher_cache must be at least 1")
        if not 0.0 <= self.teacher_gate_dice <= 1.0:
            raise SsSegError(f"teacher_gate_dice must lie in [0, 1], not {self.teacher_gate_dice}")
        if not 0.0 <= self.shape_start < 1.0:
            raise SsSegError(f"shape_start must lie in [0, 1), not {self.shape_start}")
        if self.shape_margin_mm <= 0 or self.shape_range_mm <= 0 or self.shape_weight < 0:
            raise SsSegError(
                "shape_margin_mm and shape_range_mm must be positive and shape_weight >= 0"
            )
        if self.flow_reach < 1 or self.flow_weight < 0:
            raise SsSegError("flow_reach must be at least 1 and flow_weight >= 0")
        if self.flow_radius_mm <= 0 or self.flow_sigma <= 0 or not 0 < self.flow_decay <= 1:
            raise SsSegError(
                "flow_radius_mm and flow_sigma must be positive and flow_decay in (0, 1]"
            )
        if self.connect_refresh < 1 or self.connect_weight < 0:
            raise SsSegError("connect_refresh must be at least 1 and connect_weight >= 0")
        if self.curriculum_slices < 1:
            raise SsSegError(f"curriculum_slices must be at least 1, not {self.curriculum_slices}")
        if self.sam_refresh < 1 or self.sam_slices < 1 or self.sam_weight < 0:
            raise SsSegError("sam_refresh and sam_slices must be at least 1 and sam_weight >= 0")
        if not 0.0 <= self.sam_trust_dice <= 1.0:
            raise SsSegError(f"sam_trust_dice must lie in [0, 1], not {self.sam_trust_dice}")
        if not 0.0 < self.sam_time_share <= 1.0:
            raise SsSegError(f"sam_time_share must lie in (0, 1], not {self.sam_time_share}")
        if not 0.0 < self.foundation_time_share <= 1.0:
            raise SsSegError(
                f"foundation_time_share must lie in (0, 1], not {self.foundation_time_share}"
            )
        if not self.fused_weight >= 0:
            raise SsSegError(f"fused_weight must be 0 or more, not {self.fused_weight}")
        for name in ("distill_weight", "prototype_weight"):
            value = self.part(name)
            if not (value >= 0 and math.isfinite(value)):
                raise SsSegError(f"{name} must be 0 (off) or a positive number, not {value}")
        if self.distill_slices < 1 or self.distill_batch < 1:
            raise SsSegError("distill_slices and distill_batch must be at least 1")
        if self.pretrain_steps < 0:
            raise SsSegError(f"pretrain_steps must be 0 (off) or more, not {self.pretrain_steps}")
        if self.distill_components < 0:
            raise SsSegError(
                f"distill_components must be 0 (every channel) or more, "
                f"not {self.distill_components}"
            )
        if not 0.0 < self.prototype_confidence <= 1.0:
            raise SsSegError(
                f"prototype_confidence must lie in (0, 1], not {self.prototype_confidence}"
            )
        if not 0.0 <= self.cutmix_prob <= 1.0:
            raise SsSegError(f"cutmix_prob must lie in [0, 1], not {self.cutmix_prob}")
        if not 0.0 < self.cutmix_area < 1.0:
            raise SsSegError(
                f"cutmix_area must lie in (0, 1) (a fraction of the slice), not {self.cutmix_area}"
            )
        if not self.cutmix_anneal >= 0.0:
            raise SsSegError(
                "cutmix_anneal must be 0 or more (the training progress at which box placement "
                f"becomes uniform), not {self.cutmix_anneal}"
            )
        if self.foundation_model not in model_cards():
            raise SsSegError(
                f"unknown foundation model {self.foundation_model!r}; choose one of "
                f"{', '.join(model_cards())}"
            )
        card = model_cards()[self.foundation_model]
        unbundled = card.bundled_in is None and not self.foundation_checkpoint
        if self.uses_foundation_model and unbundled:
            raise SsSegError(
                f"method {self.method} with foundation model {self.foundation_model} needs "
                f"foundation_checkpoint: its weights are not bundled (get {card.filename} from "
                f"{card.source_url})"
            )
        if self.context < 0:
            raise SsSegError("context must be 0 or more")
        if self.intensity.modality not in MODALITIES:
            raise SsSegError(f"modality must be one of {', '.join(MODALITIES)}")
        low, high = self.intensity.ct_window
        if not low < high:
            raise SsSegError(f"ct_window {low:g}..{high:g} must go from low to high")
        low, high = self.intensity.mr_percentiles
        if not 0 <= low < high <= 100:
            raise SsSegError(
                f"mr_percentiles {low:g}..{high:g} must satisfy 0 <= low < high <= 100"
            )

    @property
    def teachers(self) -> tuple[str, ...]:
        """The teachers of this run: ``teachers_override`` if given, else the method's."""
        if self.teachers_override is not None:
            return self.teachers_override
        return METHODS[self.method]

    @property
    def uses_foundation_teacher(self) -> bool:
        """Whether a teacher of the run (or of its fused teacher) is the foundation model."""
        fused = self.fused_members if "fused" in self.teachers else ()
        return "sam" in self.teachers + fused

    @property
    def uses_feature_terms(self) -> bool:
        """Whether feature distillation or prototype alignment is on (the feature bank)."""
        return self.part("distill_weight") > 0 or self.part("prototype_weight") > 0

    @property
    def uses_feature_bank(self) -> bool:
        """Whether the run embeds a feature bank: a feature term, or distillation before the
        run (``pretrain_steps``)."""
        return self.uses_feature_terms or self.pretrain_steps > 0

    @property
    def uses_foundation_model(self) -> bool:
        """Whether the run loads the foundation model: a foundation-model teacher or a
        feature bank (a feature term, or pretraining)."""
        return self.uses_foundation_teacher or self.uses_feature_bank

    def refine_mode(self, num_classes: int) -> str:
        """How this model's predictions of ``num_classes`` foreground classes are refined
        unless a prediction asks otherwise: ``refine``, else ``auto`` for a model trained with
        the foundation model, else the preset's (:data:`PRESET_REFINE`), else ``off``."""
        if self.refine is not None:
            return self.refine
        if self.uses_foundation_model:
            return "auto"
        return "auto" if _on_for(PRESET_REFINE.get(self.method, False), num_classes) else "off"

    @property
    def foundation_seconds(self) -> float | None:
        """Seconds of the budget new foundation-model embeddings may take (None: no cap)."""
        if self.max_time is None or self.foundation_time_share >= 1.0:
            return None
        return self.foundation_time_share * self.max_time

    def part(self, name: str) -> Any:
        """The value of the part setting ``name`` (a key of :data:`PART_OFF`) for this run: the
        one given, else the method preset's (:data:`PRESET_PARTS`), else off."""
        value = getattr(self, name)
        if value is not None:
            return value
        return PRESET_PARTS.get(self.method, {}).get(name, PART_OFF[name])

    def uses_cutmix(self, num_classes: int) -> bool:
        """Whether a run on a project of ``num_classes`` foreground classes mixes slices by
        CutMix: the ``cutmix`` setting given, else the preset's (:data:`MULTI_CLASS`:
        with two classes or more)."""
        return _on_for(self.part("cutmix"), num_classes)

    @property
    def in_channels(self) -> int:
        return 2 * self.context + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from JSON values; unknown keys and wrong types are refused by name."""
        if not isinstance(values, dict):
            raise SsSegError(f"training settings must be an object, not {type(values).__name__}")
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(values) - set(hints))
        if unknown:
            raise SsSegError(f"unknown training setting(s): {', '.join(map(str, unknown))}")
        return cls(**{name: _setting(name, value, hints[name]) for name, value in values.items()})


_KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
_PLURAL_WORDS = {bool: "true/false values", int: "whole numbers", float: "numbers", str: "texts"}


def _setting(name: str, value: Any, hint: Any) -> Any:
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
        return _setting(name, value, options[0])
    if hint is IntensityConfig:
        if isinstance(value, IntensityConfig):
            return value
        if not isinstance(value, dict):
            raise refuse("an object of intensity settings")
        fields = typing.get_type_hints(IntensityConfig)
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise SsSegError(f"unknown intensity setting(s): {', '.join(map(str, unknown))}")
        return IntensityConfig(
            **{k: _setting(f"{name}.{k}", v, fields[k]) for k, v in value.items()}
        )
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        item = args[0]
        length = None if len(args) == 2 and args[1] is Ellipsis else len(args)
        kind = f"a list of {f'{length} ' if length else ''}{_PLURAL_WORDS[item]}"
        if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
            raise refuse(kind)
        return tuple(_setting(name, v, item) for v in value)
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
