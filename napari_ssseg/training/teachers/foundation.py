"""The foundation-model teacher (SC-SAM's generalist direction): the student's prediction on an
unannotated slice prompts a Segment-Anything-style model, whose masks become targets.

Every ``refresh`` steps the student predicts up to ``slices`` unannotated slices (the
least recently refreshed first; never refreshed ones one volume at a time in turn, each from its
middle outward), of partially annotated volumes and of volumes nobody labelled alike: the
prompts come from the student, not from the volume's labels. Per class, the predicted
region's bounding box (plus points for models trained with points) prompts the foundation
model on the slice's own image at its source resolution; the masks come back to the network
grid as class probabilities (sigmoid of the mask logits, a smaller mask first in line where
masks overlap, :mod:`~napari_ssseg.foundation.mask_labels`; background = 1 - the largest). The
per-pixel confidence is the foundation model's certainty |2 p - 1| of the winning class, halved
where it disagrees with the student's argmax, so disagreements count less (UnCoL-style gating).
Embeddings come from an on-disk cache keyed by slice content, so a retrain does not recompute
them.

The other direction: with ``lora_rank`` > 0 the foundation model's mask decoder gets LoRA
adapters (peft) that learn, at every refresh, for ``tune_steps`` steps: from the user's
labels on annotated slices (box of each labelled class -> mask, Dice + BCE) and, with the
ramp-up, from the student's pseudo-labels on the refreshed slices. The image encoder stays
frozen, so cached embeddings remain valid.

Data-parallel training (one copy of the teacher per worker, :mod:`~napari_ssseg.training.peers`)
keeps every copy's state identical without a shared file system:

- embeddings: before each refresh the copies compare which of the slices about to be used
  (the refreshed ones and the labelled ones the adapters learn from) their own caches hold;
  a slice some copy holds is read there, the slices nobody holds are dealt out and embedded
  once each, and every embedding goes to every copy's cache, so all caches hold the same
  bytes and no slice goes through the encoder twice;
- targets: each copy computes the targets of its share of the refreshed slices and hands
  them to the others, so every copy trains the student toward the same targets;
- adapters: see :class:`_DecoderTuner` (gradients averaged over the copies).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import numpy as np
import torch

from napari_ssseg.annotation import Project
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.data.slices import SliceRef
from napari_ssseg.foundation.backend import FoundationBackend
from napari_ssseg.foundation.embedding_cache import EmbeddingCache
from napari_ssseg.foundation.loading import volume_slices
from napari_ssseg.foundation.prompts import class_prompts
from napari_ssseg.settings.student import IntensityConfig
from napari_ssseg.settings.teachers import SamSettings
from napari_ssseg.training.losses import weighted_pseudo_label_loss
from napari_ssseg.training.peers import NOBODY, Peers, assign_owners, default_peers
from napari_ssseg.training.teachers.base import (
    Teacher,
    TeacherSchedule,
    blank_target,
    interleaved,
    with_unannotated,
)

LABELLED_SLICES = 16
"""At most this many labelled slices (spread over the project) teach the adapters: each is
embedded once, and a project of fully labelled volumes holds hundreds."""


class SourceSlices(Mapping[int, np.ndarray]):
    """Per volume index, the volume's (N, H, W) slices along its axis at source resolution,
    in [0, 1], made on first use (a project of many volumes is not normalised all at once)."""

    def __init__(self, project: Project, intensity: IntensityConfig, volumes: list[int]):
        self._project = project
        self._intensity = intensity
        self._volumes = list(dict.fromkeys(volumes))
        self._made: dict[int, np.ndarray] = {}

    def __getitem__(self, v: int) -> np.ndarray:
        if v not in self._volumes:
            raise KeyError(v)
        if v not in self._made:
            self._made[v] = volume_slices(self._project.volumes[v], self._intensity)
        return self._made[v]

    def __iter__(self) -> Iterator[int]:
        return iter(self._volumes)

    def __len__(self) -> int:
        return len(self._volumes)


def source_slices(project: Project, pool: SlicePool) -> SourceSlices:
    """The slices the foundation teacher works on: those of every volume with an unannotated
    slice (its targets) or a labelled annotated slice (its adapters' labels)."""
    labelled = [v for v, volume in enumerate(project.volumes) if volume.annotated_slices]
    return SourceSlices(project, pool.intensity, sorted({*with_unannotated(pool), *labelled}))


class SamTeacher(Teacher):
    """Targets from a frozen foundation model prompted by the student's prediction."""

    name = "sam"

    def __init__(
        self,
        project: Project,
        pool: SlicePool,
        settings: SamSettings,
        schedule: TeacherSchedule,
        device: torch.device,
        backend: FoundationBackend,
        cache: EmbeddingCache,
        seed: int = 0,
        peers: Peers | None = None,
    ):
        """``seed`` seeds the adapters' draws and the points of the prompts."""
        self.pool = pool
        self.settings = settings
        self.schedule = schedule
        self.device = device
        self.seed = seed
        self.num_classes = project.num_classes + 1
        self.backend = backend
        self.cache = cache
        self.peers = peers if peers is not None else default_peers()
        self.embeddings_received = 0  # embeddings other copies made for this copy's cache
        self.use_points = "point" in self.backend.card.trained_prompts
        self.sources = source_slices(project, pool)
        self.candidates = interleaved([ref for ref in pool.unlabelled if ref[0] in self.sources])
        # The user's labels on annotated slices, (H, W), of every volume with some.
        self.labelled: list[tuple[int, int, np.ndarray]] = []
        for v, volume in enumerate(project.volumes):
            labels = np.moveaxis(volume.labels, volume.axis, 0)
            for z in volume.annotated_slices:
                if labels[z].any():
                    self.labelled.append((v, z, labels[z]))
        if len(self.labelled) > LABELLED_SLICES:  # spread over the volumes that have them
            chosen = np.linspace(0, len(self.labelled) - 1, LABELLED_SLICES).round().astype(int)
            self.labelled = [self.labelled[i] for i in dict.fromkeys(chosen.tolist())]
        # Seconds spent embedding (cache reads included: they take milliseconds).
        self.encode_seconds = 0.0
        self._last_refresh: dict[SliceRef, int] = {}
        self._targets: dict[SliceRef, torch.Tensor] = {}
        self.refreshed: int | None = None
        # Seconds the refreshes took.
        self.refresh_seconds = 0.0
        self.refreshes = 0
        self.tuner = _DecoderTuner(self) if settings.lora_rank > 0 else None

    def loss(
        self, logits: torch.Tensor, target: torch.Tensor, fraction: float
    ) -> tuple[torch.Tensor, float]:
        """CE toward the foundation model's masks weighted by their confidence, ramped up."""
        ramp = self.schedule.ramp(fraction)
        loss = weighted_pseudo_label_loss(logits, target[:, :-1], target[:, -1])
        return loss, self.settings.weight * ramp

    def covers(self) -> list[SliceRef]:
        if self.refreshed is None:
            return list(self.candidates)
        return list(self._targets)

    @torch.no_grad()
    def prepare(self, student: torch.nn.Module, iteration: int, fraction: float) -> None:
        due = self.refreshed is None or iteration - self.refreshed >= self.settings.refresh
        if not due or not self.candidates:
            return
        begun = time.perf_counter()
        try:
            self._refresh(student, iteration, fraction)
        finally:
            self.refresh_seconds += time.perf_counter() - begun

    def _refresh(self, student: torch.nn.Module, iteration: int, fraction: float) -> None:
        """New targets for the least recently refreshed candidates (and a tuning of the
        adapters, when on)."""
        # The least recently refreshed first (never refreshed: in candidate order).
        order = sorted(self.candidates, key=lambda ref: self._last_refresh.get(ref, -1))
        refs = order[: min(self.settings.slices, len(order))]
        for ref in refs:
            self._last_refresh[ref] = iteration
        was_training = student.training
        student.eval()
        try:
            probs = torch.softmax(student(self.pool.inputs(refs).to(self.device)), dim=1).cpu()
        finally:
            student.train(was_training)
        if self.peers.world_size > 1:
            labelled = [] if self.tuner is None else [(v, z) for v, z, _ in self.tuner.labelled]
            self._share_embeddings(refs + labelled)
        if self.tuner is not None:
            self.tuner.step(refs, probs, fraction)
        for ref, target in zip(refs, self._refreshed_targets(refs, probs), strict=True):
            if target is not None:
                self._targets[ref] = target
            else:
                self._targets.pop(ref, None)
        self.refreshed = iteration
        self.refreshes += 1
        self.version += 1

    def work(self) -> dict[str, float]:
        return {
            "refreshes": self.refreshes,
            "refresh_seconds": round(self.refresh_seconds, 2),
            "encode_seconds": round(self.encode_seconds, 2),
        }

    def embedding(self, image: np.ndarray) -> torch.Tensor:
        """(1, D, g, g) embedding of one source slice (cached), its time counted."""
        from napari_ssseg.foundation.embedding_cache import embed_slices

        start = time.perf_counter()
        embedding, _ = embed_slices(self.backend, [image], self.cache)
        self.encode_seconds += time.perf_counter() - start
        return embedding

    def _share_embeddings(self, refs: list[SliceRef]) -> None:
        """Put the embeddings of ``refs`` into every copy's cache, each made only once."""
        from napari_ssseg.foundation.embedding_cache import embed_slices

        images: dict[str, np.ndarray] = {}  # one slice per key: equal slices embed once
        for v, z in refs:
            image = self.sources[v][z]
            images.setdefault(
                self.cache.key(image, self.backend.cache_id, self.backend.input_size), image
            )
        keys = list(images)
        owners = assign_owners(self.peers.gather_flags([self.cache.has(k) for k in keys]))
        mine = [i for i, owner in enumerate(owners) if owner == self.peers.rank]
        made: dict[int, torch.Tensor] = {}
        if mine:  # read from this copy's cache, or embedded here and cached
            start = time.perf_counter()
            embeddings, _ = embed_slices(self.backend, [images[keys[i]] for i in mine], self.cache)
            self.encode_seconds += time.perf_counter() - start
            made = dict(zip(mine, embeddings.cpu(), strict=True))

        def receive(i: int, embedding: torch.Tensor) -> None:
            if not self.cache.has(keys[i]):  # copies on one machine may share the folder
                self.cache.put(keys[i], embedding)
            self.embeddings_received += 1

        self.peers.exchange(owners, made.__getitem__, receive, self.backend.card.embedding_shape)

    def _refreshed_targets(
        self, refs: list[SliceRef], probs: torch.Tensor
    ) -> list[torch.Tensor | None]:
        """Each ref's target (see :meth:`_slice_target`); with several copies each computes
        every W-th one and they exchange them."""
        if self.peers.world_size == 1:
            return [self._slice_target(ref, prob) for ref, prob in zip(refs, probs, strict=True)]
        world, rank = self.peers.world_size, self.peers.rank
        owners = [i % world for i in range(len(refs))]
        made = {
            i: target
            for i in range(len(refs))
            if owners[i] == rank and (target := self._slice_target(refs[i], probs[i])) is not None
        }
        answered = self.peers.gather_flags([i in made for i in range(len(refs))])
        owners = [owner if answered[owner, i] else NOBODY for i, owner in enumerate(owners)]
        shape = (self.num_classes + 1, self.pool.size, self.pool.size)  # (K + 1, S, S)
        self.peers.exchange(owners, made.__getitem__, made.__setitem__, shape)
        return [made.get(i) for i in range(len(refs))]

    def _slice_target(self, ref: SliceRef, prob: torch.Tensor) -> torch.Tensor | None:
        """(K + 1, S, S) target for one slice from the student's (K, S, S) probabilities,
        or None when the student predicts no foreground there."""
        from napari_ssseg.foundation.mask_labels import nested_class_probabilities

        v, z = ref
        grid = self.pool.volumes[v].grid
        source_prob = grid.to_source(prob[None])[0].clamp(0, 1).numpy()  # (K, H, W)
        labels = source_prob.argmax(axis=0)
        image = self.sources[v][z]
        transform = self.backend.slice_transform(image.shape)
        points = 3 if self.use_points else 0
        prompts, classes = class_prompts(
            labels, self.num_classes - 1, transform, points, self.seed + z
        )
        if not prompts:
            return None
        embedding = self.embedding(image)
        with torch.no_grad():
            logits = self.backend.decode_prompts(
                embedding.expand(len(prompts), -1, -1, -1), prompts
            )
        masks = torch.sigmoid(transform.logits_to_slice(logits.cpu())[:, 0])  # (N, H, W)
        masks = nested_class_probabilities(masks)  # a filled wall must not take its cavity
        class_probs = torch.zeros(self.num_classes, *masks.shape[1:])
        for mask, c in zip(masks, classes, strict=True):
            class_probs[c] = mask
        class_probs[0] = 1.0 - class_probs[1:].max(dim=0).values
        on_grid = grid.to_network(class_probs).clamp(0, 1)  # (K, S, S)
        on_grid = on_grid / on_grid.sum(dim=0, keepdim=True).clamp_min(1e-6)
        winner = on_grid.max(dim=0).values
        confidence = (2 * winner - 1).clamp(0, 1)
        agrees = on_grid.argmax(dim=0) == prob.argmax(dim=0)
        confidence = torch.where(agrees, confidence, 0.5 * confidence)
        return torch.cat([on_grid, confidence[None]])

    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        """Slices without a foundation-model answer get confidence 0."""
        size = self.pool.slice_shape
        out = []
        for ref in refs:
            target = self._targets.get(ref)
            if target is None:
                target = blank_target(self.num_classes, size)
            out.append(target)
        return torch.stack(out)


class _DecoderTuner:
    """LoRA tuning of the foundation model's decoder from labels and the student's masks.

    With several copies (data-parallel training) each copy draws its own slices (its own
    random stream, as the student's batches do) and the adapters' gradients are averaged
    over the copies before every step, starting from rank 0's adapters: every copy then takes
    the same steps from the same weights, so the adapters stay identical by construction
    (on nodes with different CPUs or libraries too, where tuning every copy on the same data
    would drift apart through rounding), and W copies tune on W times the slices per step at
    the cost of one all-reduce of the few adapter weights.
    """

    def __init__(self, teacher: SamTeacher):
        from napari_ssseg.foundation.lora import add_lora

        self.teacher = teacher
        self.settings = teacher.settings
        self.peers = teacher.peers
        count = add_lora(teacher.backend, rank=self.settings.lora_rank)
        self.trainable_parameters = count
        self.parameters = [p for p in teacher.backend.parameters() if p.requires_grad]
        self.peers.broadcast(self.parameters)
        self.optimizer = torch.optim.AdamW(self.parameters, lr=self.settings.lr)
        self.labelled = teacher.labelled
        self.rng = np.random.default_rng(self.peers.seed(teacher.seed))

    @torch.enable_grad()  # called from SamTeacher.prepare, which runs under no_grad
    def step(self, refs: list[SliceRef], probs: torch.Tensor, fraction: float) -> None:
        """``tune_steps`` optimiser steps: one labelled slice each, plus (ramped) one of the
        refreshed slices with the student's argmax as the target."""
        ramp = self.teacher.schedule.ramp(fraction)
        self.teacher.backend.train()
        try:
            for _ in range(self.settings.tune_steps):
                total = torch.zeros(())
                if self.labelled:
                    v, z, labels = self.labelled[self.rng.integers(len(self.labelled))]
                    total = total + self._mask_loss(v, z, labels)
                if refs and ramp > 0:
                    i = int(self.rng.integers(len(refs)))
                    v, z = refs[i]
                    grid = self.teacher.pool.volumes[v].grid
                    pseudo = grid.to_source(probs[i][None])[0].argmax(dim=0).numpy()
                    total = total + ramp * self._mask_loss(v, z, pseudo)
                self.optimizer.zero_grad(set_to_none=True)
                if total.requires_grad:
                    total.backward()
                # Every copy calls this, with or without a loss of its own (a collective).
                if self.peers.average_gradients(self.parameters):
                    self.optimizer.step()
        finally:
            self.teacher.backend.eval()

    def _mask_loss(self, v: int, z: int, labels: np.ndarray) -> torch.Tensor:
        """Dice + BCE of the decoder's masks, prompted by each class's box, against
        ``labels`` (H, W) in slice pixels; 0 when no class is present."""
        from monai.losses import DiceLoss

        teacher = self.teacher
        image = teacher.sources[v][z]
        transform = teacher.backend.slice_transform(image.shape)
        prompts, classes = class_prompts(labels, teacher.num_classes - 1, transform)
        masks = [torch.from_numpy((labels == c).astype(np.float32)) for c in classes]
        if not prompts:
            return torch.zeros(())
        with torch.no_grad():
            embedding = teacher.embedding(image)
        logits = teacher.backend.decode_prompts(embedding.expand(len(prompts), -1, -1, -1), prompts)
        logits = transform.logits_to_slice(logits)  # (N, 1, H, W)
        target = torch.stack(masks)[:, None]
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        dice = DiceLoss(sigmoid=True)(logits, target)
        return bce + dice
