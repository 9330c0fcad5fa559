"""The specialist: a 2-D MONAI U-Net with dropout (needed for MC-dropout uncertainty)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import UNet

from napari_ssseg.settings.student import StudentSettings


def unet_for(student: StudentSettings, num_classes: int) -> UNet:
    """The U-Net of ``student`` (channels, dropout) for ``num_classes`` foreground classes:
    the network every run, pretraining and saved model builds."""
    return build_unet(1, num_classes, student.channels, student.dropout)


def build_unet(
    in_channels: int,
    num_classes: int,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    dropout: float = 0.1,
) -> UNet:
    """U-Net mapping (B, in_channels, S, S) to (B, num_classes + 1, S, S) logits.

    S must be divisible by 2 ** (len(channels) - 1). Instance normalisation keeps train and
    eval behaviour identical, so MC-dropout only has to switch the dropout layers.
    """
    return UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes + 1,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        num_res_units=1,
        norm="instance",
        dropout=dropout,
    )


def set_dropout(model: torch.nn.Module, active: bool) -> None:
    """Put only the dropout layers in train (``active``) or eval mode."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.train(active)
