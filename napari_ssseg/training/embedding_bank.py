"""Foundation-model embeddings of a bounded set of slices, aligned with the student's input.

The encoder costs about a second per slice on a CPU, so the feature losses work on a fixed
subset of slices, embedded once (through the on-disk embedding cache, so a retrain does not
recompute them) and reused for the whole run.

Alignment: the student sees each slice resized keeping its aspect ratio and padded to
S x S (:class:`~napari_ssseg.data.slice_grid.SliceGrid`). The bank embeds exactly that padded
square, resized to the encoder's input (square to square, so no further padding), so the
embedding's (g x g) grid covers the student's S x S input cell for cell; an embedding only
needs resampling to be compared with the student at any resolution.

Channels (:meth:`EmbeddingBank.reduced`): every step moves its feature slices' embeddings with
the augmentation and projects the student's features to their channels, and at 256 channels
that cost more than the rest of a CPU step. The bank can keep only the leading principal
directions of its own embeddings (uncentred, so cosines between embeddings, which the
losses compare, are what is kept best); a few dozen of the 256 directions hold most of the
energy of LiteMedSAM's embeddings of a volume.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from napari_ssseg.data.pool import SlicePool
from napari_ssseg.data.slices import SliceRef
from napari_ssseg.errors import SsSegError


def spread(count: int, items: int) -> list[int]:
    """Up to ``count`` distinct indices evenly spread over range(items), in order."""
    if count <= 0 or items <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, items - 1, min(count, items)).round()})


def bank_squares(pool: SlicePool, refs: list[SliceRef]) -> list[np.ndarray]:
    """The student's padded S x S input of each ref in [0, 1]: what the bank embeds (the
    centre channel is the slice itself, the others are context neighbours)."""
    return list(pool.inputs(refs)[:, 0].clamp(0.0, 1.0).numpy())


def choose_slices(pool: SlicePool, count: int) -> list[SliceRef]:
    """``count`` slices (fewer if the pool is smaller): up to half annotated, the rest
    unannotated, each evenly spread over the pool (deterministic, no random draws)."""
    labelled = [pool.labelled[i] for i in spread(max(1, count // 2), len(pool.labelled))]
    unlabelled = [pool.unlabelled[i] for i in spread(count - len(labelled), len(pool.unlabelled))]
    if len(labelled) + len(unlabelled) < count:  # few unannotated slices: more annotated ones
        wanted = min(count - len(unlabelled), len(pool.labelled))
        labelled = [pool.labelled[i] for i in spread(wanted, len(pool.labelled))]
    return labelled + unlabelled


class EmbeddingBank:
    """The foundation embeddings of a fixed list of slices.

    Attributes:
        refs: the slices, N of them.
        annotated: (N,) bool, True where the user labelled the slice.
        embeddings: (N, D, g, g) float32 on the CPU (D = 256, g = 64 for Segment Anything;
            fewer channels after :meth:`reduced`).
    """

    def __init__(
        self, refs: list[SliceRef], annotated: torch.Tensor, embeddings: torch.Tensor
    ) -> None:
        if not refs or len(refs) != len(annotated) or len(refs) != len(embeddings):
            raise SsSegError("an embedding bank needs one flag and one embedding per slice")
        self.refs = refs
        self.annotated = annotated
        self.embeddings = embeddings

    @property
    def channels(self) -> int:
        """D."""
        return int(self.embeddings.shape[1])

    @classmethod
    def build(cls, pool: SlicePool, count: int, backend, cache=None) -> EmbeddingBank:
        """Embed ``count`` slices of ``pool`` (:func:`choose_slices`) with ``backend`` (a
        :class:`~napari_ssseg.foundation.backend.FoundationBackend`), reading and filling
        ``cache`` (an :class:`~napari_ssseg.foundation.embedding_cache.EmbeddingCache`)."""
        from napari_ssseg.foundation.embedding_cache import embed_slices

        refs = choose_slices(pool, count)
        if not refs:
            raise SsSegError("the project has no slices to compare with the foundation model")
        embeddings, _ = embed_slices(backend, bank_squares(pool, refs), cache)
        labelled = set(pool.labelled)
        annotated = torch.tensor([ref in labelled for ref in refs])
        return cls(refs, annotated, embeddings.detach().cpu().float())

    def reduced(self, components: int) -> EmbeddingBank:
        """The bank with each embedding's channels replaced by its coordinates along the
        ``components`` leading principal directions of all its embeddings
        (:func:`principal_basis`). ``components`` of 0, or at least D: unchanged."""
        if components <= 0 or components >= self.channels:
            return self
        basis = principal_basis(self.embeddings, components)
        coordinates = torch.einsum("ndhw,dk->nkhw", self.embeddings.double(), basis)
        return EmbeddingBank(self.refs, self.annotated, coordinates.float().contiguous())

    def draw(self, rng: np.random.Generator, count: int) -> list[int]:
        """``count`` indices into :attr:`refs`, uniformly with replacement."""
        return [int(i) for i in rng.integers(len(self.refs), size=count)]

    def on_grid(self, indices: list[int], size: int) -> torch.Tensor:
        """(len(indices), D, size, size): the embeddings resampled to the student's S x S."""
        chosen = self.embeddings[indices]
        return F.interpolate(chosen, size=(size, size), mode="bilinear", align_corners=False)


def embedding_vectors(embeddings: torch.Tensor) -> torch.Tensor:
    """(N g g, D) float64: the embedding vector at every location of ``embeddings``
    (N, D, g, g)."""
    channels = int(embeddings.shape[1])
    return embeddings.permute(0, 2, 3, 1).reshape(-1, channels).double()


def principal_directions(embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The uncentred principal directions of the embedding vectors of ``embeddings``
    (N, D, g, g) (the right singular vectors of their (N g g, D) matrix), largest first:
    (D,) float64 second moments along them (the squared singular values) and (D, D) float64
    directions as columns, each direction's sign fixed so that its largest entry is positive
    (data-parallel copies, which build the same bank, get the same basis)."""
    vectors = embedding_vectors(embeddings)
    # Eigenvectors of the (D, D) second-moment matrix: the right singular vectors, without a
    # singular value decomposition of a (N g g, D) matrix.
    eigenvalues, eigenvectors = torch.linalg.eigh(vectors.T @ vectors)
    values, basis = eigenvalues.flip(0), eigenvectors.flip(1)  # largest eigenvalue first
    largest = basis.abs().argmax(dim=0)
    return values, basis * torch.sign(basis[largest, torch.arange(basis.shape[1])])[None]


def principal_basis(embeddings: torch.Tensor, components: int) -> torch.Tensor:
    """(D, k) float64: the ``components`` = k leading directions of
    :func:`principal_directions`."""
    return principal_directions(embeddings)[1][:, :components]
