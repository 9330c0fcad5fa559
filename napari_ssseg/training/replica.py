"""Where one copy of the training loop stands among data-parallel copies.

The loop asks its :class:`Replica` three things: which random streams to draw from (each copy
draws its own slices), how to wrap the network for the forward pass (DDP averages the
gradients across copies), and what all copies agree on before each step (the progress
fraction, whether to stop, whether the teachers may start), so every copy takes the same
number of steps, with the same teachers, and none waits forever in a collective. The default
replica is the only copy: the loop then runs exactly as on one process.
"""

from __future__ import annotations

import torch

RANK_SEED_STRIDE = 100_003
"""Seed offset between ranks: rank r > 0 draws from seed + r * stride, rank 0 from the seed."""


class Replica:
    """The only copy of the loop (rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1

    @property
    def reports(self) -> bool:
        """Whether this copy reports progress and returns the model (rank 0)."""
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """The seed of this copy's own random streams (slice draws, augmentation, dropout);
        rank 0 keeps ``seed``, so one copy behaves like the single-process loop."""
        return seed + RANK_SEED_STRIDE * self.rank

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to run the training forward pass through (gradient averaging)."""
        return model

    def agree(self, fraction: float, stop: bool) -> tuple[float, bool]:
        """The largest progress fraction and whether any copy asked to stop."""
        return fraction, stop

    def all_agree(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every copy."""
        return flag
