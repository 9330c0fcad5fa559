"""The training loop: supervised U-Net plus an uncertainty-aware mean teacher.

Every step trains the student on a batch of annotated slices (Dice + CE). With
``method="ssl"`` it also draws a batch of unannotated slices; an EMA teacher predicts them
with MC dropout and input noise, and the student, seeing the same slices augmented, is
pulled toward the teacher's probabilities (moved by the same augmentation) on pixels whose
normalised predictive entropy is below a threshold that rises from ``threshold_start`` to
``threshold_end``; the consistency weight ramps up sigmoidally.

On the CPU the teacher's MC-dropout passes would cost more than the student's step, so the
teacher predicts a cache of ``teacher_cache`` unannotated slices every ``teacher_refresh``
steps and batches are drawn from that cache; the EMA teacher moves little in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from monai.utils import set_determinism

from napari_ssseg.annotation import Project
from napari_ssseg.data.augment import augment_batch, make_augmentation
from napari_ssseg.data.slices import SlicePool, SliceRef
from napari_ssseg.errors import SsSegError, TrainingCancelled
from napari_ssseg.networks.unet import build_unet
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.ema import ema_teacher
from napari_ssseg.training.losses import (
    gated_consistency_loss,
    gated_pseudo_label_loss,
    supervised_loss,
)
from napari_ssseg.training.schedules import poly_lr, sigmoid_rampup
from napari_ssseg.training.uncertainty import mc_dropout_probs, normalised_entropy


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SsSegError("device cuda was asked for but no CUDA GPU is available")
    return torch.device(name)


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


def _teacher_targets(
    teacher: torch.nn.Module, inputs: torch.Tensor, config: TrainConfig, device: torch.device
) -> torch.Tensor:
    """Teacher probabilities and confidence on un-augmented slices: (B, K + 1, S, S) on the CPU.

    Channels 0..K-1 are the MC-dropout mean probabilities, channel K is 1 - normalised entropy.
    """
    chunks = []
    for first in range(0, len(inputs), 16):
        batch = inputs[first : first + 16].to(device)
        probs = mc_dropout_probs(teacher, batch, config.teacher_passes, config.teacher_noise)
        chunks.append(torch.cat([probs, 1.0 - normalised_entropy(probs)[:, None]], dim=1).cpu())
    return torch.cat(chunks)


def _draw(rng: np.random.Generator, refs: list[SliceRef], count: int) -> list[SliceRef]:
    picks = rng.choice(len(refs), size=count, replace=len(refs) < count)
    return [refs[i] for i in picks]


def train(
    project: Project,
    config: TrainConfig,
    init_state: dict[str, torch.Tensor] | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    report_every: int = 10,
) -> TrainResult:
    """Train a U-Net on ``project``; ``init_state`` warm-starts it.

    ``should_stop`` is polled every step; when it returns True the run ends and the model
    trained so far is returned (or :class:`TrainingCancelled` if no step was done).
    """
    project.validate()
    config.validate()
    set_determinism(seed=config.seed)
    rng = np.random.default_rng(config.seed)
    device = resolve_device(config.device)

    pool = SlicePool(project, config.image_size, config.intensity, config.context)
    model = build_unet(config.in_channels, project.num_classes, config.channels, config.dropout)
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device).train()
    use_teacher = config.method == "ssl" and bool(pool.unlabelled)
    teacher = ema_teacher(model, config.ema_decay) if use_teacher else None
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    dice_ce = supervised_loss()
    unlabelled_loss = (
        gated_consistency_loss if config.consistency_loss == "mse" else gated_pseudo_label_loss
    )
    augment = make_augmentation(config.seed)

    history: list[TrainProgress] = []
    start = time.monotonic()
    iteration = 0
    stopped_early = False
    cached: list[SliceRef] | None = None
    refreshed = 0
    while iteration < config.max_iters:
        elapsed = time.monotonic() - start
        fraction = iteration / config.max_iters
        if config.max_time is not None:
            fraction = max(fraction, elapsed / config.max_time)
        if fraction >= 1.0:
            break
        if should_stop is not None and should_stop():
            stopped_early = True
            break
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(config.lr, fraction)

        refs = _draw(rng, pool.labelled, config.batch_size)
        images, extra = augment_batch(augment, pool.inputs(refs), {"label": pool.targets(refs)})
        images, labels = images.to(device), extra["label"].to(device)
        losses: dict[str, torch.Tensor] = {}
        weight = 0.0
        if teacher is not None and fraction >= config.ssl_start:
            if cached is None or (iteration - refreshed) >= config.teacher_refresh:
                refreshed = iteration
                cached = _draw(rng, pool.unlabelled, config.teacher_cache)
                targets = _teacher_targets(teacher.module, pool.inputs(cached), config, device)
            picks = rng.choice(len(cached), size=config.unlabelled_batch_size)
            unlabelled, moved = augment_batch(
                augment, pool.inputs([cached[i] for i in picks]), {"target": targets[picks]}
            )
            unlabelled, moved_targets = unlabelled.to(device), moved["target"].to(device)
            logits = model(torch.cat([images, unlabelled]))
            logits, unlabelled_logits = logits[: len(refs)], logits[len(refs) :]
            ramp = sigmoid_rampup(fraction - config.ssl_start, config.rampup)
            threshold = (
                config.threshold_start + (config.threshold_end - config.threshold_start) * ramp
            )
            # The last channel is the teacher's confidence 1 - u; areas the augmentation
            # moved in from outside the slice have confidence 0 and so never count.
            losses["consistency"] = unlabelled_loss(
                unlabelled_logits, moved_targets[:, :-1], 1.0 - moved_targets[:, -1], threshold
            )
            weight = config.consistency_weight * ramp
        else:
            logits = model(images)
        losses["supervised"] = dice_ce(logits, labels)
        total = losses["supervised"] + weight * losses.get("consistency", 0.0)

        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if teacher is not None:
            teacher.update_parameters(model)
        iteration += 1

        if iteration % report_every == 0 or iteration == 1:
            snapshot = TrainProgress(
                iteration=iteration,
                fraction=fraction,
                elapsed=time.monotonic() - start,
                losses={k: float(v.detach()) for k, v in losses.items()}
                | {"total": float(total.detach())},
            )
            history.append(snapshot)
            if on_progress is not None:
                on_progress(snapshot)

    if iteration == 0:
        raise TrainingCancelled("training was stopped before its first step; no model was made")
    return TrainResult(
        _cpu_state(model),
        config,
        iteration,
        time.monotonic() - start,
        stopped_early,
        history,
    )


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
