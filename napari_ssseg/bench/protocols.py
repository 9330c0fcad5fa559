"""Benchmark protocol: which slices the "clinician" labels, what the method sees, case splits.

A label volume is an int array of shape (X, Y, Z) with classes 1..C and 0 for background;
slices are taken along ``axis``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from napari_ssseg.errors import AnnotationError, InputError


def _check_axis(labels: np.ndarray, axis: int) -> None:
    """Raise InputError unless ``labels`` is 3-D and ``axis`` one of its axes."""
    if labels.ndim != 3:
        raise InputError(f"labels must be a 3-D array, got shape {labels.shape}")
    if axis not in (0, 1, 2):
        raise InputError(f"axis must be 0, 1 or 2, got {axis}")


def sparse_slice_indices(labels: np.ndarray, axis: int, k: int) -> list[int]:
    """The k annotated slices of the benchmark, at the quantiles of the foreground extent.

    Let z0 and z1 be the first and last slice along ``axis`` holding foreground (labels > 0,
    any class) and n = z1 - z0 + 1. Treating slice j as the unit interval [j, j + 1), the
    quantile (i + 0.5) / k of [z0, z1 + 1) falls in slice

        slice_i = z0 + floor((2 i + 1) n / (2 k)),   i = 0 .. k - 1,

    computed in integers (no rounding ties). Consecutive positions are n / k apart, so the k
    slices are distinct whenever k <= n; for k > n every slice z0..z1 is returned (n of them).
    Example: foreground on slices 10..29 (n = 20), k = 2 -> [15, 25].

    Args:
        labels: int array (X, Y, Z).
        axis: the slicing axis.
        k: number of slices wanted, >= 1.

    Returns:
        Sorted distinct slice indices.
    """
    _check_axis(labels, axis)
    if k < 1:
        raise AnnotationError(f"the number of annotated slices must be at least 1, got {k}")
    others = tuple(a for a in range(3) if a != axis)
    present = np.flatnonzero(np.any(labels > 0, axis=others))
    if present.size == 0:
        raise AnnotationError("the label volume has no foreground: no slice can be chosen")
    z0, z1 = int(present[0]), int(present[-1])
    n = z1 - z0 + 1
    if k >= n:
        return list(range(z0, z1 + 1))
    return [z0 + ((2 * i + 1) * n) // (2 * k) for i in range(k)]


def reveal_slices(labels: np.ndarray, annotated: Sequence[int], axis: int) -> np.ndarray:
    """Copy of ``labels`` (X, Y, Z) keeping only the ``annotated`` slices along ``axis``.

    This is everything the method under test is given: all other slices are 0.
    """
    _check_axis(labels, axis)
    depth = labels.shape[axis]
    keep = sorted({int(i) for i in annotated})
    bad = [i for i in keep if not 0 <= i < depth]
    if bad:
        raise AnnotationError(f"annotated slices {bad} are outside 0..{depth - 1} on axis {axis}")
    revealed = np.zeros_like(labels)
    index: list[slice | list[int]] = [slice(None)] * 3
    index[axis] = keep
    revealed[tuple(index)] = labels[tuple(index)]
    return revealed


def acdc_patient(name: str) -> str:
    """ACDC case key: ``"patient099_frame01"`` -> ``"patient099"``; other names unchanged."""
    head, sep, _ = name.partition("_frame")
    return head if sep else name


def cases_split(
    case_names: list[str], labeled_cases: int, case_key: Callable[[str], str]
) -> tuple[list[str], list[str]]:
    """Split volume names into labelled and unlabelled ones, whole cases at a time.

    Names are grouped into cases by ``case_key``; the first ``labeled_cases`` distinct cases,
    in order of first appearance, are labelled (all their names), the rest are unlabelled.
    Both lists keep the order of ``case_names``.
    """
    cases = list(dict.fromkeys(case_key(name) for name in case_names))
    if not 0 <= labeled_cases <= len(cases):
        raise AnnotationError(
            f"asked for {labeled_cases} labelled cases but only {len(cases)} are available"
        )
    chosen = set(cases[:labeled_cases])
    labelled = [name for name in case_names if case_key(name) in chosen]
    unlabelled = [name for name in case_names if case_key(name) not in chosen]
    return labelled, unlabelled
