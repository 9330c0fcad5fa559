"""The foundation-model teacher (SC-SAM's generalist direction): the student's prediction on an
unannotated slice prompts a Segment-Anything-style model, whose masks become targets.

Every ``sam_refresh`` steps the student predicts up to ``sam_slices`` unannotated slices of the
partially annotated volumes (the least recently refreshed first). Per class, the predicted
region's bounding box (plus points for models trained with points) prompts the foundation
model on the slice's own image at its source resolution; the masks come back to the network
grid as class probabilities (sigmoid of the mask logits, background = 1 - the largest). The
per-pixel confidence is the foundation model's certainty |2 p - 1| of the winning class, halved
where it disagrees with the student's argmax, so disagreements count less (UnCoL-style gating).
Embeddings come from an on-disk cache keyed by slice content, so a retrain does not recompute
them.

Not built yet: the other direction (the foundation model's LoRA adapters learning from the
labels and the student's pseudo-labels); the foundation model here is frozen.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_ssseg.annotation import Project
from napari_ssseg.data.intensity import normalise_intensity
from napari_ssseg.data.slices import SlicePool, SliceRef
from napari_ssseg.training.config import TrainConfig
from napari_ssseg.training.teachers import Teacher


def load_backend(config: TrainConfig):
    """The foundation model named by ``config`` (LiteMedSAM by default), on the CPU."""
    from napari_ssseg.foundation.litemedsam import LiteMedSamBackend
    from napari_ssseg.foundation.sam import SamBackend

    if config.foundation_model == "litemedsam":
        return LiteMedSamBackend.load(config.foundation_checkpoint)
    return SamBackend.load(config.foundation_model, config.foundation_checkpoint)


def embedding_cache(config: TrainConfig):
    """The on-disk embedding cache of ``config`` (default: the user cache folder)."""
    from napari_ssseg.foundation.checkpoints import default_cache_dir
    from napari_ssseg.foundation.embedding_cache import EmbeddingCache

    root = config.embedding_cache or default_cache_dir() / "embeddings"
    return EmbeddingCache(root)


class SamTeacher(Teacher):
    """Targets from a frozen foundation model prompted by the student's prediction."""

    name = "sam"

    def __init__(
        self,
        project: Project,
        pool: SlicePool,
        config: TrainConfig,
        device: torch.device,
        backend=None,
        cache=None,
    ):
        self.pool = pool
        self.config = config
        self.device = device
        self.start = config.ssl_start
        self.num_classes = project.num_classes + 1
        self.backend = backend if backend is not None else load_backend(config)
        self.cache = cache if cache is not None else embedding_cache(config)
        self.use_points = "point" in self.backend.card.trained_prompts
        # Source-resolution slices in [0, 1] of the volumes with something to propagate.
        self.sources: dict[int, np.ndarray] = {}
        for v, (volume, prepared) in enumerate(zip(project.volumes, pool.volumes, strict=True)):
            if bool(prepared.annotated.any()) and not bool(prepared.annotated.all()):
                data = normalise_intensity(volume.image.data, config.intensity)
                self.sources[v] = np.moveaxis(data, volume.axis, 0)
        self.candidates = [ref for ref in pool.unlabelled if ref[0] in self.sources]
        self._next = 0
        self._targets: dict[SliceRef, torch.Tensor] = {}
        self.refreshed: int | None = None

    def covers(self) -> list[SliceRef]:
        if self.refreshed is None:
            return list(self.candidates)
        return list(self._targets)

    @torch.no_grad()
    def prepare(self, student: torch.nn.Module, iteration: int, fraction: float) -> None:
        due = self.refreshed is None or iteration - self.refreshed >= self.config.sam_refresh
        if not due or not self.candidates:
            return
        count = min(self.config.sam_slices, len(self.candidates))
        refs = [self.candidates[(self._next + i) % len(self.candidates)] for i in range(count)]
        self._next = (self._next + count) % len(self.candidates)
        was_training = student.training
        student.eval()
        try:
            probs = torch.softmax(student(self.pool.inputs(refs).to(self.device)), dim=1).cpu()
        finally:
            student.train(was_training)
        for ref, prob in zip(refs, probs, strict=True):
            target = self._slice_target(ref, prob)
            if target is not None:
                self._targets[ref] = target
            else:
                self._targets.pop(ref, None)
        self.refreshed = iteration
        self.version += 1

    def _slice_target(self, ref: SliceRef, prob: torch.Tensor) -> torch.Tensor | None:
        """(K + 1, S, S) target for one slice from the student's (K, S, S) probabilities,
        or None when the student predicts no foreground there."""
        from napari_ssseg.foundation.embedding_cache import embed_slices
        from napari_ssseg.foundation.prompts import prompts_from_mask

        v, z = ref
        grid = self.pool.volumes[v].grid
        source_prob = grid.to_source(prob[None])[0].clamp(0, 1).numpy()  # (K, H, W)
        labels = source_prob.argmax(axis=0)
        image = self.sources[v][z]
        transform = self.backend.slice_transform(image.shape)
        prompts, classes = [], []
        for c in range(1, self.num_classes):
            prompt = prompts_from_mask(
                (labels == c).astype(np.float32),
                n_positive=3 if self.use_points else 0,
                n_negative=3 if self.use_points else 0,
                transform=transform,
                seed=self.config.seed + z,
            )
            if prompt is not None:
                prompts.append(prompt)
                classes.append(c)
        if not prompts:
            return None
        embedding, _ = embed_slices(self.backend, [image], self.cache)
        logits = self.backend.decode_prompts(embedding.expand(len(prompts), -1, -1, -1), prompts)
        masks = torch.sigmoid(transform.logits_to_slice(logits.cpu())[:, 0])  # (N, H, W)
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
        size = self.pool.volumes[0].images.shape[1:]
        out = []
        for ref in refs:
            target = self._targets.get(ref)
            if target is None:
                target = torch.zeros(self.num_classes + 1, *size)
                target[0] = 1.0
            out.append(target)
        return torch.stack(out)
