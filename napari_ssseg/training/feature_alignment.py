"""Feature-level guidance from the frozen foundation encoder, for the training loop.

With a distillation or prototype weight above 0 (``features`` settings), every step adds
``features.batch`` slices of an :class:`~napari_ssseg.training.embedding_bank.EmbeddingBank`
to the student's forward pass. Each is augmented together with its embedding (resampled to
the student's grid, so both move by the same spatial transform), its labels (annotated
slices) and a validity map (0 where the augmentation moved in areas from outside the
slice). The student's decoder features of those slices
(:mod:`~napari_ssseg.training.features`), through a trainable 1 x 1 projector, meet the
embedding on the feature grid in two losses (:mod:`~napari_ssseg.training.feature_losses`):

- ``distill`` (UnCoL): cosine distance per location, weighted by validity;
- ``prototype`` (BARL): per class, the average feature of the class's region in both spaces;
  regions come from the user's labels on annotated slices and, on unannotated ones, from the
  student's argmax where its probability reaches ``features.prototype_confidence``.

The feature slices have their own random streams (slice draws and augmentation), so switching
the terms on does not change which labelled and unlabelled slices the rest of the step draws.
The projector is training-only: it is not part of the U-Net's saved state. With several
data-parallel copies the projector starts identical on every copy (it is built before the
copies' streams part) and its gradients are averaged over the copies before each step
(:class:`~napari_ssseg.training.peers.Peers`), so it stays identical.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import UNet

from napari_ssseg.data.augment import augment_batch, make_augmentation
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.foundation.backend import FoundationBackend
from napari_ssseg.foundation.embedding_cache import EmbeddingCache
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.parts import FeatureSettings
from napari_ssseg.settings.student import StudentSettings
from napari_ssseg.training.embedding_bank import EmbeddingBank
from napari_ssseg.training.feature_losses import (
    distillation_loss,
    prototype_loss,
    region_masks,
)
from napari_ssseg.training.features import (
    FeatureProjector,
    FeatureTap,
    decoder_feature_channels,
    decoder_feature_layer,
)
from napari_ssseg.training.peers import Peers, default_peers

STREAM_OFFSET = 7_919
"""Offset of the feature slices' random streams from the copy's own seed."""


@dataclass
class FeatureBatch:
    """The feature slices of one step, augmented (n slices, S x S grid, D channels).

    Attributes:
        images: (n, C, S, S) student inputs.
        labels: (n, 1, S, S) int64: the user's labels (annotated slices; 0 elsewhere).
        annotated: (n,) bool.
        embeddings: (n, D, S, S) foundation embeddings moved with the images.
        valid: (n, 1, S, S) in [0, 1]: 0 where the augmentation moved in outside areas.
    """

    images: torch.Tensor
    labels: torch.Tensor
    annotated: torch.Tensor
    embeddings: torch.Tensor
    valid: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])


class FeatureAlignment:
    """The student's features pulled toward the foundation encoder's (see module doc)."""

    def __init__(
        self,
        features: FeatureSettings,
        student: StudentSettings,
        model: UNet,
        pool: SlicePool,
        bank: EmbeddingBank,
        device: torch.device,
        seed: int,
        pretrain_batch: int = 4,
        peers: Peers | None = None,
    ) -> None:
        """``features`` with its weights resolved (the preset's where unset);
        ``pretrain_batch``: bank slices a pretraining step."""
        self.features = features
        self.student = student
        self.pretrain_batch = pretrain_batch
        self.pool = pool
        self.bank = bank
        self.device = device
        self.num_classes = pool.num_classes + 1
        self.tap = FeatureTap(decoder_feature_layer(model))
        channels = decoder_feature_channels(student.channels)
        self.projector = FeatureProjector(channels, bank.channels).to(device).train()
        self.peers = peers if peers is not None else default_peers()
        self.peers.broadcast(list(self.projector.parameters()))
        self.rng = np.random.default_rng(seed + STREAM_OFFSET)
        self.augment = make_augmentation(seed + STREAM_OFFSET)

    @classmethod
    def build(
        cls,
        features: FeatureSettings,
        student: StudentSettings,
        model: UNet,
        pool: SlicePool,
        backend: FoundationBackend,
        cache: EmbeddingCache,
        device: torch.device,
        seed: int,
        pretrain_batch: int,
    ) -> FeatureAlignment:
        """Embed the feature bank of ``features`` with ``backend`` (through ``cache``) and
        build the alignment on it."""
        bank = EmbeddingBank.build(pool, features.slices, backend, cache).reduced(
            features.components
        )
        return cls(features, student, model, pool, bank, device, seed, pretrain_batch)

    def parameters(self) -> list[torch.nn.Parameter]:
        """The projector's parameters (to train with the student)."""
        return list(self.projector.parameters())

    def capture(self) -> AbstractContextManager[FeatureTap]:
        """Open around the student's training forward pass to record its features."""
        return self.tap.capture()

    @property
    def in_steps(self) -> bool:
        """Whether every training step takes feature slices (a feature term is on)."""
        return bool(self.features.distill_weight or self.features.prototype_weight)

    def draw(self, count: int | None = None) -> FeatureBatch:
        """``count`` (default ``features.batch``) bank slices, augmented with their embeddings
        and labels."""
        picks = self.bank.draw(self.rng, count or self.features.batch)
        refs = [self.bank.refs[i] for i in picks]
        embeddings = self.bank.on_grid(picks, self.pool.size)
        valid = torch.ones(len(picks), 1, self.pool.size, self.pool.size)
        images, moved = augment_batch(
            self.augment,
            self.pool.inputs(refs),
            {"label": self.pool.targets(refs), "target": torch.cat([embeddings, valid], dim=1)},
        )
        target = moved["target"].to(self.device)
        return FeatureBatch(
            images=images.to(self.device),
            labels=moved["label"].to(self.device),
            annotated=self.bank.annotated[picks].to(self.device),
            embeddings=target[:, :-1],
            valid=target[:, -1:].clamp(0.0, 1.0),
        )

    def losses(
        self, batch: FeatureBatch, logits: torch.Tensor
    ) -> dict[str, tuple[torch.Tensor, float]]:
        """Each switched-on term's loss and weight, from the student's logits (n, K, S, S) of
        ``batch`` and the features recorded during that forward pass (``batch`` last)."""
        features = self.tap.take()[-len(batch) :]
        projected = self.projector(features)  # (n, D, h, w)
        size = tuple(projected.shape[-2:])
        embeddings = F.adaptive_avg_pool2d(batch.embeddings, size)
        out: dict[str, tuple[torch.Tensor, float]] = {}
        distill, prototype = self.features.distill_weight, self.features.prototype_weight
        if distill:
            loss = self._distillation(batch, projected, embeddings)
            out["distill"] = (loss, distill)
        if prototype:
            labels, keep = self._regions(batch, logits)
            masks = region_masks(labels, keep * batch.valid, self.num_classes, size)
            loss = prototype_loss(projected, embeddings, masks)
            out["prototype"] = (loss, prototype)
        return out

    def pretrain(
        self,
        model: torch.nn.Module,
        steps: int,
        keep_going: Callable[[], bool],
        on_step: Callable[[int, float], None] | None = None,
    ) -> int:
        """Distillation alone for up to ``steps`` steps of ``pretrain_batch`` bank slices, before
        any label is learnt: the student's projected features pulled toward the embeddings,
        with an optimiser of its own. Stops early when ``keep_going`` says no;
        ``on_step(done, loss)`` after each step. Returns the steps done.

        ``model`` is the bare student, not its data-parallel wrapper: the output layers get
        no gradient here, which DDP would wait for; the gradients of every parameter are
        averaged over the copies by the peers instead (zeros where there are none)."""
        parameters = [*model.parameters(), *self.parameters()]
        optimizer = torch.optim.AdamW(
            parameters, lr=self.student.lr, weight_decay=self.student.weight_decay
        )
        done = 0
        while done < steps and keep_going():
            batch = self.draw(self.pretrain_batch)
            with self.capture():
                model(batch.images)
            projected = self.projector(self.tap.take()[-len(batch) :])
            embeddings = F.adaptive_avg_pool2d(batch.embeddings, tuple(projected.shape[-2:]))
            loss = self._distillation(batch, projected, embeddings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.peers.world_size > 1:
                self.peers.average_gradients(parameters)
            optimizer.step()
            done += 1
            if on_step is not None:
                on_step(done, float(loss.detach()))
        return done

    def _distillation(
        self, batch: FeatureBatch, projected: torch.Tensor, embeddings: torch.Tensor
    ) -> torch.Tensor:
        """The distillation loss of projected features (n, D, h, w) against ``embeddings``
        (n, D, h, w), weighted per cell by the batch's validity pooled to that grid."""
        weight = F.adaptive_avg_pool2d(batch.valid, tuple(projected.shape[-2:]))[:, 0]
        return distillation_loss(projected, embeddings, weight)

    def _regions(
        self, batch: FeatureBatch, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels (n, 1, S, S) and their weights (n, 1, S, S): the user's on annotated slices,
        the student's confident argmax on the others."""
        probs = torch.softmax(logits.detach(), dim=1)
        confidence, predicted = probs.max(dim=1, keepdim=True)
        confident = (confidence >= self.features.prototype_confidence).float()
        annotated = batch.annotated[:, None, None, None]
        labels = torch.where(annotated, batch.labels, predicted)
        keep = torch.where(annotated, torch.ones_like(confident), confident)
        return labels, keep

    def share_gradients(self) -> None:
        """Average the projector's gradients over the data-parallel copies (no-op alone)."""
        if self.peers.world_size > 1:
            self.peers.average_gradients(self.parameters())

    def close(self) -> None:
        """Unhook from the student."""
        self.tap.remove()


def feature_alignment_for(
    config: TrainConfig,
    model: UNet,
    pool: SlicePool,
    teachers: list,
    device: torch.device,
    seed: int,
) -> FeatureAlignment:
    """The feature terms of ``config`` (their bank embedded now), sharing the foundation
    teacher's model and embedding cache when one runs (alone, or inside the fused teacher)."""
    from napari_ssseg.foundation.loading import embedding_cache, load_backend

    parts = [part for teacher in teachers for part in teacher.parts()]
    sam = next((part for part in parts if part.name == "sam"), None)
    backend = sam.backend if sam is not None else load_backend(config.foundation)
    cache = sam.cache if sam is not None else embedding_cache(config.foundation)
    return FeatureAlignment.build(
        config.resolved_features(),
        config.student,
        model,
        pool,
        backend,
        cache,
        device,
        seed,
        config.batch.size,
    )
