"""Feature distillation before any label, as a job of its own.

A run with ``pretrain_steps`` spends its first steps pulling the student's decoder features
toward the foundation encoder's embeddings (:meth:`FeatureAlignment.pretrain`), inside its
own time. Those steps need the images only, so they can run earlier, while the user is still
labelling, as the embeddings do: :func:`pretrain_student` makes that student, and a run given
it (``train(..., pretrained=...)``) starts from it and spends its whole budget on labelled
steps. A warm-started retrain starts from its previous model instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from monai.utils import set_determinism

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.data.pool import SlicePool
from napari_ssseg.errors import SsSegError
from napari_ssseg.networks.device import resolve_device
from napari_ssseg.networks.unet import unet_for
from napari_ssseg.settings import TrainConfig


@dataclass
class PretrainedStudent:
    """A U-Net after feature distillation alone.

    Attributes:
        state_dict: the U-Net's weights (CPU tensors), for ``num_classes`` output classes
            (background included); the output layer is as initialised (no label taught it).
        steps: distillation steps done.
        num_classes: K + 1.
    """

    state_dict: dict[str, torch.Tensor]
    steps: int
    num_classes: int


def pretrain_student(
    project: Project,
    config: TrainConfig,
    keep_going: Callable[[], bool] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> PretrainedStudent:
    """``features.pretrain_steps`` steps of feature distillation on the images of ``project``'s
    volumes, from the same initial U-Net as a run of ``config`` builds (for ``project``'s
    classes).

    The labels are not read: the feature bank is ``features.slices`` slices evenly spread over
    all slices, whatever the user has labelled, so the student made while the user labels is
    the one the run gets. Reads the bank's embeddings through ``config``'s embedding cache
    (made there if missing). ``keep_going`` is asked before each step; ``on_step(done,
    loss)`` follows each.
    """
    from napari_ssseg.training.feature_alignment import feature_alignment_for

    config.validate()
    steps = config.features.pretrain_steps
    if steps <= 0:
        raise SsSegError("features.pretrain_steps is 0: there is nothing to pretrain")
    set_determinism(seed=config.seed)  # the initial network of a run with this seed
    device = resolve_device(config.device)
    pool = SlicePool(label_free(project), config.student.image_size, config.student.intensity)
    model = unet_for(config.student, project.num_classes)
    model.to(device).train()
    alignment = feature_alignment_for(config, model, pool, [], device, config.seed)
    try:
        steps = alignment.pretrain(model, steps, keep_going or (lambda: True), on_step)
    finally:
        alignment.close()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return PretrainedStudent(state, steps, project.num_classes + 1)


def label_free(project: Project) -> Project:
    """``project``'s volumes with no slice annotated (same images, axes and classes)."""
    volumes = [AnnotatedVolume.unlabelled(v.image, v.axis) for v in project.volumes]
    return Project(volumes, list(project.class_names))
