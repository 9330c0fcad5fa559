"""Security: no pickle from files, and writes only inside the folder the user chose.

A malicious pickle (its ``__reduce__`` creates a marker file) is handed to every loader of
weights or arrays; each refuses it with a clear message and the marker never appears. Names
that could climb out of a folder (``../``, absolute paths) in dataset.json, a project file,
a runner job file or a volume's name are refused or made safe, and a sibling folder stays
empty.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import hashlib
import json
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_ssseg
from napari_ssseg.annotation import AnnotatedVolume
from napari_ssseg.errors import InputError, SsSegError
from napari_ssseg.foundation.checkpoints import load_state_dict
from napari_ssseg.foundation.embedding_cache import EmbeddingCache
from napari_ssseg.foundation.errors import CheckpointError
from napari_ssseg.foundation.litemedsam import LiteMedSamBackend
from napari_ssseg.foundation.loading import load_backend
from napari_ssseg.foundation.lora import load_lora
from napari_ssseg.foundation.sam import SamBackend
from napari_ssseg.inference.predict import Prediction
from napari_ssseg.io.msd import read_msd
from napari_ssseg.io.nifti import read_volume
from napari_ssseg.io.paths import safe_name
from napari_ssseg.io.volume import Volume
from napari_ssseg.model_store import load_model, save_model
from napari_ssseg.project_store import (
    PROJECT_FILE,
    default_project_dir,
    load_project,
    save_project,
)
from napari_ssseg.runner import RunStatus, TrainingJob, VolumeInput, worker
from napari_ssseg.runner.job import JOB_FILE
from napari_ssseg.runner.results import read_results
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.model_cards import model_card
from napari_ssseg.tasks.outputs import write_prediction
from tests.conftest import synthetic_case, write_nifti
from tests.test_tasks import small_settings, untrained

PACKAGE = Path(napari_ssseg.__file__).parent
# torch notes that a plain pickle uses protocol 4 before refusing it; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")


class CreatesMarker:
    """Unpickling this object opens (creates) ``marker``: code running from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "payload-ran"


@pytest.fixture(params=["torch.save", "plain pickle"])
def evil_checkpoint(request, tmp_path, marker) -> Path:
    """A checkpoint whose loading with plain pickle runs the payload."""
    path = tmp_path / "evil.pth"
    content = {"model": {"w": torch.ones(2)}, "extra": CreatesMarker(marker)}
    if request.param == "torch.save":
        torch.save(content, path)
    else:
        path.write_bytes(pickle.dumps(content))
    return path


def test_the_payload_is_live(tmp_path):
    """Guard for the tests below: the same payload does run when unpickled unsafely."""
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(CreatesMarker(live)))
    assert live.exists()


def card_matching(path: Path):
    """A SAM card whose SHA-256 is the file's own, so only the weights-only load can refuse."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return dataclasses.replace(model_card("sam_vit_b"), sha256=digest)


def test_checkpoint_loader_refuses_pickled_objects(evil_checkpoint, marker):
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(evil_checkpoint, card_matching(evil_checkpoint))
    message = str(caught.value)
    assert message.startswith(f"{evil_checkpoint}: refused: not a weights-only checkpoint")
    assert "never runs code" in message
    assert "weights_only" not in message  # torch's advice to load it unsafely is not passed on
    with pytest.raises(CheckpointError, match="refused"):  # a card without a hash, forced
        load_state_dict(evil_checkpoint, model_card("medsam_vit_b"), allow_unverified=True)
    assert not marker.exists()


def test_every_foundation_entry_point_refuses_it(evil_checkpoint, marker):
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        LiteMedSamBackend.load(checkpoint=evil_checkpoint)
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        SamBackend.load("sam_vit_b", evil_checkpoint)
    with pytest.raises(CheckpointError, match="refused: not a weights-only"):
        SamBackend.load("medsam_vit_b", evil_checkpoint, allow_unverified=True)
    # What a training run's foundation teacher loads from the job's settings.
    config = TrainConfig.from_dict(
        {"foundation": {"model": "medsam_vit_b", "checkpoint": str(evil_checkpoint)}}
    )
    with pytest.raises(CheckpointError, match="no published SHA-256"):
        load_backend(config.foundation)
    with pytest.raises(CheckpointError, match="not a LoRA file"):
        load_lora(None, evil_checkpoint)
    assert not marker.exists()


def small_model_folder(folder: Path) -> Path:
    return save_model(untrained(small_settings(), ["a", "b"]), folder)


def test_model_folders_never_unpickle(evil_checkpoint, marker, tmp_path):
    with pytest.raises(InputError, match="is a file, not a napari-ssseg model folder.*never"):
        load_model(evil_checkpoint)
    folder = small_model_folder(tmp_path / "model")
    shutil.copy(evil_checkpoint, folder / "model.safetensors")
    with pytest.raises(InputError, match="model.safetensors: unreadable weights"):
        load_model(folder)

    folder = small_model_folder(tmp_path / "model2")
    settings = json.loads((folder / "model.json").read_text())
    settings["annotations"] = {"abc": {"axis": 2}}
    (folder / "model.json").write_text(json.dumps(settings))
    shutil.copy(evil_checkpoint, folder / "annotations.safetensors")
    with pytest.raises(InputError, match="annotations.safetensors: unreadable annotations"):
        load_model(folder)

    cache = EmbeddingCache(tmp_path / "cache")
    shutil.copy(evil_checkpoint, cache.root / f"{'0' * 40}.safetensors")
    assert cache.get("0" * 40) is None  # counted as a miss, never unpickled
    assert not marker.exists()


def object_array(marker: Path) -> np.ndarray:
    array = np.empty(2, dtype=object)
    array[0] = CreatesMarker(marker)
    return array


def test_job_and_result_arrays_holding_objects_are_refused(tmp_path, marker):
    image, labels = synthetic_case()
    volume = VolumeInput(labels=labels, annotated_slices=[4], axis=2, image=image, name="c")
    job_dir = TrainingJob([volume], ["a", "b"], {}, tmp_path / "model").write(tmp_path / "job")
    np.save(job_dir / "image_0.npy", object_array(marker), allow_pickle=True)
    with pytest.raises(InputError, match="image_0.npy: not a plain numeric array"):
        TrainingJob.read(job_dir)

    results = tmp_path / "results"
    results.mkdir()
    entry = {"name": "c", "axis": 2, "annotated": [], "probe_slices": [], "has_probes": False}
    (results / "result.json").write_text(
        json.dumps({"model_dir": "m", "summary": {}, "volumes": [entry]})
    )
    np.save(results / "labels_0.npy", object_array(marker), allow_pickle=True)
    with pytest.raises(InputError, match="labels_0.npy: unreadable result array"):
        read_results(results)
    assert not marker.exists()


def _violations(tree: ast.AST) -> list[str]:
    """Calls that could unpickle: pickle-family loads, torch.load without
    ``weights_only=True``, np.load without ``allow_pickle=False``, torch.jit.load."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner, name = ast.unparse(node.func.value), node.func.attr
        keywords = {k.arg: k.value for k in node.keywords}

        def is_constant(keyword: str, value: bool, kw=keywords) -> bool:
            given = kw.get(keyword)
            return isinstance(given, ast.Constant) and given.value is value

        pickle_family = {"pickle", "cPickle", "dill", "joblib", "marshal", "shelve"}
        unsafe = (
            (owner in pickle_family and name in {"load", "loads", "open"})
            or (owner == "torch" and name == "load" and not is_constant("weights_only", True))
            or (
                owner in {"np", "numpy"}
                and name == "load"
                and not is_constant("allow_pickle", False)
            )
            or (owner == "torch.jit" and name == "load")
            or name == "Unpickler"
        )
        if unsafe:
            found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_the_package_holds_no_unsafe_load():
    checked = {"pickle.loads(data)", "torch.load(p)", "np.load(p, allow_pickle=True)"}
    assert len(_violations(ast.parse("\n".join(checked)))) == 3  # the scanner does find them
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        found = _violations(ast.parse(path.read_text(), str(path)))
        if found:
            offenders[str(path.relative_to(PACKAGE))] = found
    assert not offenders, offenders


# -- path traversal ------------------------------------------------------------------------


@pytest.fixture
def sibling(tmp_path) -> Path:
    """A folder beside the one the user chose; nothing may ever appear in it."""
    folder = tmp_path / "sibling"
    folder.mkdir()
    return folder


def msd_folder(root: Path, splits: dict) -> Path:
    image, labels = synthetic_case((12, 10, 6))
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    write_nifti(root / "imagesTr" / "case1.nii.gz", image)
    write_nifti(root / "labelsTr" / "case1.nii.gz", labels.astype(np.uint8))
    dataset = {
        "name": "x",
        "labels": {"0": "background", "1": "a"},
        "training": [{"image": "../../etc/x.nii.gz", "label": "/etc/passwd"}],
        "splits": splits,
    }
    (root / "dataset.json").write_text(json.dumps(dataset))
    return root


@pytest.mark.parametrize(
    "name", ["../../etc/x.nii.gz", "/etc/x.nii.gz", "..", "a/../../b", "..\\x"]
)
def test_dataset_json_names_that_leave_the_folder_are_refused(tmp_path, name):
    root = msd_folder(tmp_path / "msd", {"train": ["case1", name]})
    with pytest.raises(InputError, match="is not allowed \\(it could leave the folder\\)"):
        read_msd(root)


def test_dataset_json_file_entries_are_never_used_as_paths(tmp_path):
    root = msd_folder(tmp_path / "msd", {"train": ["case1"]})
    dataset = read_msd(root)
    paths = [p for case in dataset.cases for p in (case.image, case.label)]
    assert paths and all(p.resolve().is_relative_to(root.resolve()) for p in paths)


@pytest.fixture
def saved(tmp_path):
    image, labels = synthetic_case()
    volume = read_volume(write_nifti(tmp_path / "case.nii.gz", image))
    annotation = AnnotatedVolume.from_labels(volume, labels, axis=2, annotated_slices=[5, 8])
    folder = save_project(tmp_path / "case.ssseg", annotation, ["a", "b"])
    return folder, volume


def tamper(folder: Path, **entries) -> None:
    path = folder / PROJECT_FILE
    settings = json.loads(path.read_text())
    settings.update(entries)
    path.write_text(json.dumps(settings))


@pytest.mark.parametrize("entry", ["../outside.nii.gz", "/etc/labels-0123456789ab.nii.gz", ".."])
def test_project_file_labels_outside_the_folder_are_refused(saved, entry):
    folder, volume = saved
    tamper(folder, labels=entry)
    with pytest.raises(InputError, match="is not a name inside the project folder"):
        load_project(folder, volume)


def test_project_file_model_entries_are_kept_inside_or_absolute(saved, tmp_path):
    folder, volume = saved
    tamper(folder, model="../../elsewhere")
    assert load_project(folder, volume).model_dir is None
    tamper(folder, model="model")
    assert load_project(folder, volume).model_dir == folder / "model"
    # An absolute path is what a save writes for a model shared by a folder project; it
    # is only read (safetensors) to warm-start, never written.
    tamper(folder, model=str(tmp_path / "shared" / "model"))
    assert load_project(folder, volume).model_dir == tmp_path / "shared" / "model"


def test_layer_names_cannot_move_the_autosave_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = np.zeros((4, 4, 4), np.float32)
    for name in ("../../evil", "/etc/evil", "..", "a/b"):
        unsaved = Volume(data, np.eye(4), name=name)
        folder = default_project_dir(unsaved)
        assert folder.parent == tmp_path / "cache" / "napari-ssseg" / "projects", folder
        image_file = write_nifti(tmp_path / "img.nii.gz", data)
        beside = Volume(data, np.eye(4), name=name, path=image_file)
        assert default_project_dir(beside).parent == tmp_path, name


def test_safe_name_keeps_names_inside_a_folder():
    assert safe_name("../../x") == "_.._x"
    assert safe_name("/etc/x") == "_etc_x"
    assert safe_name("..") == "volume" and safe_name("") == "volume"
    assert safe_name("C:\\x") == "C__x"
    assert safe_name("liver CT 2") == "liver CT 2"


@pytest.mark.parametrize("name", ["../sibling/evil", "/abs/evil", "..", "x/../../sibling/y"])
def test_output_names_from_layer_names_stay_in_the_export_folder(tmp_path, sibling, name):
    image, labels = synthetic_case((8, 6, 4))
    like = Volume(image, np.eye(4), name=name)
    prediction = Prediction(
        labels, np.zeros(labels.shape, np.float32), np.zeros(4), annotated=[1], axis=2
    )
    out = tmp_path / "export"
    paths = write_prediction(prediction, like, out)
    assert all(path.parent == out and path.is_file() for path in paths.values())
    assert not list(sibling.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "sibling"]


@pytest.mark.parametrize("entry", ["../../outside.npy", "/etc/passwd", "labels_0.npy/../x"])
def test_job_file_entries_outside_the_job_folder_are_refused(tmp_path, entry):
    image, labels = synthetic_case()
    volume = VolumeInput(labels=labels, annotated_slices=[4], axis=2, image=image, name="c")
    job_dir = TrainingJob([volume], ["a", "b"], {}, tmp_path / "model").write(tmp_path / "job")
    settings = json.loads((job_dir / JOB_FILE).read_text())
    settings["volumes"][0]["labels"] = entry
    (job_dir / JOB_FILE).write_text(json.dumps(settings))
    with pytest.raises(InputError, match="is not a file of the job folder; refusing"):
        TrainingJob.read(job_dir)


def test_a_model_folder_needs_a_name_of_its_own(tmp_path):
    image, labels = synthetic_case()
    volume = VolumeInput(labels=labels, annotated_slices=[4], axis=2, image=image, name="c")
    with pytest.raises(SsSegError, match="needs a name of its own"):
        TrainingJob([volume], ["a", "b"], {}, tmp_path / "project" / "..").check()


def test_a_run_writes_only_into_its_job_folder_and_the_chosen_model_folder(tmp_path, sibling):
    """The child's whole job, run here: every file it leaves is in the job folder or the
    model folder the user chose."""
    torch.set_num_threads(1)
    image, labels = synthetic_case()
    volume = VolumeInput(
        labels=labels, annotated_slices=[4, 8, 12], axis=2, image=image, name="../sibling/evil"
    )
    config = {
        "student": {"image_size": 32, "channels": [8, 16, 32]},
        "budget": {"max_iters": 3},
        "prediction": {"passes": 2},
    }
    chosen = tmp_path / "chosen"
    job = TrainingJob([volume], ["a", "b"], config, chosen / "model", threads=1)
    job.write(tmp_path / "job")
    before = {p for p in tmp_path.rglob("*")}

    class Events(list):
        put = list.append

    events = Events()
    worker.run_job(str(tmp_path / "job"), events, threading.Event())
    assert events[-1].status is RunStatus.DONE, events[-1].message
    new = {p for p in tmp_path.rglob("*")} - before
    outside = [p for p in new if not (p.is_relative_to(tmp_path / "job") or p == chosen)]
    outside = [p for p in outside if not p.is_relative_to(chosen / "model")]
    assert not outside, outside
    assert not list(sibling.iterdir())
