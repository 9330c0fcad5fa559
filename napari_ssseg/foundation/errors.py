"""Errors of the foundation-model layer (all :class:`~napari_ssseg.errors.SsSegError`)."""

from napari_ssseg.errors import SsSegError


class CheckpointError(SsSegError):
    """A checkpoint is missing, unverifiable, or its bytes do not match its model card."""
