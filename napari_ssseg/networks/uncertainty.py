"""Predictive uncertainty from MC-dropout passes."""

from __future__ import annotations

import math

import torch

from napari_ssseg.networks.unet import set_dropout


def normalised_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of class probabilities (B, K, ...) divided by log K: (B, ...) in [0, 1]."""
    num_classes = probs.shape[1]
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1)
    return (entropy / math.log(num_classes)).clamp(0.0, 1.0)


@torch.no_grad()
def mc_dropout_probs(
    model: torch.nn.Module, inputs: torch.Tensor, passes: int, noise_std: float = 0.0
) -> torch.Tensor:
    """Mean softmax over ``passes`` dropout samples: (B, C, S, S) inputs -> (B, K, S, S).

    All passes run as one batch. ``noise_std`` adds clamped Gaussian input noise per pass
    (the teacher perturbation of uncertainty-aware mean teacher).
    """
    was_training = model.training
    model.eval()
    set_dropout(model, True)
    try:
        batch = inputs.repeat(passes, *([1] * (inputs.dim() - 1)))
        if noise_std > 0:
            batch = batch + (torch.randn_like(batch) * noise_std).clamp(
                -2 * noise_std, 2 * noise_std
            )
        probs = torch.softmax(model(batch), dim=1)
        return probs.reshape(passes, *inputs.shape[:1], *probs.shape[1:]).mean(dim=0)
    finally:
        model.train(was_training)
        if not was_training:
            set_dropout(model, False)


def slice_uncertainty_scores(uncertainty: torch.Tensor) -> torch.Tensor:
    """Per-slice review score: mean voxel uncertainty of each slice, (Z, H, W) -> (Z,).

    Within one volume every slice has the same size, so this ranks slices by their total
    uncertain area.
    """
    return uncertainty.flatten(1).mean(dim=1)
