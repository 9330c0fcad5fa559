"""napari-ssseg: segment a 3-D volume from a few labelled slices.

The engine has no Qt dependency and can be driven headless through :mod:`napari_ssseg.cli`;
training and prediction run in a background process through :mod:`napari_ssseg.runner`,
projects autosave through :mod:`napari_ssseg.project_store`, foundation models (LiteMedSAM,
SAM) live in :mod:`napari_ssseg.foundation`. The napari side is thin: the reader, writer and
sample data in :mod:`napari_ssseg.napari_io` and the dock widget in :mod:`napari_ssseg.widgets`
(the only package that imports Qt).
"""

__version__ = "0.1.0"
