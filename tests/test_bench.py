"""The benchmark harness on a tiny synthetic MSD folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from napari_ssseg.cli import main
from tests.conftest import require_shared, synthetic_case, write_nifti


def make_msd(root: Path, cases: int = 3) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    names = []
    for i in range(cases):
        image, labels = synthetic_case()
        name = f"patient{i:03d}_frame01"
        write_nifti(root / "imagesTr" / f"{name}.nii.gz", np.roll(image, i, axis=0))
        write_nifti(
            root / "labelsTr" / f"{name}.nii.gz", np.roll(labels, i, axis=0).astype(np.uint8)
        )
        names.append(name)
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "name": "Synthetic",
                "labels": {"0": "background", "1": "organ", "2": "lesion"},
                "splits": {"train": names[:2], "val": names[2:]},
            }
        )
    )
    return root


def test_sparse_bench_interp_scores_and_writes_json(tmp_path, capsys):
    data = make_msd(tmp_path / "data")
    out = tmp_path / "bench.json"
    options = ["--protocol", "sparse", "--k", "3", "--methods", "interp,interp-nn"]
    code = main(["bench", "--data", str(data), *options, "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "interp" in table and "s/volume" in table
    result = json.loads(out.read_text())
    interp = result["results"]["interp"]
    assert len(interp["volumes"]) == 3
    # Smooth ellipsoids: interpolation between 3 slices recovers most of the organ; copying
    # the end slices outward over-fills the shrinking tips, so it scores differently.
    assert interp["class_dice"][0] > 0.6
    nearest = result["results"]["interp-nn"]
    assert 0.5 < nearest["mean_dice"] != interp["mean_dice"]
    assert result["machine"]["cpu_count"] >= 1


@pytest.mark.slow
def test_sparse_bench_rows_record_steps_and_when_teachers_started(tmp_path, capsys):
    data = make_msd(tmp_path / "data", cases=1)
    out = tmp_path / "bench.json"
    options = "--protocol sparse --k 3 --methods unet,mt-gate --max-iters 20"
    assert main(["bench", "--data", str(data), *options.split(), "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    (unet,) = results["unet"]["volumes"]
    (mt,) = results["mt-gate"]["volumes"]
    assert unet["steps"] == mt["steps"] == 20
    # No teacher, no start; without the gate the mean teacher starts at
    # budget.teacher_start (half).
    assert unet["teachers_from"] is None
    assert mt["teachers_from"] == 10
    assert unet["teacher_work"] is None and mt["teacher_work"] is None  # nothing to report


@pytest.mark.slow
def test_cases_bench_trains_one_model(tmp_path, capsys):
    data = make_msd(tmp_path / "data")
    out = tmp_path / "bench.json"
    options = "--protocol cases --labeled-cases 1 --split val --methods unet --max-iters 20"
    code = main(["bench", "--data", str(data), *options.split(), "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())["results"]["unet"]
    assert [v["name"] for v in result["volumes"]] == ["patient002_frame01"]
    assert result["fit_seconds"] > 0
    assert result["fit_steps"] == 20


def test_bench_methods_start_from_the_settings_file(tmp_path, capsys):
    data = make_msd(tmp_path / "data")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"budget": {"max_iters": 7}, "student": {"channels": [8, 16]}}))
    out = tmp_path / "bench.json"
    options = "--protocol cases --labeled-cases 1 --split val --methods unet"
    command = ["bench", "--data", str(data), *options.split(), "--json", str(out)]
    assert main([*command, "--config", str(settings)]) == 0
    result = json.loads(out.read_text())
    # The file's step budget reached the training.
    assert result["results"]["unet"]["fit_steps"] == 7
    assert result["training_config"]["student"]["channels"] == [8, 16]
    assert result["training_config"]["budget"]["max_iters"] == 7
    assert result["settings"]["training"]["budget"]["max_iters"] == 7
    settings.write_text(json.dumps({"curriculum": {"slice": 7}}))
    assert main([*command, "--config", str(settings)]) == 2
    assert "unknown training setting(s): curriculum.slice" in capsys.readouterr().err
    settings.write_text(json.dumps({"method": "mt"}))
    assert main([*command, "--config", str(settings)]) == 2
    assert "method is given by --methods" in capsys.readouterr().err
    settings.write_text(json.dumps({"teachers": ["mean"]}))
    assert main([*command, "--config", str(settings)]) == 2
    assert "teachers is given by --methods" in capsys.readouterr().err


def test_bench_first_volume_picks_the_scored_volumes(tmp_path, capsys):
    data = make_msd(tmp_path / "data", cases=4)
    out = tmp_path / "bench.json"
    options = "--protocol sparse --k 3 --methods interp --first-volume 1 --max-volumes 2"
    assert main(["bench", "--data", str(data), *options.split(), "--json", str(out)]) == 0
    volumes = json.loads(out.read_text())["results"]["interp"]["volumes"]
    assert [v["name"] for v in volumes] == ["patient001_frame01", "patient002_frame01"]
    assert main(["bench", "--data", str(data), "--methods", "interp", "--first-volume", "4"]) == 2
    assert "first volume 4 is outside the scored split's 4 volumes (0 to 3)" in (
        capsys.readouterr().err
    )


def test_bench_unknown_method_is_a_clear_error(tmp_path, capsys):
    data = make_msd(tmp_path / "data")
    assert main(["bench", "--data", str(data), "--methods", "magic"]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err
    assert main(["bench", "--data", str(data), "--methods", "ssl+glitter"]) == 2
    assert "unknown part 'glitter'" in capsys.readouterr().err


def part_value(config, part: str):
    """What a method's settings make of ``part``: a feature term's weight, whether CutMix
    mixes (one class, three classes), else the setting its switch writes."""
    from napari_ssseg.settings.presets import SWITCHES

    if part in ("distill", "prototype"):
        return config.feature_weight(part)
    if part == "cutmix":
        return (config.uses_cutmix(1), config.uses_cutmix(3))
    value = config
    for name in SWITCHES[part].setting.split("."):
        value = getattr(value, name)
    return value


@pytest.mark.parametrize(
    ("name", "teachers", "parts", "refine"),
    [
        ("ssl", ("mean", "shape"), {"cutmix": (False, True), "distill": 0.0}, None),
        ("ssl-cutmix", ("mean", "shape"), {"cutmix": (False, False)}, None),
        ("ssl+sam", ("mean", "shape", "sam"), {}, None),
        ("ssl-shape+cutmix", ("mean",), {"cutmix": (True, True)}, None),
        (
            "full-cutmix-distill",
            ("fused", "shape", "self"),
            {"cutmix": (False, False), "distill": 0.0, "prototype": 0.5},
            None,
        ),
        ("sc-sam+refine", ("sam",), {}, "auto"),
        ("unet-refine+prototype", (), {"prototype": 0.5}, "off"),
        ("ssl-gate", ("mean", "shape"), {}, None),
        ("mt+strong+pretrain", ("mean",), {"strong": True, "pretrain": 200}, None),
    ],
)
def test_method_names_switch_parts(name, teachers, parts, refine):
    from napari_ssseg.bench.methods import make_method
    from napari_ssseg.settings import TrainConfig

    base = TrainConfig.from_dict({"budget": {"max_iters": 9}})
    method = make_method(name, base)
    assert method.name == name
    assert method.config.active_teachers == teachers
    assert method.refine == refine == method.config.prediction.refine
    for part, value in parts.items():
        assert part_value(method.config, part) == value, part
    assert (method.config.budget.gate_dice == 0.0) == name.endswith("-gate")
    assert method.config.budget.max_iters == 9  # the base settings stay
    assert not method.precompute and not method.pretrain_before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ssl+mean", "ssl has mean"),
        ("unet-shape", "unet lacks shape"),
        ("sslx", "unknown method"),
        ("ssl+flow", "unknown part 'flow'"),
        ("connect", "unknown method"),
    ],
)
def test_method_names_refuse_what_they_cannot_mean(name, message):
    from napari_ssseg.bench.methods import make_method
    from napari_ssseg.errors import SsSegError
    from napari_ssseg.settings import TrainConfig

    with pytest.raises(SsSegError, match=message):
        make_method(name, TrainConfig())


def test_each_volume_starts_with_an_empty_embedding_cache(monkeypatch):
    # A method must not get embeddings another method (or volume) made: its seconds and its
    # training budget are those of a first run.
    from napari_ssseg.bench import methods
    from napari_ssseg.settings import TrainConfig

    caches: list[Path] = []

    class Done(Exception):
        pass

    def fake_train(project, config):
        caches.append(Path(config.foundation.embedding_cache))
        assert caches[-1].is_dir() and not any(caches[-1].iterdir())
        (caches[-1] / "made-by-this-run").write_text("embedding")
        raise Done

    monkeypatch.setattr(methods, "train_model", fake_train)
    method = methods.make_method("uncol", TrainConfig())
    for _ in range(2):
        with pytest.raises(Done):
            method.segment_sparse(None, 1)
    assert len(set(caches)) == 2
    assert not any(cache.exists() for cache in caches)


@pytest.mark.shared_data
def test_la_protocol_slices_on_real_volume():
    from napari_ssseg.bench.protocols import sparse_slice_indices
    from napari_ssseg.io.msd import read_msd
    from napari_ssseg.io.nifti import read_labels, read_volume

    dataset = read_msd(require_shared("LA"))
    case = dataset.split("train")[0]
    labels = read_labels(case.label, like=read_volume(case.image))
    slices = sparse_slice_indices(labels, 2, 5)
    assert len(slices) == 5 and all(labels[:, :, i].any() for i in slices)


def test_prepare_pretrains_before_the_run_outside_its_time(monkeypatch):
    # `+prepare`: the embeddings and the pretrained student are made before the run (as the
    # dock makes them while the user labels), and neither counts in its time; the run finds
    # the student in its cache (tests/test_pretraining.py).
    from napari_ssseg.bench import methods
    from napari_ssseg.settings import TrainConfig
    from napari_ssseg.tasks import embeddings
    from napari_ssseg.training import student_store

    method = methods.make_method("ssl+prepare-refine", TrainConfig())
    assert method.config.features.pretrain_steps == 200
    assert method.precompute and method.pretrain_before
    assert method.refine == "off"
    inside = methods.make_method("ssl+pretrain+precompute", TrainConfig())
    assert inside.config.features.pretrain_steps == 200 and not inside.pretrain_before
    calls: list[str] = []

    def fake_embed(project, config):
        calls.append(f"embed {config.features.pretrain_steps}")

    def fake_prepare(project, config):
        calls.append("pretrain")
        time.sleep(0.2)

    class Done(Exception):
        pass

    def fake_train(project, config):
        calls.append("train")
        raise Done

    monkeypatch.setattr(embeddings, "precompute_embeddings", fake_embed)
    monkeypatch.setattr(student_store, "prepare_student", fake_prepare)
    monkeypatch.setattr(methods, "train_model", fake_train)
    with pytest.raises(Done):
        method.segment_sparse(None, 1)  # the fakes never read the volume
    # The embeddings the run needs (none for the student: it is made already), the student.
    assert calls == ["embed 0", "pretrain", "train"] and method.last_untimed >= 0.2
    calls.clear()
    with pytest.raises(Done):
        inside.segment_sparse(None, 1)
    assert calls == ["embed 200", "train"]  # it pretrains inside the run
