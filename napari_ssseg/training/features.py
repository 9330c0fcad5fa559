"""The student U-Net's decoder features, captured during its ordinary forward pass, and the
trainable projector that maps them into the foundation model's embedding space.

The captured layer is the outermost skip connection of MONAI's UNet: the concatenation of the
first encoder level's output with the decoder's upsampled answer to it, (B, C, S/2, S/2), the
last feature map before the output head. It is the finest decoder feature map, and at the
default ``image_size`` 128 it has the 64 x 64 grid of a Segment-Anything image embedding.

A forward hook records that output only inside :meth:`FeatureTap.capture`, so the teachers'
own passes through the student (MC dropout, refreshes, the agreement probe) are not recorded
and no second pass is needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from monai.networks.layers import SkipConnection
from monai.networks.nets import UNet
from torch import nn

from napari_ssseg.errors import SsSegError


def decoder_feature_layer(unet: UNet) -> SkipConnection:
    """The outermost :class:`SkipConnection` of ``unet`` (output (B, C, S/2, S/2))."""
    layer = unet.model[1]
    if not isinstance(layer, SkipConnection):
        raise SsSegError(
            f"cannot find the U-Net's decoder features: expected a skip connection, "
            f"found {type(layer).__name__}"
        )
    return layer


def decoder_feature_channels(channels: Sequence[int]) -> int:
    """C of :func:`decoder_feature_layer`'s output for a U-Net with ``channels`` per level:
    the first level's features plus what comes up from below (MONAI ``UNet._create_block``)."""
    if len(channels) > 2:
        return 2 * channels[0]
    return channels[0] + channels[1]


class FeatureTap:
    """Records a module's output while :meth:`capture` is open.

    Attributes:
        features: the last recorded output (with its autograd graph), or None.
    """

    def __init__(self, module: nn.Module) -> None:
        self.features: torch.Tensor | None = None
        self._recording = False
        self._handle = module.register_forward_hook(self._record)

    def _record(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if self._recording:
            self.features = output

    @contextmanager
    def capture(self) -> Iterator[FeatureTap]:
        """Record the module's outputs inside the block (the last one is kept)."""
        self.features = None
        self._recording = True
        try:
            yield self
        finally:
            self._recording = False

    def take(self) -> torch.Tensor:
        """The recorded features, released from the tap (raises if nothing was recorded)."""
        if self.features is None:
            raise SsSegError("no U-Net features were recorded during the forward pass")
        features, self.features = self.features, None
        return features

    def remove(self) -> None:
        """Unhook from the module."""
        self._handle.remove()


class FeatureProjector(nn.Module):
    """Two 1 x 1 convolutions: student features (B, C, h, w) -> (B, D, h, w), D = the
    embedding bank's channels (256 for Segment Anything, ``distill_components`` once the bank
    is reduced). Training-only: never part of the saved U-Net."""

    def __init__(self, in_channels: int, out_channels: int = 256) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
            nn.GELU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)
