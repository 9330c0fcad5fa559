"""The training loop: a supervised U-Net plus the teachers of the chosen method.

Every step trains the student on a batch of annotated slices (Dice + CE). When the method has
teachers (:mod:`napari_ssseg.training.teachers`) and there are unannotated slices, the step
also draws a batch of them; each teacher's targets for those slices (moved by the same
augmentation as the student's input) give one loss term, defined by the teacher
(:meth:`Teacher.loss`):

- ``mean``: squared error toward the EMA teacher's probabilities on pixels whose normalised
  predictive entropy is below a threshold rising with the ramp-up;
- ``shape``: cross-entropy toward the interpolated shape (and toward background well beyond
  the annotated structure's ends), weighted per pixel by its confidence;
- ``self``: cross-entropy toward the curriculum's admitted whole-volume pseudo-labels;
- ``sam``: cross-entropy toward the foundation model's masks prompted by the student,
  weighted per pixel by its confidence;
- ``fused``: cross-entropy toward the mean teacher's and the foundation model's targets
  fused per pixel by confidence.

Each teacher weighs its term by its own settings; when teachers start and how their weight
ramps up is the budget's (:mod:`napari_ssseg.settings.budget`).

With CutMix on, a step (with probability ``cutmix.prob``) mixes its augmented batches by
imbalance-aware CutMix (:mod:`napari_ssseg.training.cutmix`): boxes placed preferably on rare
classes are pasted between labelled slices and, in both directions, between labelled and
unlabelled ones; the supervised loss and the teachers' losses take the mixed labels and targets.

Teachers wait, beyond their start, until the student reproduces every class on the
annotated slices (``budget.gate_dice``, checked every :data:`TEACHER_GATE_EVERY` steps):
pseudo-labels of a student that has not learnt a class yet lack it and would teach it away.
A warm-started run (a retrain) has a student that has learnt them: its teachers start at
once (the gate still checks), rather than after half of a short retrain's steps spent on
the labels alone, which pulled the model back toward the plain U-Net.

With a distillation or prototype weight above 0 (off by default), every step also passes
``features.batch`` slices with cached foundation-encoder embeddings through the student,
and its projected decoder features are pulled toward those embeddings, per location
(``distill``, UnCoL) and per class region (``prototype``, BARL); see
:mod:`napari_ssseg.training.feature_alignment`. With both at 0 nothing of this is built or
drawn, so a run is exactly what it was without them.

With ``batch.share`` (the default) the unannotated slices take places in the batch of
``batch.size`` instead of being added to it, so a step with teachers costs about what a
supervised step costs.

On the CPU the mean teacher's MC-dropout passes would cost more than the student's step, so
targets are computed for a cache of ``batch.target_cache`` unannotated slices every
``batch.target_refresh`` steps and batches are drawn from that cache; the EMA teacher moves
little in between.

Data-parallel training (:mod:`napari_ssseg.tasks.distributed`) runs one copy of this loop
per worker, each with its :class:`~napari_ssseg.training.replica.Replica`: every copy draws
its own slices, the forward pass goes through DDP so gradients are averaged, and the copies
agree on progress and stopping before each step. Weights are therefore identical on every
copy after each step, and so is every teacher updated from them (the EMA teacher).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot
from monai.utils import set_determinism

from napari_ssseg.annotation import Project
from napari_ssseg.data.augment import (
    augment_batch,
    make_augmentation,
    make_strong_perturbation,
    perturb_batch,
)
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.data.slices import SliceRef
from napari_ssseg.errors import SsSegError, TrainingCancelled
from napari_ssseg.networks.device import resolve_device
from napari_ssseg.networks.unet import unet_for
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.budget import poly_lr
from napari_ssseg.settings.student import BatchSettings
from napari_ssseg.training.cutmix import ImbalanceCutMix
from napari_ssseg.training.feature_alignment import FeatureAlignment, feature_alignment_for
from napari_ssseg.training.losses import supervised_loss
from napari_ssseg.training.replica import Replica
from napari_ssseg.training.teachers import Teacher, build_teachers

if TYPE_CHECKING:
    from napari_ssseg.training.pretraining import PretrainedStudent

TEACHER_GATE_EVERY = 25
"""Steps between checks of ``teacher_gate_dice`` once a teacher's start has come."""


@dataclass
class TrainProgress:
    """A snapshot reported to the progress callback."""

    iteration: int
    fraction: float
    elapsed: float
    losses: dict[str, float]


@dataclass
class TrainResult:
    """What a run produced: the student's weights (exported rather than the EMA teacher's,
    which matched or trailed them in paired runs) and how the run went."""

    state_dict: dict[str, torch.Tensor]
    config: TrainConfig
    iterations: int
    elapsed: float
    stopped_early: bool
    history: list[TrainProgress] = field(default_factory=list)
    teachers_from: int | None = None
    """The step from which teachers could teach (the gate opened); None: never."""
    pretrained: int = 0
    """Steps of feature distillation done before the first supervised step."""
    teacher_work: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per teacher name, what its own work came to (:meth:`Teacher.work`), where it says."""


def _draw(rng: np.random.Generator, refs: list[SliceRef], count: int) -> list[SliceRef]:
    picks = rng.choice(len(refs), size=count, replace=len(refs) < count)
    return [refs[i] for i in picks]


class _TargetCache:
    """Unannotated slices with every active teacher's targets, refreshed every
    ``target_refresh`` steps (and whenever another teacher switches on).

    Each active teacher contributes an equal share of the cache's slices from those it covers,
    so a teacher that speaks about few slices (shape continuity) is not drowned out; a teacher
    whose targets changed (its ``version``) also refreshes the cache.
    """

    def __init__(self, settings: BatchSettings, rng: np.random.Generator):
        self.settings = settings
        self.rng = rng
        self.refs: list[SliceRef] = []
        self.targets: list[torch.Tensor] = []
        self.key: tuple[tuple[str, int], ...] = ()
        self.refreshed = 0

    def batch(
        self, active: list[Teacher], iteration: int, count: int
    ) -> tuple[list[SliceRef], list[torch.Tensor]]:
        """``count`` slices from the cache and each active teacher's (count, K + 1, S, S)."""
        key = tuple((t.name, t.version) for t in active)
        stale = iteration - self.refreshed >= self.settings.target_refresh
        if key != self.key or stale:
            share = max(1, self.settings.target_cache // len(active))
            self.refs = [ref for t in active for ref in _draw(self.rng, t.covers(), share)]
            self.targets = [t.targets(self.refs) for t in active]
            self.key, self.refreshed = key, iteration
        picks = self.rng.choice(len(self.refs), size=count)
        return [self.refs[i] for i in picks], [t[picks] for t in self.targets]


def train(
    project: Project,
    config: TrainConfig,
    init_state: dict[str, torch.Tensor] | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    report_every: int = 10,
    replica: Replica | None = None,
    pretrained: PretrainedStudent | None = None,
) -> TrainResult:
    """Train a U-Net on ``project``; ``init_state`` warm-starts it.

    ``pretrained`` (ignored when warm-starting): a student distilled before the run
    (:func:`~napari_ssseg.training.pretraining.pretrain_student`); the run starts from it as a
    fresh run (teachers from the budget's start) and does not pretrain again.

    ``should_stop`` is polled every step; when it returns True the run ends and the model
    trained so far is returned (or :class:`TrainingCancelled` if no step was done).
    ``replica`` places this run among data-parallel copies (default: the only one); only the
    reporting copy calls ``on_progress``.
    """
    replica = replica or Replica()
    project.validate()
    config.validate()
    # The same seed everywhere first: every copy builds the same initial network.
    set_determinism(seed=config.seed)
    own_seed = replica.seed(config.seed)
    rng = np.random.default_rng(own_seed)
    device = resolve_device(config.device)
    budget, batch = config.budget, config.batch

    pool = SlicePool(project, config.student.image_size, config.student.intensity)
    model = unet_for(config.student, project.num_classes)
    if init_state is not None:
        model.load_state_dict(init_state)
    elif pretrained is not None:
        _load_pretrained(model, pretrained, project.num_classes)
    model.to(device).train()
    # The budget covers the teachers' and the feature bank's set-up (foundation-model
    # embeddings: seconds per slice on a CPU), not only the steps.
    start = time.monotonic()
    teachers = build_teachers(
        config.active_teachers, project, pool, model, config, device, init_state is not None
    )
    # Built before the copies' streams part, so every copy starts with the same projector;
    # None (nothing built, nothing drawn) when both feature weights are 0 and the run does
    # not pretrain (none asked, a warm start, or a student pretrained before the run).
    will_pretrain = init_state is None and pretrained is None and config.features.pretrain_steps > 0
    alignment = (
        feature_alignment_for(config, model, pool, teachers, device, own_seed)
        if config.uses_feature_terms or will_pretrain
        else None
    )
    # Teachers keep the bare module; the training forward pass goes through the wrapper.
    network = replica.wrap(model)
    if own_seed != config.seed:
        torch.manual_seed(own_seed)  # this copy's own dropout masks and noise
    pretrained_steps = pretrained.steps if init_state is None and pretrained is not None else 0
    if alignment is not None and will_pretrain:
        pretrained_steps = _pretrain(
            alignment, model, config, replica, start, should_stop, on_progress, report_every
        )
    parameters = list(model.parameters())
    if alignment is not None and alignment.in_steps:
        parameters += alignment.parameters()
    optimizer = torch.optim.AdamW(
        parameters, lr=config.student.lr, weight_decay=config.student.weight_decay
    )
    dice_ce = supervised_loss()
    augment = make_augmentation(own_seed)
    # Its own random stream, so that switching it on leaves the other draws as they were.
    strong = (
        make_strong_perturbation(own_seed + 1, config.student.image_size)
        if batch.strong_view
        else None
    )
    cache = _TargetCache(batch, rng)
    cutmix = (
        ImbalanceCutMix.from_pool(pool, config.cutmix, own_seed)
        if config.uses_cutmix(project.num_classes)
        else None
    )

    # Up to 8 annotated slices, evenly spread, on which the student's agreement with the
    # user's labels is reported (what a clinician watches: is it learning my labels?).
    probe = [pool.labelled[i] for i in np.linspace(0, len(pool.labelled) - 1, 8).astype(int)]
    probe = list(dict.fromkeys(probe))
    history: list[TrainProgress] = []
    iteration = 0
    stopped_early = False
    # Whether the student has learnt the annotated slices well enough for teachers to start.
    gate_open = budget.gate_dice <= 0
    teachers_from: int | None = None
    while iteration < budget.max_iters:
        fraction = budget.progress(iteration, time.monotonic() - start)
        asked_to_stop = should_stop is not None and should_stop()
        fraction, asked_to_stop = replica.agree(fraction, asked_to_stop)
        # A budget spent on set-up still gets one step, so a model comes out.
        if fraction >= 1.0 and iteration > 0:
            break
        fraction = min(fraction, 1.0)
        if asked_to_stop:
            stopped_early = True
            break
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(config.student.lr, fraction)

        due = [t for t in teachers if fraction >= t.start]
        if due and not gate_open and iteration % TEACHER_GATE_EVERY == 0:
            learnt = float(_class_agreement(model, pool, probe, device).min())
            gate_open = replica.all_agree(learnt >= budget.gate_dice)
        if due and gate_open and teachers_from is None:
            teachers_from = iteration
        active = []
        for teacher in due if gate_open else []:
            teacher.prepare(model, iteration, fraction)
            if teacher.covers():
                active.append(teacher)
        labelled_count = batch.size
        if active and batch.share:
            labelled_count = max(1, batch.size - batch.unlabelled)
        refs = _draw(rng, pool.labelled, labelled_count)
        images, extra = augment_batch(augment, pool.inputs(refs), {"label": pool.targets(refs)})
        images, labels = images.to(device), extra["label"].to(device)
        unlabelled: torch.Tensor | None = None
        moved_targets: list[torch.Tensor] = []
        if active:
            picked, targets = cache.batch(active, iteration, batch.unlabelled)
            unlabelled, moved = augment_batch(
                augment, pool.inputs(picked), {"target": torch.cat(targets, dim=1)}
            )
            if strong is not None:
                unlabelled = perturb_batch(strong, unlabelled)
            unlabelled = unlabelled.to(device)
            # Areas the augmentation moved in from outside the slice have confidence 0, so
            # they never count.
            moved_targets = list(moved["target"].to(device).split(targets[0].shape[1], dim=1))
        if cutmix is not None and cutmix.fires():
            images, labels, unlabelled, moved_targets = cutmix.mix(
                images, labels, unlabelled, moved_targets, fraction
            )
        featured = alignment.draw() if alignment is not None and alignment.in_steps else None
        parts = [images]
        if unlabelled is not None:
            parts.append(unlabelled)
        if featured is not None:
            parts.append(featured.images)
        losses: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=device)
        with alignment.capture() if featured is not None else nullcontext():
            logits = network(torch.cat(parts) if len(parts) > 1 else images)
        if featured is not None:
            logits, featured_logits = logits[: -len(featured)], logits[-len(featured) :]
            for name, (loss, weight) in alignment.losses(featured, featured_logits).items():
                losses[name] = loss
                total = total + weight * loss
        if unlabelled is not None:
            logits, unlabelled_logits = logits[: len(refs)], logits[len(refs) :]
            for teacher, target in zip(active, moved_targets, strict=True):
                loss, weight = teacher.loss(unlabelled_logits, target, fraction)
                losses[teacher.name] = loss
                total = total + weight * loss
        losses["supervised"] = dice_ce(logits, labels)
        total = total + losses["supervised"]

        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if featured is not None:
            alignment.share_gradients()
        optimizer.step()
        for teacher in teachers:
            teacher.update(model)
        iteration += 1

        if replica.reports and (iteration % report_every == 0 or iteration == 1):
            snapshot = TrainProgress(
                iteration=iteration,
                fraction=fraction,
                elapsed=time.monotonic() - start,
                losses={k: float(v.detach()) for k, v in losses.items()}
                | {"total": float(total.detach())},
            )
            if config.agreement_every and iteration % config.agreement_every == 0:
                agreement = _class_agreement(model, pool, probe, device)
                snapshot.losses["agreement"] = float(agreement.mean())
            history.append(snapshot)
            if on_progress is not None:
                on_progress(snapshot)

    if alignment is not None:
        alignment.close()
    if iteration == 0:
        raise TrainingCancelled("training was stopped before its first step; no model was made")
    return TrainResult(
        _cpu_state(model),
        config,
        iteration,
        time.monotonic() - start,
        stopped_early,
        history,
        teachers_from,
        pretrained_steps,
        {p.name: work for t in teachers for p in t.parts() if (work := p.work())},
    )


def _load_pretrained(
    model: torch.nn.Module, pretrained: PretrainedStudent, num_classes: int
) -> None:
    """Load ``pretrained`` into ``model`` (a U-Net for ``num_classes`` foreground classes),
    or raise :class:`SsSegError` saying why it does not fit."""
    if pretrained.num_classes != num_classes + 1:
        raise SsSegError(
            f"the pretrained student has {pretrained.num_classes - 1} classes; this project "
            f"has {num_classes}"
        )
    try:
        model.load_state_dict(pretrained.state_dict)
    except RuntimeError as error:
        raise SsSegError(
            f"the pretrained student's network does not match this run's settings: {error}"
        ) from error


def _pretrain(
    alignment: FeatureAlignment,
    model: torch.nn.Module,
    config: TrainConfig,
    replica: Replica,
    start: float,
    should_stop: Callable[[], bool] | None,
    on_progress: Callable[[TrainProgress], None] | None,
    report_every: int,
) -> int:
    """``features.pretrain_steps`` steps of feature distillation before the labelled steps;
    returns the steps done. Features first, labels after: they stop at the budget's
    pretraining share, so the labels get at least the rest, and when any copy is asked to
    stop."""
    limit = config.budget.pretrain_seconds()

    def keep_going() -> bool:
        late = limit is not None and time.monotonic() - start >= limit
        stop = should_stop is not None and should_stop()
        late_anywhere, stop_anywhere = replica.agree(float(late), stop)
        return late_anywhere < 1.0 and not stop_anywhere

    def report(done: int, loss: float) -> None:
        # Shown as step 0 (no labelled step yet); not kept in the run's history.
        if on_progress is None or not replica.reports or done % report_every:
            return
        elapsed = time.monotonic() - start
        fraction = min(config.budget.progress(0, elapsed), 1.0)
        on_progress(TrainProgress(0, fraction, elapsed, {"pretrain": loss}))

    return alignment.pretrain(model, config.features.pretrain_steps, keep_going, report)


@torch.no_grad()
def _class_agreement(
    model: torch.nn.Module, pool: SlicePool, refs: list[SliceRef], device: torch.device
) -> torch.Tensor:
    """(K,) Dice of each foreground class of the student's argmax (no dropout, no
    augmentation) against the user's labels over ``refs`` together; a class absent from both
    counts as agreeing."""
    was_training = model.training
    model.eval()
    try:
        logits = model(pool.inputs(refs).to(device)).cpu()
    finally:
        model.train(was_training)
    num_classes = logits.shape[1]
    predicted = one_hot(logits.argmax(dim=1, keepdim=True), num_classes)
    labels = one_hot(pool.targets(refs), num_classes)
    # One 3-D-like score per class over the probe slices: (1, K, B * S, S).
    predicted = torch.cat(list(predicted), dim=1)[None]
    labels = torch.cat(list(labels), dim=1)[None]
    dice = compute_dice(predicted, labels, include_background=False, ignore_empty=False)
    return dice[0]


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
