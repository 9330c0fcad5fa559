"""Fuzzing with hypothesis: the NIfTI reader, the --annotated-slices / volume-group parsing of
the CLI and the annotation rules never fail with anything but our own errors."""

from __future__ import annotations

import gzip
import io
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from napari_ssseg.annotation import MIN_SLICE_SIDE, AnnotatedVolume, Project, slice_index
from napari_ssseg.cli import MAX_LISTED_SLICES, CliError, parse_slices, parse_volume_groups
from napari_ssseg.errors import AnnotationError, SsSegError
from napari_ssseg.io.nifti import read_labels, read_volume
from napari_ssseg.io.volume import Volume

FUZZ = settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
FUZZ_FILES = settings(FUZZ, max_examples=60)
"""Fewer examples where each one writes and reads files (about 20 ms each here)."""


def _valid_nifti_bytes() -> bytes:
    """A small valid uncompressed NIfTI-1 file (header 348 bytes + extension + data)."""
    img = nib.Nifti1Image(np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2), np.eye(4))
    return img.to_bytes()


VALID = _valid_nifti_bytes()


def _read_both(blob: bytes, suffix: str, labels: bool = False) -> None:
    """Read ``blob`` as a volume (and as labels); only SsSegError may come out."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(blob)
        for read in (read_volume, read_labels) if labels else (read_volume,):
            try:
                result = read(path)
            except SsSegError as error:
                message = str(error)
                assert message.startswith(str(path)) and "\n" not in message
            else:
                data = result.data if isinstance(result, Volume) else result
                assert data.ndim == 3 and np.all(np.isfinite(data))


@FUZZ_FILES
@given(st.binary(max_size=2048))
def test_reader_on_random_bytes(blob: bytes) -> None:
    _read_both(blob, ".nii")
    _read_both(blob, ".nii.gz")


@FUZZ_FILES
@example([(43, 128)])  # a negative first axis: numpy's mmap raised OverflowError
@given(st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), min_size=1, max_size=6))
def test_reader_on_mutated_header(changes: list[tuple[int, int]]) -> None:
    blob = bytearray(VALID)
    for offset, value in changes:
        blob[offset] = value
    _read_both(bytes(blob), ".nii", labels=True)
    _read_both(_gzip(bytes(blob)), ".nii.gz")


@FUZZ_FILES
@given(st.integers(1, len(VALID) - 1), st.integers(0, 2**32 - 1))
def test_reader_on_cut_or_flipped_gzip(cut: int, seed: int) -> None:
    packed = bytearray(_gzip(VALID))
    rng = np.random.default_rng(seed)
    flipped = bytearray(packed)
    flipped[int(rng.integers(10, len(packed)))] ^= 1 << int(rng.integers(0, 8))
    _read_both(bytes(packed[: cut % len(packed)]), ".nii.gz")
    _read_both(bytes(flipped), ".nii.gz")


def _gzip(blob: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as stream:
        stream.write(blob)
    return buffer.getvalue()


# --------------------------------------------------------------------------- CLI parsing


@FUZZ
@given(st.text(alphabet="0123456789-, x_٣\t", max_size=30))
def test_parse_slices_gives_indices_or_cli_error(text: str) -> None:
    try:
        slices = parse_slices(text)
    except CliError as error:
        assert str(error).startswith("--annotated-slices: ")
    else:
        assert slices and all(isinstance(i, int) and i >= 0 for i in slices)
        assert len(slices) <= MAX_LISTED_SLICES


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 5)), min_size=1, max_size=8))
def test_parse_slices_reads_back_what_was_written(parts: list[tuple[int, int]]) -> None:
    text = ",".join(f"{a}" if n == 0 else f"{a}-{a + n}" for a, n in parts)
    expected = [i for a, n in parts for i in range(a, a + n + 1)]
    assert parse_slices(text) == expected


TOKENS = st.sampled_from(
    ["a.nii.gz", "b.nii", "--labels", "--labels=l.nii.gz", "--annotated-slices", "1,3-4",
     "--annotated-slices=2", "--axis", "--axis=1", "0", "2", "7", "-x", "--lables", "x-y"]
)  # fmt: skip


@FUZZ
@given(st.lists(TOKENS, max_size=10))
def test_volume_groups_parse_or_cli_error(tokens: list[str]) -> None:
    try:
        specs = parse_volume_groups(tokens)
    except CliError as error:
        assert "\n" not in str(error)
    else:
        images = [t for t in tokens if not t.startswith("-")]
        assert len(specs) <= len(images)
        assert all(spec.axis in (None, 0, 1, 2) for spec in specs)


# --------------------------------------------------------------------------- annotation rules


@st.composite
def labelled_volumes(draw):
    shape = tuple(draw(st.integers(1, 6)) for _ in range(3))
    values = draw(st.integers(1, 4))
    labels = draw(st.lists(st.integers(0, values), min_size=int(np.prod(shape)),
                           max_size=int(np.prod(shape))))  # fmt: skip
    axis = draw(st.integers(0, 2))
    chosen = draw(st.none() | st.lists(st.integers(-2, 8), max_size=4))
    classes = draw(st.integers(1, 4))
    return np.array(labels, np.int16).reshape(shape), axis, chosen, classes


@FUZZ
@given(labelled_volumes())
def test_annotation_rules(case) -> None:
    labels, axis, chosen, classes = case
    image = Volume(np.zeros(labels.shape, np.float32), np.eye(4), name="fuzz")
    try:
        volume = AnnotatedVolume.from_labels(image, labels, axis, chosen)
    except AnnotationError as error:
        assert chosen is not None and "is out of range" in str(error)
        assert any(not 0 <= i < labels.shape[axis] for i in chosen)
        return
    painted = [i for i in range(labels.shape[axis]) if labels[slice_index(axis, i)].any()]
    if chosen is None:
        assert volume.annotated_slices == painted
    else:
        assert volume.annotated_slices == sorted(set(chosen))
        for i in set(range(labels.shape[axis])) - set(chosen):
            assert not volume.labels[slice_index(axis, i)].any()
    project = Project([volume], [f"c{i}" for i in range(1, classes + 1)])
    plane = [s for a, s in enumerate(labels.shape) if a != axis]
    try:
        project.validate()
    except AnnotationError as error:
        message = str(error)
        assert (
            volume.labels.max() > classes
            or not volume.annotated_slices
            or min(plane) < MIN_SLICE_SIDE
        ), message
        return
    assert volume.annotated_slices and min(plane) >= MIN_SLICE_SIDE
    assert volume.labels.max() <= classes
    found = project.annotated_values()
    warnings = project.warnings()
    only_background = not (found - {0})
    assert any("only background" in w for w in warnings) == only_background
    absent = [c for c in range(1, classes + 1) if c not in found]
    assert any("appears on no annotated slice" in w for w in warnings) == (
        bool(absent) and not only_background
    )


@pytest.mark.parametrize("text", ["1_0", "١٢", " , ", "1 2", "+3"])
def test_parse_slices_refuses_known_traps(text: str) -> None:
    with pytest.raises(CliError):
        parse_slices(text)
