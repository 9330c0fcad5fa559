"""Command line: ``napari-ssseg train | prepare | predict | demo | bench``.

Heavy modules (torch, MONAI) are imported inside the commands so ``--help`` stays fast.
User mistakes end with one ``napari-ssseg: error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from napari_ssseg.cluster_cli import (
    add_cluster_options,
    predict_data_folder,
    train_on_cluster,
    wants_cluster,
)
from napari_ssseg.settings.prediction import REFINE_MODES
from napari_ssseg.settings.presets import DEFAULT_METHOD, offered_methods, parse_method

if TYPE_CHECKING:
    from napari_ssseg.annotation import Project
    from napari_ssseg.settings import TrainConfig

VOLUME_OPTIONS = ("--labels", "--annotated-slices", "--axis")
METHOD_HELP = (
    f"training method (default {DEFAULT_METHOD}; measured below it, for comparison: "
    f"{', '.join(offered_methods()[1])}), optionally followed by +part/-part switches "
    "(ssl+sam, ssl-shape)"
)
MAX_LISTED_SLICES = 100_000
"""More slice indices than any volume has (NIfTI-1 axes stop at 32767): a longer list or range
is a typo, refused before it fills the memory."""
_SLICE_PART = re.compile(r"([0-9]+)(?:\s*-\s*([0-9]+))?")


class CliError(Exception):
    """A command-line usage problem."""


def parse_slices(text: str) -> list[int]:
    """``"12,30,47"`` -> [12, 30, 47]; ranges ``"3-5"`` are allowed.

    Indices are plain ASCII digits counted from 0; a reversed range, a negative index or more
    than :data:`MAX_LISTED_SLICES` indices raise :class:`CliError` naming the part.
    """
    slices: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        match = _SLICE_PART.fullmatch(part)
        if match is None:
            hint = "; slices are numbered from 0" if part.startswith("-") else ""
            raise CliError(f"--annotated-slices: {part!r} is not a slice index or range{hint}")
        first = int(match.group(1))
        last = first if match.group(2) is None else int(match.group(2))
        if last < first:
            raise CliError(
                f"--annotated-slices: {part!r} is a reversed range (write {last}-{first})"
            )
        if len(slices) + (last - first + 1) > MAX_LISTED_SLICES:
            raise CliError(
                f"--annotated-slices: {part!r} lists more than {MAX_LISTED_SLICES} slices; no "
                "volume has that many"
            )
        slices.extend(range(first, last + 1))
    if not slices:
        raise CliError("--annotated-slices: no slice index given")
    return slices


def parse_axis(text: str) -> int:
    if text not in ("0", "1", "2"):
        raise CliError(f"--axis must be 0, 1 or 2, not {text!r}")
    return int(text)


def parse_volume_groups(tokens: Sequence[str]):
    """Split ``IMAGE [--labels L] [--annotated-slices S] [--axis A]`` groups into specs.

    An ``--axis`` before the first IMAGE applies to every group without its own.
    """
    from napari_ssseg.project_io import VolumeSpec

    specs: list[VolumeSpec] = []
    default_axis: int | None = None
    tokens = list(tokens)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, eq, inline = token.partition("=")
        if name in VOLUME_OPTIONS:
            if eq:
                value = inline
                i += 1
            elif i + 1 < len(tokens):
                value = tokens[i + 1]
                i += 2
            else:
                raise CliError(f"{name} needs a value")
            if name == "--axis" and not specs:
                default_axis = parse_axis(value)
                continue
            if not specs:
                raise CliError(f"{name} must follow the IMAGE it belongs to")
            if name == "--labels":
                specs[-1].labels = Path(value)
            elif name == "--annotated-slices":
                specs[-1].annotated_slices = parse_slices(value)
            else:
                specs[-1].axis = parse_axis(value)
        elif token.startswith("-"):
            raise CliError(f"unknown option {token}")
        else:
            specs.append(VolumeSpec(Path(token)))
            i += 1
    for spec in specs:
        if spec.axis is None:
            spec.axis = default_axis
    return specs


def check_output_folder(out: Path, model: bool = False) -> None:
    """Refuse an ``--out`` that cannot become the output folder, before any work is done.

    With ``model``, an existing folder must be empty or a model folder: saving a model
    replaces the whole folder, which would delete anything else kept there.
    """
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file; a folder is needed")
    for folder in (out, *out.parents):  # the nearest existing one receives what is written
        if folder.exists():
            if not folder.is_dir():
                raise CliError(f"--out {out}: {folder} is a file, not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise CliError(f"--out {out}: the folder {folder} is not writable")
            break
    if model and out.is_dir() and any(out.iterdir()) and not (out / "model.json").is_file():
        raise CliError(
            f"--out {out} is a folder holding other files and no model.json; saving the model "
            "would replace it: give a new folder or an existing model folder"
        )


def _positive(option: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise CliError(f"{option} must be at least 1, not {value}")


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-time", type=float, default=None, help="time budget in seconds")
    parser.add_argument("--max-iters", type=int, default=None, help="iteration budget")
    _add_run_options(parser)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Seed, device and threads: what a run's work depends on beside its budget."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def _add_volume_options(parser: argparse.ArgumentParser) -> None:
    """The volume and preset options ``train`` and ``prepare`` share (IMAGE groups aside)."""
    parser.add_argument("--data", type=Path, help="an MSD/nnU-Net folder of volumes")
    parser.add_argument("--split", help="split of --data's dataset.json to use")
    parser.add_argument("--classes", help="comma-separated class names for labels 1..C")
    parser.add_argument("--method", help=METHOD_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-ssseg",
        description="Segment 3-D volumes from a few labelled slices (semi-supervised).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train a model from annotated volumes",
        usage="napari-ssseg train IMAGE [--labels LABELS] [--annotated-slices 12,30,47] "
        "[--axis A] [IMAGE ...] [--data MSD_DIR] --out MODEL_DIR [options]",
        description="Each IMAGE may be followed by its --labels, --annotated-slices and "
        "--axis. Without --annotated-slices every slice holding a label counts as annotated; "
        "an IMAGE without --labels is unlabelled and still used for learning.",
    )
    train.add_argument("--out", required=True, type=Path, help="model folder to write")
    _add_volume_options(train)
    train.add_argument("--init", type=Path, help="warm-start from this model folder")
    train.add_argument("--config", type=Path, help="JSON file of training settings")
    _add_training_options(train)
    add_cluster_options(train, "train data-parallel")

    prepare = commands.add_parser(
        "prepare",
        help="embed and pretrain ahead, so that a later train spends its budget on steps",
        usage="napari-ssseg prepare IMAGE [--labels LABELS] [--axis A] [IMAGE ...] "
        "[--data MSD_DIR] [--method M] [--config FILE] [options]",
        description="Makes, from the images alone, what a later 'napari-ssseg train' of the "
        "same volumes and settings would make inside its time budget: the foundation "
        "model's embeddings of every slice it could use and, for settings with "
        "features.pretrain_steps, the network pretrained by distillation (one volume only: a "
        "run of several pretrains itself). Give it the volumes, --method, --config and --seed of "
        "that train command; labels (or --classes) only set the class count.",
    )
    _add_volume_options(prepare)
    prepare.add_argument("--config", type=Path, help="JSON file of training settings")
    _add_run_options(prepare)

    predict = commands.add_parser("predict", help="segment a volume with a trained model")
    predict.add_argument("image", type=Path, nargs="?", help="the volume (or use --data)")
    predict.add_argument("--data", type=Path, help="predict every image of this folder")
    predict.add_argument("--model", required=True, type=Path)
    predict.add_argument("--out", required=True, type=Path, help="folder for the outputs")
    predict.add_argument("--labels", type=Path, help="user labels to keep on annotated slices")
    predict.add_argument("--annotated-slices", help="annotated slices of --labels")
    predict.add_argument("--axis", help="slice axis (default: the training one or the thickest)")
    predict.add_argument("--passes", type=int, default=None, help="MC-dropout passes")
    predict.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    predict.add_argument(
        "--refine",
        metavar="{off,auto,sam}",
        help="refine with the foundation model: off; auto, per class where it scores better "
        "on the annotated slices; sam, always (default: auto for models trained with a "
        "foundation teacher, else off)",
    )
    add_cluster_options(predict, "--data: predict volumes in parallel")

    demo = commands.add_parser("demo", help="train and predict on the bundled sample")
    demo.add_argument("--out", type=Path, default=Path("demo_out"))
    demo.add_argument("--sample", choices=("ct", "mr"), default="ct")
    demo.add_argument("--organ", default="liver")
    demo.add_argument("--k", type=int, default=4, help="annotated slices to reveal")
    demo.add_argument("--method", help=METHOD_HELP)
    _add_training_options(demo)
    demo.set_defaults(max_time=60.0)

    bench = commands.add_parser("bench", help="benchmark methods on an MSD folder")
    bench.add_argument("--data", required=True, type=Path)
    bench.add_argument("--split", default=None, help="split to score (default: all cases)")
    bench.add_argument("--protocol", choices=("sparse", "cases"), default="sparse")
    bench.add_argument("--k", type=int, default=5, help="sparse: annotated slices per volume")
    bench.add_argument("--labeled-cases", type=int, default=7, help="cases: labelled cases")
    bench.add_argument("--train-split", default="train", help="cases: split to train on")
    bench.add_argument("--methods", default="interp,unet,ssl")
    bench.add_argument("--max-volumes", type=int, default=None)
    bench.add_argument(
        "--first-volume",
        type=int,
        default=0,
        help="index of the first scored volume (default 0; --max-volumes counts from it)",
    )
    bench.add_argument("--axis", default=None, help="slice axis (default: the thickest)")
    bench.add_argument("--json", type=Path, help="write results here")
    bench.add_argument(
        "--config",
        type=Path,
        help="JSON file of training settings every learned method starts from (its preset "
        "and +part switches, then the options here, override them)",
    )
    _add_training_options(bench)
    return parser


def _settings_file(path: Path | None) -> dict:
    """The training settings of a ``--config`` JSON file (none without one)."""
    import json

    if path is None:
        return {}
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CliError(f"{path}: cannot read the training settings ({error})") from None
    if not isinstance(values, dict):
        raise CliError(f"{path}: training settings must be a JSON object")
    return values


def command_line_settings(args: argparse.Namespace) -> dict:
    """The settings the run options give (seed, device, budget), written over a settings
    file's."""
    values: dict = {"seed": args.seed, "device": args.device}
    budget = {
        key: value
        for key in ("max_time", "max_iters")
        if (value := getattr(args, key, None)) is not None
    }
    if budget:
        values["budget"] = budget
    return values


def _training_config(args: argparse.Namespace, method: str | None) -> TrainConfig:
    """The settings of ``--config``, the method (``--method``, else the file's, else the
    default) with what its switches write, and the run options."""
    from napari_ssseg.settings import TrainConfig

    values = _settings_file(getattr(args, "config", None))
    name = method or values.get("method") or DEFAULT_METHOD
    flags = parse_method(str(name)).flags
    if flags:
        raise CliError(f"--method {name}: +{', +'.join(sorted(flags))} is for 'bench' only")
    config = TrainConfig.for_method(str(name), values)
    return config.with_values(command_line_settings(args))


def progress_printer(label: str):
    """A callback printing a training progress snapshot (step, %, seconds, losses) to stderr."""

    def show(snapshot) -> None:
        losses = " ".join(f"{k} {v:.3f}" for k, v in snapshot.losses.items())
        print(
            f"{label}: step {snapshot.iteration} ({100 * snapshot.fraction:.0f}%) "
            f"{snapshot.elapsed:.0f} s  {losses}",
            file=sys.stderr,
            flush=True,
        )

    return show


def run_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Several volumes (``--data`` or more than one IMAGE) are read one at a time into a
    temporary slice store that training streams from; it is deleted when the command ends."""
    from napari_ssseg.data.slice_store import SliceStore
    from napari_ssseg.project_io import load_project, load_project_streamed

    specs, class_names = _volume_specs(args, extra, "train")
    check_output_folder(args.out, model=True)
    if not args.out.parent.is_dir():
        raise CliError(f"{args.out.parent}: the folder for --out does not exist")
    config = _training_config(args, args.method)
    if len(specs) == 1:
        return _train_project(args, load_project(specs, class_names), config)
    with SliceStore.temporary() as store:
        project = load_project_streamed(
            specs, class_names, store, config.student.image_size, config.student.intensity
        )
        return _train_project(args, project, config)


def notice(line: str) -> None:
    """Print a line for the user to stderr, as ``napari-ssseg: LINE``."""
    print(f"napari-ssseg: {line}", file=sys.stderr, flush=True)


def _train_project(args: argparse.Namespace, project: Project, config: TrainConfig) -> int:
    from napari_ssseg.model_store import save_model
    from napari_ssseg.tasks.train import train_model

    if wants_cluster(args):
        for warning in project.warnings(semi_supervised=bool(config.active_teachers)):
            notice(f"warning: {warning}")
        show = progress_printer(f"train ({args.workers} workers)")
        summary = train_on_cluster(args, project, config, args.init, show)
        print(
            f"model written to {args.out} ({summary['iterations']} steps on {args.workers} "
            f"worker(s), {summary['seconds']:.0f} s)"
        )
        return 0
    model = train_model(
        project, config, args.init, on_progress=progress_printer("train"), notify=notice
    )
    save_model(model, args.out)
    print(
        f"model written to {args.out} ({model.summary['iterations']} steps, "
        f"{model.summary['seconds']:.0f} s)"
    )
    return 0


def _volume_specs(args: argparse.Namespace, extra: Sequence[str], command: str):
    """The volumes of a train or prepare command line (IMAGE groups, then --data's) and the
    class names given for them (--classes, else --data's, else None)."""
    from napari_ssseg.project_io import msd_specs

    specs = parse_volume_groups(extra)
    class_names = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if args.data is not None:
        data_specs, data_names = msd_specs(args.data, args.split)
        specs.extend(data_specs)
        class_names = class_names or data_names
    if not specs:
        raise CliError(f"{command} needs at least one IMAGE or --data MSD_DIR")
    return specs, class_names


def run_prepare(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Embeddings for every volume, one read at a time; the student only for one volume,
    which is the run that looks for it (a run of several streams its volumes and pretrains
    itself)."""
    from napari_ssseg.annotation import infer_class_names
    from napari_ssseg.foundation.loading import embedding_cache
    from napari_ssseg.project_io import load_annotated_volume
    from napari_ssseg.tasks.embeddings import needs_embeddings
    from napari_ssseg.tasks.prepare import prepare_volumes

    specs, class_names = _volume_specs(args, extra, "prepare")
    config = _training_config(args, args.method)
    first = None
    if not class_names:  # the class count sets the student's outputs and ssl's refinement
        labelled = [spec for spec in specs if spec.labels is not None]
        first = load_annotated_volume((labelled or specs)[0])  # no validation needed
        class_names = infer_class_names([first])
        if not labelled:
            print(
                f"napari-ssseg: warning: no --labels nor --classes: taken as "
                f"{len(class_names)} class; a run with more classes may need more",
                file=sys.stderr,
            )
    pretrain = config.features.pretrain_steps > 0 and len(specs) == 1
    if not needs_embeddings(config, len(class_names)) and not pretrain:
        raise CliError(
            f"nothing to prepare: method {config.method} with these settings and "
            f"{len(class_names)} class(es) uses no foundation model and does not pretrain "
            "(features.pretrain_steps in --config); 'napari-ssseg train' needs no preparation"
        )
    if config.features.pretrain_steps > 0 and not pretrain:
        print(
            "napari-ssseg: warning: a run of several volumes pretrains inside its own time; "
            "only the embeddings are prepared",
            file=sys.stderr,
        )
    if len(specs) == 1:  # read once
        volume = first if first is not None else load_annotated_volume(specs[0])
        loaders = [lambda: volume]
    else:  # one volume in memory at a time (the one read for its classes is read again)
        loaders = [lambda spec=spec: load_annotated_volume(spec) for spec in specs]
    prepared = prepare_volumes(loaders, class_names, config, pretrain, preparation_printer())
    assert prepared is not None  # nothing asks it to stop; Ctrl-C raises instead
    print(f"{prepared.summary()}; kept in {embedding_cache(config.foundation).root}")
    return 0


def preparation_printer():
    """A callback printing preparation progress to stderr: every 10th slice embedded and
    every 50th pretraining step (and each stage's end)."""

    def show(step) -> None:
        every = 10 if step.stage == "embed" else 50
        if step.done % every and step.fraction < 1:
            return
        what = "slice" if step.stage == "embed" else "step"
        loss = "" if step.loss is None else f"  loss {step.loss:.3f}"
        print(
            f"prepare: {step.stage} {what} {step.done} ({100 * step.fraction:.0f}%) "
            f"{step.elapsed:.0f} s{loss}",
            file=sys.stderr,
            flush=True,
        )

    return show


def run_predict(args: argparse.Namespace) -> int:
    from napari_ssseg.annotation import AnnotatedVolume
    from napari_ssseg.io.nifti import read_labels, read_volume
    from napari_ssseg.model_store import load_model
    from napari_ssseg.tasks.outputs import write_prediction
    from napari_ssseg.tasks.predict import predict

    _positive("--passes", args.passes)
    if args.refine is not None and args.refine not in REFINE_MODES:
        raise CliError(f"--refine must be {', '.join(REFINE_MODES)}, not {args.refine!r}")
    check_output_folder(args.out)
    if (args.image is None) == (args.data is None):
        raise CliError("predict needs either an IMAGE or --data DIR")
    if args.data is not None:
        if args.labels is not None or args.annotated_slices or args.axis is not None:
            raise CliError("--labels, --annotated-slices and --axis need a single IMAGE")
        if args.refine is not None:
            raise CliError("--refine needs a single IMAGE (--data uses the model's default)")
        return predict_data_folder(args)
    if wants_cluster(args):
        raise CliError("--workers and --ray-address need --data DIR")
    model = load_model(args.model)
    image = read_volume(args.image)
    axis = parse_axis(args.axis) if args.axis is not None else None
    annotation = None
    if args.labels is not None:
        slices = parse_slices(args.annotated_slices) if args.annotated_slices else None
        labels = read_labels(args.labels, like=image)
        annotation = AnnotatedVolume.from_labels(image, labels, axis, slices)
    elif args.annotated_slices:
        raise CliError("--annotated-slices needs --labels")
    prediction = predict(
        model, image, annotation, axis, passes=args.passes, device=args.device, refine=args.refine
    )
    if prediction.refinement is not None:
        notice(prediction.refinement.summary())
    paths = write_prediction(prediction, image, args.out)
    for path in paths.values():
        print(path)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from napari_ssseg.demo import run_demo as demo

    demo(
        out_dir=args.out,
        sample=args.sample,
        organ=args.organ,
        k=args.k,
        config=_training_config(args, args.method),
    )
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from napari_ssseg.bench.runner import BenchSettings, run_benchmark

    settings = BenchSettings(
        data=args.data,
        split=args.split,
        protocol=args.protocol,
        k=args.k,
        labeled_cases=args.labeled_cases,
        train_split=args.train_split,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        max_volumes=args.max_volumes,
        first_volume=args.first_volume,
        axis=parse_axis(args.axis) if args.axis is not None else None,
        max_time=args.max_time,
        max_iters=args.max_iters,
        seed=args.seed,
        device=args.device,
        json_path=args.json,
        training=_settings_file(args.config),
    )
    chosen = sorted({"method", "teachers", "teachers_override"} & set(settings.training))
    if chosen:
        verb = "is" if len(chosen) == 1 else "are"
        raise CliError(
            f"{args.config}: {' and '.join(chosen)} {verb} given by --methods in a benchmark, "
            "not by a settings file"
        )
    run_benchmark(settings)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "prepare"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from napari_ssseg.errors import SsSegError

    try:
        threads = getattr(args, "threads", None)
        _positive("--threads", threads)
        if threads:
            import torch

            torch.set_num_threads(threads)
        if args.command == "train":
            return run_train(args, extra)
        if args.command == "prepare":
            return run_prepare(args, extra)
        if args.command == "predict":
            return run_predict(args)
        if args.command == "demo":
            return run_demo(args)
        return run_bench(args)
    except (CliError, SsSegError) as error:
        print(f"napari-ssseg: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-ssseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
