"""What a teacher with state of its own needs from the other data-parallel copies of the loop.

DDP keeps the student identical on every copy (:mod:`napari_ssseg.training.replica`); a
teacher that holds more than a copy of the student (the foundation teacher: its embedding
cache and its LoRA adapters) keeps that identical with these few collectives:

- :meth:`Peers.gather_flags`: which copies hold which items (one bool per item);
- :meth:`Peers.exchange`: items made by one copy handed to every copy;
- :meth:`Peers.average_gradients`: gradients averaged over the copies that had one;
- :meth:`Peers.broadcast`: rank 0's tensors copied to every copy.

:class:`Peers` is the only copy (each call returns what it was given), so a teacher using it
runs exactly as on one process. :class:`GroupPeers` builds the four on three primitive
collectives; :class:`ProcessGroupPeers` implements those with the ``torch.distributed``
default process group, the one Ray Train sets up for every training worker (gloo on CPUs,
NCCL on GPUs). Every copy must make the same calls in the same order with the same item
counts, as with any collective.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import torch

from napari_ssseg.training.replica import RANK_SEED_STRIDE

NOBODY = -1
"""Owner of an item that every copy already holds: nothing to exchange."""


def assign_owners(present: np.ndarray) -> list[int]:
    """Which copy hands out each item, from ``present`` (W, N) bool: copy w holds item n.

    An item every copy holds needs nobody (:data:`NOBODY`); an item some copies hold comes
    from the lowest rank holding it (it is only read there); the items nobody holds are dealt
    out in turn, item k of them to rank k mod W, so the copies share the work of making them.
    """
    present = np.asarray(present, dtype=bool)
    world = present.shape[0]
    owners: list[int] = []
    dealt = 0
    for column in present.T:
        if column.all():
            owners.append(NOBODY)
        elif column.any():
            owners.append(int(np.argmax(column)))
        else:
            owners.append(dealt % world)
            dealt += 1
    return owners


class Peers:
    """The only copy of the training loop (rank 0 of 1): every collective is the identity."""

    rank: int = 0
    world_size: int = 1

    def seed(self, seed: int) -> int:
        """This copy's own seed (rank 0 keeps ``seed``, as :meth:`Replica.seed` does)."""
        return seed + RANK_SEED_STRIDE * self.rank

    def gather_flags(self, flags: Sequence[bool]) -> np.ndarray:
        """(W, N) bool: row w holds copy w's ``flags`` (N of them on every copy)."""
        return np.asarray(flags, dtype=bool)[None]

    def exchange(
        self,
        owners: Sequence[int],
        own: Callable[[int], torch.Tensor],
        receive: Callable[[int, torch.Tensor], None],
        shape: tuple[int, ...],
    ) -> None:
        """Hand every item to every copy: ``own(i)`` gives item i (float32 of ``shape``) on
        the copy that owns it (``owners[i]``); ``receive(i, item)`` is called on every other
        copy. Items owned by :data:`NOBODY` are skipped. The only copy owns everything."""
        return None

    def average_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> bool:
        """Replace each ``grad`` by its mean over the copies that computed gradients; returns
        whether any copy did (then every copy should take an optimiser step)."""
        return any(p.grad is not None for p in parameters)

    def broadcast(self, tensors: Sequence[torch.Tensor]) -> None:
        """Overwrite ``tensors`` in place with rank 0's."""
        return None


class GroupPeers(Peers, ABC):
    """A copy among ``world_size`` copies, built on three collectives of equal-shaped tensors
    (:meth:`all_gather`, :meth:`all_reduce_sum`, :meth:`broadcast_from_rank_zero`) on
    :attr:`device`."""

    device = torch.device("cpu")

    @abstractmethod
    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every copy's ``tensor`` (same shape everywhere), by rank."""

    @abstractmethod
    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over copies of ``tensor``."""

    @abstractmethod
    def broadcast_from_rank_zero(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``tensor``."""

    def gather_flags(self, flags: Sequence[bool]) -> np.ndarray:
        mine = torch.tensor([bool(f) for f in flags], dtype=torch.uint8, device=self.device)
        return torch.stack(self.all_gather(mine)).cpu().numpy().astype(bool)

    def exchange(
        self,
        owners: Sequence[int],
        own: Callable[[int], torch.Tensor],
        receive: Callable[[int, torch.Tensor], None],
        shape: tuple[int, ...],
    ) -> None:
        # Round r: every copy sends its r-th owned item (zeros once it has none left), so at
        # most W items are in flight at a time whatever the number of items.
        owned = [[i for i, o in enumerate(owners) if o == rank] for rank in range(self.world_size)]
        blank = torch.zeros(shape, dtype=torch.float32, device=self.device)
        for round_ in range(max(len(items) for items in owned)):
            mine = owned[self.rank][round_] if round_ < len(owned[self.rank]) else None
            sent = blank if mine is None else own(mine).to(self.device, torch.float32)
            rows = self.all_gather(sent.contiguous())
            for rank, row in enumerate(rows):
                if rank != self.rank and round_ < len(owned[rank]):
                    receive(owned[rank][round_], row.cpu())

    def average_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> bool:
        parameters = list(parameters)
        had = any(p.grad is not None for p in parameters)
        pieces = [
            (p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten()
            for p in parameters
        ]
        # The last entry counts the copies that had gradients.
        pieces.append(torch.tensor([float(had)]))
        flat = self.all_reduce_sum(torch.cat([q.to(self.device, torch.float32) for q in pieces]))
        contributors = int(round(float(flat[-1])))
        if contributors == 0:
            return False
        offset = 0
        for p in parameters:
            count = p.numel()
            mean = flat[offset : offset + count] / contributors
            p.grad = mean.view_as(p).to(p.device, p.dtype).clone()
            offset += count
        return True

    def broadcast(self, tensors: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            for tensor in tensors:
                sent = tensor.detach().to(self.device).contiguous()
                tensor.copy_(self.broadcast_from_rank_zero(sent).to(tensor.device))


class ProcessGroupPeers(GroupPeers):
    """A copy in the initialised ``torch.distributed`` default process group."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self._dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        # NCCL moves only CUDA tensors; gloo takes CPU tensors.
        if dist.get_backend() == "nccl":
            self.device = torch.device("cuda", torch.cuda.current_device())

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        rows = [torch.empty_like(tensor) for _ in range(self.world_size)]
        self._dist.all_gather(rows, tensor)
        return rows

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        self._dist.all_reduce(tensor, op=self._dist.ReduceOp.SUM)
        return tensor

    def broadcast_from_rank_zero(self, tensor: torch.Tensor) -> torch.Tensor:
        self._dist.broadcast(tensor, src=0)
        return tensor


def default_peers() -> Peers:
    """The copies this process trains among: :class:`ProcessGroupPeers` inside an initialised
    ``torch.distributed`` process group of more than one process (a Ray Train worker of a
    data-parallel run), otherwise the only copy."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return ProcessGroupPeers()
    return Peers()
