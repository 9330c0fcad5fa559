"""Settings, torch-free: every preset and the sections of a run's settings, each owned by the
part it configures (see :mod:`~napari_ssseg.settings.config`)."""

from napari_ssseg.settings.config import TrainConfig
from napari_ssseg.settings.presets import DEFAULT_METHOD, PRESETS, parse_method

__all__ = ["DEFAULT_METHOD", "PRESETS", "TrainConfig", "parse_method"]
