"""The disk store of prepared slices: same data and same training as in memory, lazy reads,
a temporary folder that goes away however training ends, and bounded memory while many
volumes are prepared."""

from __future__ import annotations

import json
import tempfile
import tracemalloc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_ssseg import project_io
from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.cli import main
from napari_ssseg.data import slice_store
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.data.slice_store import (
    SliceStore,
    StoredSlices,
    StreamedProject,
    stream_volumes,
)
from napari_ssseg.data.slices import VolumeSlices
from napari_ssseg.data.stored_volume import StoredVolume
from napari_ssseg.errors import SsSegError, TrainingCancelled
from napari_ssseg.io.volume import Volume
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.student import IntensityConfig
from napari_ssseg.settings.values import merged
from napari_ssseg.tasks.train import train_model
from napari_ssseg.training.loop import train
from tests.conftest import TINY_TRAINING, synthetic_case, write_nifti
from tests.test_bench import make_msd

INTENSITY = IntensityConfig()
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def _case(index: int, annotated=(4, 8, 12), shape=(40, 36, 16)) -> AnnotatedVolume:
    """:func:`synthetic_case` shifted by ``index`` (every volume different); no
    ``annotated``: unlabelled."""
    image, labels = synthetic_case(shape)
    image = Volume(image + 7 * index, AFFINE, name=f"case{index}")
    if annotated is None:
        return AnnotatedVolume.unlabelled(image, axis=2)
    return AnnotatedVolume.from_labels(image, labels, 2, list(annotated))


def _project() -> Project:
    return Project([_case(0), _case(1, (3, 9)), _case(2, None)], ["ellipsoid", "blob"])


def _tiny_config(**changes) -> TrainConfig:
    """Four steps with teachers from the start (settings by section in ``changes``)."""
    values = {
        "seed": 11,
        "batch": {"size": 2, "unlabelled": 2, "target_cache": 4},
        "budget": {"max_iters": 4, "teacher_start": 0.0, "gate_dice": 0.0},
        "curriculum": {"refresh": 2},
    }
    return TrainConfig.from_dict(merged(merged(TINY_TRAINING, values), changes))


def _store_dirs(parent: Path) -> list[Path]:
    return sorted(parent.glob(f"{slice_store.TEMP_PREFIX}*"))


@pytest.mark.parametrize("largest_label", [2, 300])
def test_store_backed_pool_gives_the_same_slices_as_in_memory(tmp_path, largest_label):
    project = _project()
    if largest_label > 255:  # labels past uint8 are stored as int16
        project.volumes[0].labels[project.volumes[0].labels == 2] = largest_label
    in_memory = SlicePool(project, 32, INTENSITY)
    store = SliceStore(tmp_path / "store")
    streamed = SlicePool(
        StreamedProject(project.volumes, project.class_names, store), 32, INTENSITY
    )

    assert all(isinstance(v, VolumeSlices) for v in in_memory.volumes)
    assert all(isinstance(v, StoredSlices) for v in streamed.volumes)
    assert (streamed.labelled, streamed.unlabelled) == (in_memory.labelled, in_memory.unlabelled)
    refs = in_memory.labelled + in_memory.unlabelled
    assert torch.equal(streamed.inputs(refs), in_memory.inputs(refs))
    assert torch.equal(streamed.targets(refs), in_memory.targets(refs))
    assert streamed.inputs(refs).dtype == torch.float32
    assert streamed.targets(refs).dtype == torch.int64
    for v, (disk, memory) in enumerate(zip(streamed.volumes, in_memory.volumes, strict=True)):
        assert disk.grid == memory.grid and disk.num_slices == memory.num_slices
        assert torch.equal(disk.annotated, memory.annotated)
        # What teachers read a whole volume at a time.
        assert torch.equal(disk.images, memory.images)
        assert torch.equal(disk.labels, memory.labels)
        on_disk = np.load(disk.folder / "labels.npy", mmap_mode="r")
        assert on_disk.dtype == (np.int16 if v == 0 and largest_label > 255 else np.uint8)


def test_slices_are_read_from_memory_maps_only_when_asked_for(tmp_path, monkeypatch):
    project = _project()
    pool = SlicePool(project, 32, INTENSITY, store=SliceStore(tmp_path))
    # Beside the (Z,) annotated flags, a stored volume holds no array.
    for volume in pool.volumes:
        arrays = [k for k, v in vars(volume).items() if isinstance(v, np.ndarray | torch.Tensor)]
        assert arrays == ["annotated"]

    reads: list[tuple[str, object]] = []

    class Recording(np.memmap):
        def __getitem__(self, key):
            reads.append((Path(self.filename).name, key))
            return super().__getitem__(key)

    opened: list[np.memmap] = []
    original = slice_store.open_readonly

    def spy(path: Path) -> np.memmap:
        mapped = original(path)
        opened.append(mapped)
        return mapped.view(Recording)

    monkeypatch.setattr(slice_store, "open_readonly", spy)
    inputs, targets = pool.inputs([(1, 0), (0, 9)]), pool.targets([(1, 5)])
    assert inputs.shape == (2, 1, 32, 32) and targets.shape == (1, 1, 32, 32)
    assert all(m.mode == "r" for m in opened)
    # Exactly the slices asked for, nothing else.
    assert reads == [("images.npy", [0]), ("images.npy", [9]), ("labels.npy", 5)]
    assert pool.intensity is INTENSITY and pool.slice_shape == (32, 32)


def test_streamed_project_answers_without_reading_its_voxels(tmp_path):
    project = _project()
    streamed = stream_volumes(iter(project.volumes), None, SliceStore(tmp_path), 32, INTENSITY)
    assert all(isinstance(v, StoredVolume) for v in streamed.volumes)
    for stored in streamed.volumes:  # read-only maps of the store's files
        assert isinstance(stored.image.data, np.memmap) and isinstance(
            stored.labels.base, np.memmap
        )
        assert not stored.image.data.flags.writeable and not stored.labels.flags.writeable
    assert streamed.class_names == ["class 1", "class 2"]
    for stored, volume in zip(streamed.volumes, project.volumes, strict=True):
        assert stored.annotated_slices == volume.annotated_slices
        assert stored.label_values() == volume.label_values()
        assert stored.annotated_label_values() == volume.annotated_label_values()
        assert np.array_equal(stored.labels, volume.labels)
        assert np.array_equal(stored.image.data, volume.image.data)
        assert stored.image.spacing == volume.image.spacing
    assert streamed.warnings(True) == project.warnings(True)
    # Marking a slice annotated changes the key: the pool gets a new entry, not a stale one.
    before = SlicePool(streamed, 32, INTENSITY)
    streamed.volumes[2].mark_empty(5)
    after = SlicePool(streamed, 32, INTENSITY)
    assert before.volumes[2].folder != after.volumes[2].folder
    assert (2, 5) in after.labelled and (2, 5) not in before.labelled
    assert before.volumes[0].folder == after.volumes[0].folder  # unchanged volume: reused


@pytest.mark.parametrize("method", ["ssl", "curriculum"])
def test_training_from_the_store_gives_the_same_weights(tmp_path, method):
    torch.set_num_threads(1)
    config = _tiny_config(method=method)
    project = _project()
    in_memory = train(project, config)
    streamed = StreamedProject(project.volumes, project.class_names, SliceStore(tmp_path))
    from_disk = train(streamed, config)
    assert in_memory.iterations == from_disk.iterations == config.budget.max_iters
    assert in_memory.teachers_from == from_disk.teachers_from == 0  # the teachers taught
    assert in_memory.state_dict.keys() == from_disk.state_dict.keys()
    assert all(torch.equal(from_disk.state_dict[k], v) for k, v in in_memory.state_dict.items())


def test_temporary_store_is_deleted_after_training_an_error_or_a_cancel(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[list[Path]] = []

    def look(snapshot) -> None:
        seen.append(_store_dirs(tmp_path))

    model = train_model(_project(), _tiny_config(method="unet"), on_progress=look)
    assert model.summary["iterations"] == 4
    assert seen and all(len(found) == 1 for found in seen)  # it streamed from the store
    assert _store_dirs(tmp_path) == []

    def fail(snapshot) -> None:
        assert _store_dirs(tmp_path)
        raise RuntimeError("the progress display broke")

    with pytest.raises(RuntimeError, match="display broke"):
        train_model(_project(), _tiny_config(method="unet"), on_progress=fail)
    assert _store_dirs(tmp_path) == []
    with pytest.raises(TrainingCancelled):
        train_model(_project(), _tiny_config(method="unet"), should_stop=lambda: True)
    assert _store_dirs(tmp_path) == []
    # One volume stays in memory unless asked.
    train_model(Project([_case(0)], ["a", "b"]), _tiny_config(), on_progress=look)
    assert seen[-1] == []


def test_a_temporary_store_where_none_can_be_made_is_a_clear_error(tmp_path):
    missing = tmp_path / "no such folder"
    store = SliceStore.temporary(missing)
    with pytest.raises(SsSegError, match="temporary folder for the prepared slices in .*no such"):
        store.__enter__()


def test_volumes_from_files_are_read_one_at_a_time_and_released(tmp_path, monkeypatch):
    specs = []
    for i in range(3):
        image, labels = synthetic_case()
        specs.append(
            project_io.VolumeSpec(
                write_nifti(tmp_path / f"case{i}.nii.gz", image + i),
                write_nifti(tmp_path / f"case{i}_labels.nii.gz", labels.astype(np.uint8)),
                [4, 8, 12],
            )
        )
    loaded: list[weakref.ref] = []
    original = project_io.load_annotated_volume

    def load(spec):
        # The previous volume's in-memory voxels are gone before the next one is read.
        assert all(ref() is None for ref in loaded)
        volume = original(spec)
        loaded.extend([weakref.ref(volume.image.data), weakref.ref(volume.labels)])
        return volume

    monkeypatch.setattr(project_io, "load_annotated_volume", load)
    with SliceStore.temporary(tmp_path) as store:
        project = project_io.load_project_streamed(specs, None, store, 32, INTENSITY)
        assert len(loaded) == 6 and all(ref() is None for ref in loaded)
        assert [v.image.name for v in project.volumes] == ["case0", "case1", "case2"]
        assert all(isinstance(v, StoredVolume) for v in project.volumes)
        root = store.root
        assert len(list((root / "slices").iterdir())) == 3  # prepared while each was loaded
    assert not root.exists()


def _tracemalloc_peak(work) -> int:
    """Peak bytes of Python and numpy allocations while ``work()`` runs (torch's own are not
    traced: the prepared tensors of the in-memory pool are left out, to its advantage)."""
    tracemalloc.start()
    try:
        result = work()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del result
    return peak


def _box_case(index: int, shape: tuple[int, int, int]) -> AnnotatedVolume:
    """A box of label 1 on a flat background, made without temporaries bigger than it."""
    image = np.full(shape, 100.0 + index, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int16)
    box = tuple(slice(s // 4, 3 * s // 4) for s in shape)
    image[box] += 200.0
    labels[box] = 1
    volume = Volume(image, AFFINE, name=f"box{index}")
    return AnnotatedVolume.from_labels(volume, labels, 2, [shape[2] // 3, shape[2] // 2])


def test_preparing_many_volumes_holds_about_one_volume(tmp_path):
    count, shape = 6, (96, 96, 48)
    volume_bytes = np.prod(shape) * (4 + 2)  # float32 image + int16 labels

    def volumes(n: int):
        for i in range(n):
            yield _box_case(i, shape)

    def in_memory(n: int):
        project = Project(list(volumes(n)), ["box"])
        return project, SlicePool(project, 32, INTENSITY)

    def streamed():
        return stream_volumes(volumes(count), None, SliceStore(tmp_path), 32, INTENSITY)

    # Preparing one volume costs the volume plus temporaries bounded by the chunk size
    # (data/slices.py: CHUNK_VOXELS); streaming many must cost no more than that.
    one = _tracemalloc_peak(lambda: in_memory(1))
    streamed_peak = _tracemalloc_peak(streamed)
    memory_peak = _tracemalloc_peak(lambda: in_memory(count))
    in_volumes = [f"{peak / volume_bytes:.2f}" for peak in (one, streamed_peak, memory_peak)]
    print(
        f"peak traced in volumes (1 in memory, {count} streamed, {count} in memory): {in_volumes}"
    )
    assert memory_peak > count * volume_bytes
    assert streamed_peak < 1.2 * one


def test_cli_trains_a_data_folder_from_a_temporary_store(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    data = make_msd(tmp_path / "data")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(merged(TINY_TRAINING, {"batch": {"size": 2}})))
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    streamed: list[StreamedProject] = []
    original = project_io.load_project_streamed

    def spy(*args, **kwargs):
        streamed.append(original(*args, **kwargs))
        assert len(_store_dirs(temp)) == 1
        return streamed[-1]

    monkeypatch.setattr(project_io, "load_project_streamed", spy)
    out = tmp_path / "model"
    options = ["--config", str(settings), "--max-iters", "3", "--device", "cpu"]
    assert main(["train", "--data", str(data), *options, "--out", str(out)]) == 0
    assert len(streamed) == 1 and len(streamed[0].volumes) == 3
    assert json.loads((out / "model.json").read_text())["summary"]["volumes"] == [
        f"patient{i:03d}_frame01" for i in range(3)
    ]
    assert _store_dirs(temp) == []
