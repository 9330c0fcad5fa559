"""The UnCoL dual teacher: an EMA teacher of the student and the frozen foundation model both
supervise, their pseudo-labels fused per pixel by the lower uncertainty.

Each member teacher keeps doing its own work (the mean teacher follows the student, the
foundation teacher refreshes its masks every ``sam_refresh`` steps); this teacher asks every
member for its targets on the same slices and hands the loop one target per slice
(:func:`fuse_targets`), so the student sees a single loss term, ``fused``, instead of two that
may pull in opposite directions on the same pixel.

Confidence is each member's own: the mean teacher's is 1 - normalised predictive entropy of
its MC-dropout probabilities, the foundation teacher's is its certainty (halved where it
disagrees with the student), and 0 on slices it has not refreshed, so there the mean teacher
fills in on its own.
"""

from __future__ import annotations

import torch

from napari_ssseg.data.slices import SliceRef
from napari_ssseg.settings.teachers import FusedSettings
from napari_ssseg.training.losses import weighted_pseudo_label_loss
from napari_ssseg.training.teachers.base import Teacher


def fuse_targets(targets: list[torch.Tensor]) -> torch.Tensor:
    """One target from several teachers' targets on the same slices.

    Args:
        targets: M >= 1 tensors (B, K + 1, S, S), each K class probabilities then a
            confidence channel in [0, 1].

    Returns:
        (B, K + 1, S, S): per pixel, the probabilities of the member with the highest
        confidence (the earlier member on ties); its confidence times (1 - c) for every
        other member whose argmax class differs and whose confidence is c.

    Why this confidence: read each confidence as the chance that member is right. Members that
    agree on the class back each other, so the winner's confidence stands (the higher of the
    two, never less than either alone). Members that disagree cannot both be right; the chance
    that the winner is right and the other wrong, taking them as independent, is
    c_win * (1 - c_lose): a silent member (c = 0) leaves the winner as it is, while a conflict
    between two confident members (0.9 against 0.8: 0.18) is taught only weakly, since the
    student should not be pushed hard toward either side of a real disagreement.
    """
    if not targets:
        raise ValueError("fuse_targets needs at least one target")
    fused = targets[0]
    for target in targets[1:]:
        higher = target[:, -1:] > fused[:, -1:]  # strict: ties keep the earlier member
        fused = torch.where(higher, target, fused)
    winner_class = fused[:, :-1].argmax(dim=1)  # (B, S, S)
    confidence = fused[:, -1]
    for target in targets:
        disagrees = target[:, :-1].argmax(dim=1) != winner_class
        confidence = confidence * torch.where(disagrees, 1.0 - target[:, -1], 1.0)
    return torch.cat([fused[:, :-1], confidence[:, None]], dim=1)


class FusedTeacher(Teacher):
    """Several teachers' targets fused per pixel by their confidence (:func:`fuse_targets`).

    A member counts from its own ``start``: before that it is neither prepared nor asked for
    targets. The fused teacher starts with its earliest member, covers the union of what its
    started members cover, and its ``version`` moves whenever a member's does or a member
    starts, so the loop's cached targets are recomputed then.
    """

    name = "fused"

    def __init__(self, members: list[Teacher], settings: FusedSettings):
        if not members:
            raise ValueError("a fused teacher needs at least one member teacher")
        self.members = list(members)
        self.settings = settings
        first = min(self.members, key=lambda member: member.start)
        self.schedule = first.schedule
        self.started: list[Teacher] = []

    @property
    def version(self) -> int:
        # Members' versions and the started count only grow, so any change raises the sum.
        return sum(member.version for member in self.members) + len(self.started)

    def covers(self) -> list[SliceRef]:
        """The union of the started members' covers (of all members before the first step,
        which is what tells whether the teacher has anything to teach), in member order."""
        members = self.started or self.members
        return list(dict.fromkeys(ref for member in members for ref in member.covers()))

    def prepare(self, student: torch.nn.Module, iteration: int, fraction: float) -> None:
        """Prepare every member whose start has come, in member order (the same calls on every
        data-parallel copy, as the foundation teacher's collectives need)."""
        self.started = [member for member in self.members if fraction >= member.start]
        for member in self.started:
            member.prepare(student, iteration, fraction)

    def targets(self, refs: list[SliceRef]) -> torch.Tensor:
        """(B, K + 1, S, S) fused targets of the started members (all of them if
        :meth:`prepare` has not run yet)."""
        members = self.started or self.members
        return fuse_targets([member.targets(refs) for member in members])

    def loss(
        self, logits: torch.Tensor, target: torch.Tensor, fraction: float
    ) -> tuple[torch.Tensor, float]:
        """CE toward the fused argmax weighted per pixel by the fused confidence, weighted by
        ``weight`` with the ramp-up from :attr:`start`."""
        ramp = self.schedule.ramp(fraction)
        loss = weighted_pseudo_label_loss(logits, target[:, :-1], target[:, -1])
        return loss, self.settings.weight * ramp

    def update(self, student: torch.nn.Module) -> None:
        for member in self.members:
            member.update(student)

    def parts(self) -> list[Teacher]:
        return [part for member in self.members for part in member.parts()]
