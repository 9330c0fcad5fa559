"""The CLI on bad input: one clear line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_ssseg.cli import CliError, main, parse_slices, parse_volume_groups
from tests.conftest import synthetic_case, write_nifti


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_clean_failure(code: int, err: str, out: Path, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-ssseg: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    image, labels = synthetic_case()
    four_d = np.stack([image, image], axis=-1)
    nan_image = image.copy()
    nan_image[3, 4, 5] = np.nan
    bad_labels = labels.copy()
    bad_labels[0, 0, 0] = 7
    return {
        "image": write_nifti(tmp_path / "img.nii.gz", image),
        "labels": write_nifti(tmp_path / "lab.nii.gz", labels.astype(np.uint8)),
        "text": _text(tmp_path / "notes.nii.gz"),
        "four_d": write_nifti(tmp_path / "img4d.nii.gz", four_d),
        "nan": write_nifti(tmp_path / "nan.nii.gz", nan_image),
        "small_labels": write_nifti(tmp_path / "small.nii.gz", labels[:, :, :10].astype(np.uint8)),
        "empty_labels": write_nifti(tmp_path / "empty.nii.gz", np.zeros_like(labels, np.uint8)),
        "bad_labels": write_nifti(tmp_path / "bad.nii.gz", bad_labels.astype(np.uint8)),
        "out": tmp_path / "model",
    }


def _text(path: Path) -> Path:
    path.write_text("this is not an image\n")
    return path


def test_missing_file(files, capsys):
    code, err = run_cli(
        [
            "train",
            files["out"].parent / "nope.nii.gz",
            "--labels",
            files["labels"],
            "--out",
            files["out"],
        ],
        capsys,
    )
    assert_clean_failure(code, err, files["out"], "nope.nii.gz", "does not exist")


def test_not_nifti(files, capsys):
    code, err = run_cli(
        ["train", files["text"], "--labels", files["labels"], "--out", files["out"]], capsys
    )
    assert_clean_failure(code, err, files["out"], "notes.nii.gz", "NIfTI")


def test_four_d_image(files, capsys):
    code, err = run_cli(
        ["train", files["four_d"], "--labels", files["labels"], "--out", files["out"]], capsys
    )
    assert_clean_failure(code, err, files["out"], "img4d.nii.gz", "3-D")


def test_label_grid_differs(files, capsys):
    code, err = run_cli(
        ["train", files["image"], "--labels", files["small_labels"], "--out", files["out"]], capsys
    )
    assert_clean_failure(code, err, files["out"], "small.nii.gz", "(40, 36, 10)", "(40, 36, 16)")


def test_no_annotated_slice(files, capsys):
    code, err = run_cli(
        ["train", files["image"], "--labels", files["empty_labels"], "--out", files["out"]], capsys
    )
    assert_clean_failure(code, err, files["out"], "no annotated slice")


def test_label_values_outside_class_set(files, capsys):
    code, err = run_cli(
        [
            "train",
            files["image"],
            "--labels",
            files["bad_labels"],
            "--classes",
            "organ,lesion",
            "--out",
            files["out"],
        ],
        capsys,
    )
    assert_clean_failure(code, err, files["out"], "[7]", "outside the class set 0..2")


def test_nan_voxels(files, capsys):
    code, err = run_cli(
        ["train", files["nan"], "--labels", files["labels"], "--out", files["out"]], capsys
    )
    assert_clean_failure(code, err, files["out"], "nan.nii.gz", "NaN")


def test_annotated_slice_out_of_range(files, capsys):
    code, err = run_cli(
        [
            "train",
            files["image"],
            "--labels",
            files["labels"],
            "--annotated-slices",
            "3,99",
            "--out",
            files["out"],
        ],
        capsys,
    )
    assert_clean_failure(code, err, files["out"], "slice 99 is out of range", "0..15")


def test_labels_before_image_and_unknown_option(files, capsys):
    code, err = run_cli(
        ["train", "--labels", files["labels"], files["image"], "--out", files["out"]], capsys
    )
    assert_clean_failure(code, err, files["out"], "--labels must follow the IMAGE")
    code, err = run_cli(
        ["train", files["image"], "--lables", files["labels"], "--out", files["out"]], capsys
    )
    assert_clean_failure(code, err, files["out"], "unknown option --lables")


def test_predict_with_missing_model(files, capsys):
    out = files["out"].parent / "pred"
    code, err = run_cli(["predict", files["image"], "--model", files["out"], "--out", out], capsys)
    assert_clean_failure(code, err, out, "not a napari-ssseg model folder")


def test_parse_volume_groups():
    specs = parse_volume_groups(
        [
            "--axis",
            "1",
            "a.nii.gz",
            "--labels",
            "a_l.nii.gz",
            "--annotated-slices",
            "1,4-6",
            "b.nii.gz",
            "--axis=0",
            "c.nii.gz",
            "--labels=c_l.nii.gz",
        ]
    )
    assert [s.image.name for s in specs] == ["a.nii.gz", "b.nii.gz", "c.nii.gz"]
    assert specs[0].annotated_slices == [1, 4, 5, 6]
    assert [s.axis for s in specs] == [1, 0, 1]
    assert specs[1].labels is None and specs[2].labels.name == "c_l.nii.gz"
    with pytest.raises(CliError, match="not a slice index"):
        parse_slices("1,x")
    with pytest.raises(CliError, match="--annotated-slices needs a value"):
        parse_volume_groups(["a.nii.gz", "--annotated-slices"])


def test_help_is_fast_and_lists_commands():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "napari_ssseg.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("train", "prepare", "predict", "demo", "bench"):
        assert command in result.stdout
    # Lazy imports: --help must not pull in torch or MONAI.
    assert "torch" not in result.stderr and "monai" not in result.stderr


def test_cli_methods_follow_the_preset_grammar(files, capsys):
    from napari_ssseg import cli
    from napari_ssseg.settings import TrainConfig
    from napari_ssseg.settings.presets import DEFAULT_METHOD, PRESETS

    assert all(preset in cli.METHOD_HELP for preset in PRESETS)
    assert TrainConfig().method == DEFAULT_METHOD
    train = ["train", str(files["image"]), "--out", str(files["out"]), "--seed", "3"]
    args, _ = cli.build_parser().parse_known_args(train)
    default = cli._training_config(args, args.method)
    assert default.method == DEFAULT_METHOD and default.seed == 3
    switched = cli._training_config(args, "ssl+sam-shape-cutmix")
    assert switched.method == "ssl" and switched.active_teachers == ("mean", "sam")
    assert switched.cutmix.on is False and switched.seed == 3
    refused = {
        "glitter": "unknown method 'glitter'",
        "ssl+glitter": "unknown part 'glitter'",
        "flow": "unknown method 'flow'",
        "ssl+mean": "ssl has mean",
        "ssl+precompute": "--method ssl+precompute: +precompute is for 'bench' only",
    }
    for method, message in refused.items():
        code, err = run_cli([*train, "--labels", files["labels"], "--method", method], capsys)
        assert_clean_failure(code, err, files["out"], message)
