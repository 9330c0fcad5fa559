"""Benchmark measures: per-class 3-D Dice (via MONAI) and their aggregation, and the peak
memory of a step.

Label volumes are int arrays of shape (X, Y, Z) with classes 1..C and 0 for background.
"""

from __future__ import annotations

import os
import resource
import threading
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.networks.utils import one_hot

from napari_ssseg.errors import InputError


def _one_hot(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """(X, Y, Z) class indices -> (1, C + 1, X, Y, Z) float one-hot, background in channel 0."""
    indices = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))[None, None]
    return one_hot(indices, num_classes=num_classes + 1, dim=1)


def dice_per_class(
    pred: np.ndarray,
    ref: np.ndarray,
    num_classes: int,
    exclude_slices: Sequence[int] = (),
    axis: int = 2,
) -> np.ndarray:
    """3-D Dice of each class 1..C over every slice along ``axis`` except ``exclude_slices``.

    The kept slices are scored together as one sub-volume (one Dice per class, not a mean
    over slices); excluding the annotated slices keeps the score on what the method inferred.

    Args:
        pred: predicted labels, int (X, Y, Z).
        ref: reference labels, same shape.
        num_classes: C.
        exclude_slices: slice indices along ``axis`` left out of the score.
        axis: the slicing axis.

    Returns:
        float64 array of shape (C,). A class absent from the reference in the scored region is
        NaN, even when the prediction has it (MONAI's ``ignore_empty``): such a class has no
        defined overlap, and :func:`mean_dice` skips it.
    """
    if pred.shape != ref.shape or pred.ndim != 3:
        raise InputError(f"pred {pred.shape} and ref {ref.shape} must be 3-D of the same shape")
    if axis not in (0, 1, 2):
        raise InputError(f"axis must be 0, 1 or 2, got {axis}")
    for name, labels in (("pred", pred), ("ref", ref)):
        if labels.size and (labels.min() < 0 or labels.max() > num_classes):
            raise InputError(
                f"{name} holds labels {labels.min()}..{labels.max()}, expected 0..{num_classes}"
            )
    depth = pred.shape[axis]
    excluded = sorted({int(i) for i in exclude_slices})
    bad = [i for i in excluded if not 0 <= i < depth]
    if bad:
        raise InputError(f"excluded slices {bad} are outside 0..{depth - 1} on axis {axis}")
    if len(excluded) == depth:
        raise InputError("every slice is excluded: nothing left to score")
    pred_kept = np.delete(pred, excluded, axis=axis)
    ref_kept = np.delete(ref, excluded, axis=axis)
    scores = compute_dice(
        _one_hot(pred_kept, num_classes),
        _one_hot(ref_kept, num_classes),
        include_background=False,
        ignore_empty=True,
    )
    return scores[0].double().numpy()


def mean_dice(per_class: np.ndarray | Sequence[float]) -> float:
    """Mean over classes ignoring NaN; NaN when every entry is NaN (or there is none)."""
    values = np.asarray(per_class, dtype=np.float64)
    if values.size == 0 or np.all(np.isnan(values)):
        return float("nan")
    return float(np.nanmean(values))


def summarise(values: Sequence[float]) -> tuple[float, float]:
    """(mean, population std) over volumes, ignoring NaN; (nan, nan) if nothing is finite."""
    array = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        # All-NaN input is an expected outcome here (it yields NaN), not a problem to report.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(array)), float(np.nanstd(array))


MIB = 1024 * 1024


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (its high-water mark), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mib() -> float | None:
    """Resident memory of this process now, in MiB; None where /proc is not available."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


class PeakMemory:
    """Peak resident memory of this process while a ``with`` block runs, in MiB.

    The process's high-water mark (``ru_maxrss``) gives the block's peak exactly when the
    block raised it. When an earlier step had reached more, the high-water mark says nothing
    about the block, so a thread samples the current RSS every ``interval`` seconds and the
    largest sample is the peak (a lower bound: a spike shorter than the interval can be
    missed; ``exact`` is False then).

    Attributes (after the block):
        before_mib: RSS when the block started (what it inherited).
        peak_mib: peak RSS during the block.
        exact: True when ``peak_mib`` is the kernel's high-water mark.
    """

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.before_mib = 0.0
        self.peak_mib = 0.0
        self.exact = False
        self._sampled = 0.0
        self._high_water = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            now = current_rss_mib()
            if now is not None:
                self._sampled = max(self._sampled, now)

    def __enter__(self) -> PeakMemory:
        now = current_rss_mib()
        self.before_mib = now if now is not None else peak_rss_mib()
        self._sampled = self.before_mib
        self._high_water = peak_rss_mib()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        now = current_rss_mib()
        if now is not None:
            self._sampled = max(self._sampled, now)
        high_water = peak_rss_mib()
        self.exact = high_water > self._high_water
        # The kernel updates the high-water mark lazily: it may lag the RSS read from /proc
        # by a fraction of a MiB, so the peak is never taken below a sample (or the start).
        self.peak_mib = max(high_water, self._sampled) if self.exact else self._sampled

    def as_dict(self) -> dict:
        """JSON fields: ``peak_rss_mib``, ``rss_before_mib``, ``peak_rss_exact``."""
        return {
            "peak_rss_mib": round(self.peak_mib, 1),
            "rss_before_mib": round(self.before_mib, 1),
            "peak_rss_exact": self.exact,
        }
