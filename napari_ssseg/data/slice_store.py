"""A disk store of prepared slices: training streams a project of many volumes from disk.

Each volume is prepared once (:func:`~napari_ssseg.data.slices.image_chunks`, a chunk of
slices at a time) straight into ``.npy`` files, and :class:`StoredSlices` reads back only the
slices a batch asks for. Layout of a store's folder::

    slices/<key>/images.npy      (Z, S, S) float32 in [0, 1], the same values as in memory
                 labels.npy      (Z, S, S) uint8 (int16 when a label value exceeds 255)
                 annotated.npy   (Z,) bool
                 slices.json     {"format", "num_slices", "size", "source_shape", ...}
    volumes/<digest>/image.npy, labels.npy   source-resolution voxels (StoredVolume)

``key`` is the SHA-256 of the volume's voxels and slice axis
(:func:`~napari_ssseg.data.stored_volume.content_digest`), its annotated slices, the network
size, the intensity settings and :data:`FORMAT`: a volume whose voxels, annotation or
preparation changed gets a new entry, so a stale one is never served. An entry is written
into a hidden ``.partial-*`` folder and renamed whole, so a crash never leaves half of one.
Files are opened with ``np.load(mmap_mode="r", allow_pickle=False)`` only.

Where the store lives: :meth:`SliceStore.temporary` makes a fresh folder
(``napari-ssseg-slices-*``) in the system temp directory (:mod:`tempfile`: ``$TMPDIR`` or
``/tmp``; a caller may name another parent, e.g. a scratch disk) and deletes it when its
``with`` block ends, whether training finished, raised, was cancelled or interrupted (Ctrl-C).
Not the model folder: :func:`~napari_ssseg.model_store.save_model` replaces that folder whole
and swaps it in only when training is over, and a cache must not end up inside a saved
model. Only a process killed outright (SIGKILL, power loss) leaves its folder behind.

Reading maps the file anew for each read and copies out only the requested slices. Keeping
maps open would leave every page ever read mapped into the process (resident, if
reclaimable); mapping costs about 0.3 ms a read (under 10 ms a batch), little beside a
training step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_ssseg.annotation import AnnotatedVolume, Project, infer_class_names
from napari_ssseg.data.slice_grid import SliceGrid
from napari_ssseg.data.slices import annotated_flags, image_chunks, label_chunks
from napari_ssseg.data.stored_volume import StoredVolume, content_digest, open_readonly
from napari_ssseg.data.whole_folder import folder_written_whole
from napari_ssseg.errors import SsSegError
from napari_ssseg.settings.student import IntensityConfig

FORMAT = 1
"""Version of the entry layout and of the preparation; bump it when either changes."""
TEMP_PREFIX = "napari-ssseg-slices-"
IMAGES_FILE = "images.npy"
LABELS_FILE = "labels.npy"
ANNOTATED_FILE = "annotated.npy"
META_FILE = "slices.json"
"""Written last: an entry is complete when its folder holds it."""


def slices_key(digest: str, annotated: Sequence[int], size: int, intensity: IntensityConfig) -> str:
    """The name of a prepared volume's entry (64 hex digits)."""
    recipe = {
        "format": FORMAT,
        "volume": digest,
        "annotated": [int(i) for i in annotated],
        "size": int(size),
        "intensity": dataclasses.asdict(intensity),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _largest_label(volume: AnnotatedVolume) -> int:
    if isinstance(volume, StoredVolume):  # known without reading the voxels
        return max(volume.label_values(), default=0)
    return int(volume.labels.max(initial=0))


class StoredSlices:
    """One prepared volume in a :class:`SliceStore`, read lazily
    (a :class:`~napari_ssseg.data.slices.PreparedVolume`).

    Attributes:
        folder: the entry's folder.
        grid: geometry to map network outputs back to the (H, W) source slices.
        annotated: (Z,) bool, True for annotated slices (the only array held in memory).
    """

    def __init__(self, folder: Path):
        self.folder = folder
        try:
            meta = json.loads((folder / META_FILE).read_text())
            self.annotated = torch.from_numpy(
                np.load(folder / ANNOTATED_FILE, allow_pickle=False).astype(bool)
            )
            self.grid = SliceGrid(tuple(meta["source_shape"]), int(meta["size"]))
            images, labels = (open_readonly(folder / f) for f in (IMAGES_FILE, LABELS_FILE))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SsSegError(f"the slice store entry {folder} cannot be read: {error}") from error
        expected = (len(self.annotated), self.grid.size, self.grid.size)
        found = [(a.shape, a.dtype.name) for a in (images, labels)]
        if (
            meta.get("format") != FORMAT
            or {images.shape, labels.shape} != {expected}
            or images.dtype != np.float32
            or labels.dtype not in (np.uint8, np.int16)
        ):
            raise SsSegError(
                f"the slice store entry {folder} is damaged: images and labels {found}, "
                f"expected {expected} float32 and uint8 or int16 in format {FORMAT}"
            )

    @property
    def num_slices(self) -> int:
        return len(self.annotated)

    @property
    def images(self) -> torch.Tensor:
        """(Z, S, S) float32: the whole volume, read now (hold one volume at a time)."""
        return torch.from_numpy(np.array(open_readonly(self.folder / IMAGES_FILE)))

    @property
    def labels(self) -> torch.Tensor:
        """(Z, S, S) int64: the whole volume's labels, read now."""
        return torch.from_numpy(np.array(open_readonly(self.folder / LABELS_FILE), np.int64))

    def image_slices(self, picks: Sequence[int]) -> torch.Tensor:
        """(len(picks), S, S) float32, reading those slices only."""
        return torch.from_numpy(np.asarray(open_readonly(self.folder / IMAGES_FILE)[list(picks)]))

    def label_slice(self, index: int) -> torch.Tensor:
        """(S, S) int64, reading that slice only."""
        return torch.from_numpy(np.array(open_readonly(self.folder / LABELS_FILE)[index], np.int64))


class SliceStore:
    """A folder of prepared volumes (and of source voxels moved out of memory), see the
    module docstring for its layout and lifetime. A store opened on a folder of one's own
    (not :meth:`temporary`) is never pruned: entries of changed volumes stay until the
    folder is deleted."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @classmethod
    @contextmanager
    def temporary(cls, parent: str | Path | None = None) -> Iterator[SliceStore]:
        """A store in a fresh temporary folder, deleted when the block ends however it ends."""
        where = parent if parent is not None else tempfile.gettempdir()
        try:
            root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=where))
        except OSError as error:
            raise SsSegError(
                f"cannot make a temporary folder for the prepared slices in {where}: "
                f"{error.strerror or error} (set TMPDIR to a writable folder with room)"
            ) from error
        try:
            yield cls(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def slices(
        self,
        volume: AnnotatedVolume,
        size: int,
        intensity: IntensityConfig,
        digest: str | None = None,
    ) -> StoredSlices:
        """``volume`` on the (S, S) grid, prepared into the store unless already there;
        ``digest``: its :func:`content_digest` when the caller knows it."""
        digest = digest if digest is not None else content_digest(volume)
        key = slices_key(digest, volume.annotated_slices, size, intensity)
        folder = self.root / "slices" / key
        if not (folder / META_FILE).is_file():
            self._write_slices(volume, size, intensity, folder)
        return StoredSlices(folder)

    def keep(self, volume: AnnotatedVolume) -> StoredVolume:
        """``volume`` with its voxels moved into the store (checked finite first): the caller
        may drop the in-memory arrays."""
        volume.check_image_finite()
        digest = content_digest(volume)
        return StoredVolume.write(volume, self.root / "volumes" / digest, digest)

    def _write_slices(
        self, volume: AnnotatedVolume, size: int, intensity: IntensityConfig, folder: Path
    ) -> None:
        shape = (volume.num_slices, size, size)

        def failure(error: OSError) -> str:
            return (
                f"cannot write the slices of {volume.image.name} to the slice store "
                f"{self.root}: {error.strerror or error} (TMPDIR chooses where it goes)"
            )

        with folder_written_whole(folder, META_FILE, failure) as partial:
            grid, chunks = image_chunks(volume.image, volume.axis, size, intensity)
            images = np.lib.format.open_memmap(
                partial / IMAGES_FILE, mode="w+", dtype=np.float32, shape=shape
            )
            for first, chunk in chunks:
                images[first : first + len(chunk)] = chunk.numpy()
            images.flush()
            del images  # unmapped: written pages leave the process
            dtype = np.uint8 if _largest_label(volume) <= np.iinfo(np.uint8).max else np.int16
            labels = np.lib.format.open_memmap(
                partial / LABELS_FILE, mode="w+", dtype=dtype, shape=shape
            )
            for first, chunk in label_chunks(volume, grid):
                labels[first : first + len(chunk)] = chunk.numpy().astype(dtype)
            labels.flush()
            del labels
            np.save(partial / ANNOTATED_FILE, annotated_flags(volume).numpy())
            meta = {
                "format": FORMAT,
                "name": volume.image.name,
                "num_slices": volume.num_slices,
                "size": size,
                "source_shape": list(grid.source_shape),
                "labels_dtype": np.dtype(dtype).name,
            }
            (partial / META_FILE).write_text(json.dumps(meta))


@dataclass(eq=False)
class StreamedProject(Project):
    """A project whose slices are prepared into ``store`` and read from it while training
    (:class:`~napari_ssseg.data.slices.SlicePool` picks the store up)."""

    store: SliceStore


def stream_volumes(
    volumes: Iterable[AnnotatedVolume],
    class_names: Sequence[str] | None,
    store: SliceStore,
    size: int,
    intensity: IntensityConfig,
) -> StreamedProject:
    """A validated project of ``volumes``, taken one at a time: each is checked, its slices
    prepared and its voxels moved into ``store`` before the next is asked for, so no more
    than one volume's voxels are in memory (give a generator that reads them).

    Class names default to ``class 1..C`` from the largest label.
    """
    kept: list[StoredVolume] = []
    for volume in volumes:
        volume.check_slice_size()
        stored = store.keep(volume)
        store.slices(volume, size, intensity, digest=stored.digest)
        kept.append(stored)
        del volume, stored  # nothing holds the in-memory arrays while the next one loads
    names = list(class_names) if class_names else infer_class_names(kept)
    project = StreamedProject(kept, names, store)
    project.validate()
    return project
