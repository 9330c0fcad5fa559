"""napari-ssseg: segment a 3-D volume from a few labelled slices.

The engine has no Qt dependency and can be driven headless through :mod:`napari_ssseg.cli`;
napari's reader, writer and sample data live in :mod:`napari_ssseg.napari_io`.
"""

__version__ = "0.1.0"
