"""The specialist: a 2-D MONAI U-Net with dropout (needed for MC-dropout uncertainty)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from monai.networks.nets import UNet

if TYPE_CHECKING:
    from napari_ssseg.training.config import TrainConfig


def unet_for(config: TrainConfig, num_classes: int) -> UNet:
    """The U-Net of ``config`` (input channels, channels, dropout) for ``num_classes``
    foreground classes: the network every run, pretraining and saved model builds."""
    return build_unet(
        config.in_channels, num_classes, config.channels, config.dropout, config.dropout_shape
    )


def build_unet(
    in_channels: int,
    num_classes: int,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    dropout: float = 0.1,
    dropout_shape: str = "element",
) -> UNet:
    """U-Net mapping (B, in_channels, S, S) to (B, num_classes + 1, S, S) logits.

    S must be divisible by 2 ** (len(channels) - 1). Instance normalisation keeps train and
    eval behaviour identical, so MC-dropout only has to switch the dropout layers.
    ``dropout_shape`` "element" drops single activations; "channel" drops whole feature maps
    (``Dropout2d``), one random number per map instead of one per activation: on a CPU the
    per-activation draws take about a quarter of a step's forward and backward time.
    """
    net = UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes + 1,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        num_res_units=1,
        norm="instance",
        dropout=dropout,
    )
    if dropout_shape == "channel":
        _drop_whole_channels(net)
    elif dropout_shape != "element":
        raise ValueError(f"dropout_shape must be element or channel, not {dropout_shape!r}")
    return net


def _drop_whole_channels(net: torch.nn.Module) -> None:
    """Replace each ``Dropout`` of ``net`` by a ``Dropout2d`` of the same probability (MONAI's
    U-Net builds element-wise dropout only)."""
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, torch.nn.Dropout2d(child.p))


def set_dropout(model: torch.nn.Module, active: bool) -> None:
    """Put only the dropout layers in train (``active``) or eval mode."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.train(active)
