"""napari-ssseg: segment a 3-D volume from a few labelled slices.

The engine (everything except :mod:`napari_ssseg.widgets`) has no Qt dependency and can be
driven headless through :mod:`napari_ssseg.cli`.
"""

__version__ = "0.1.0"
