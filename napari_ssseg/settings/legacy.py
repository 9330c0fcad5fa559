"""Settings written flat by earlier versions (one object of 77 keys), read into sections.

Model folders, autosaves, job files and settings files made before the settings were split
by owner hold flat keys (``max_iters``, ``sam_refresh``...). Each maps to its section's field
(a few to two sections, whose defaults agree); keys of parts that were taken out after
losing on the benchmarks are accepted at the value that left them off and refused otherwise.
"""

from __future__ import annotations

from typing import Any

from napari_ssseg.errors import SsSegError

MOVED: dict[str, tuple[str, ...]] = {
    "teachers_override": ("teachers",),
    "image_size": ("student.image_size",),
    "channels": ("student.channels",),
    "dropout": ("student.dropout",),
    "lr": ("student.lr",),
    "weight_decay": ("student.weight_decay",),
    "intensity": ("student.intensity",),
    "max_iters": ("budget.max_iters",),
    "max_time": ("budget.max_time",),
    "ssl_start": ("budget.teacher_start",),
    "shape_start": ("budget.teacher_start",),
    "rampup": ("budget.rampup",),
    "teacher_gate_dice": ("budget.gate_dice",),
    "batch_size": ("batch.size",),
    "unlabelled_batch_size": ("batch.unlabelled",),
    "share_batch": ("batch.share",),
    "strong_view": ("batch.strong_view",),
    "teacher_refresh": ("batch.target_refresh",),
    "teacher_cache": ("batch.target_cache",),
    "consistency_weight": ("mean.weight",),
    "ema_decay": ("mean.ema_decay", "curriculum.ema_decay"),
    "teacher_passes": ("mean.passes", "curriculum.passes"),
    "teacher_noise": ("mean.noise",),
    "threshold_start": ("mean.threshold_start", "curriculum.threshold_start"),
    "threshold_end": ("mean.threshold_end", "curriculum.threshold_end"),
    "shape_weight": ("shape.weight",),
    "shape_margin_mm": ("shape.margin_mm",),
    "shape_range_mm": ("shape.range_mm",),
    "shape_extent": ("shape.extent",),
    "connect_refresh": ("curriculum.refresh",),
    "curriculum_start_fraction": ("curriculum.first_share",),
    "curriculum_weight": ("curriculum.weight",),
    "curriculum_slices": ("curriculum.slices",),
    "foundation_model": ("foundation.model",),
    "foundation_checkpoint": ("foundation.checkpoint",),
    "embedding_cache": ("foundation.embedding_cache",),
    "sam_weight": ("sam.weight",),
    "sam_refresh": ("sam.refresh",),
    "sam_slices": ("sam.slices",),
    "sam_lora_rank": ("sam.lora_rank",),
    "sam_lr": ("sam.lr",),
    "sam_tune_steps": ("sam.tune_steps",),
    "fused_weight": ("fused.weight",),
    "fused_members": ("fused.members",),
    "distill_weight": ("features.distill_weight",),
    "prototype_weight": ("features.prototype_weight",),
    "distill_slices": ("features.slices",),
    "distill_batch": ("features.batch",),
    "distill_components": ("features.components",),
    "prototype_confidence": ("features.prototype_confidence",),
    "pretrain_steps": ("features.pretrain_steps",),
    "cutmix": ("cutmix.on",),
    "cutmix_prob": ("cutmix.prob",),
    "cutmix_area": ("cutmix.area",),
    "cutmix_anneal": ("cutmix.anneal",),
    "inference_passes": ("prediction.passes",),
    "refine": ("prediction.refine",),
    "refine_trust": ("prediction.refine_trust",),
    "refine_agreement": ("prediction.refine_agreement",),
    "keep_connected": ("prediction.keep_connected",),
}
"""Flat keys of earlier versions -> the ``section.field`` settings that now hold them."""

REMOVED: dict[str, Any] = {
    "context": 0,
    "dropout_shape": "element",
    "consistency_loss": "mse",
    "flow_weight": 3.0,
    "flow_reach": 1,
    "flow_radius_mm": 15.0,
    "flow_sigma": 0.1,
    "flow_decay": 0.7,
    "connect_weight": 1.0,
    "sam_trust_dice": 0.0,
    "foundation_time_share": 1.0,
    "sam_time_share": 1.0,
    "refine_min_area": 0.0,
}
"""Keys of parts taken out (they lost or tied on the benchmarks, docs/method.md), with the
value that left them off."""

REMOVED_METHODS = ("flow", "connect")
REMOVED_TEACHERS = ("flow", "connect")


def is_flat(values: dict[str, Any]) -> bool:
    """Whether ``values`` holds keys of the flat layout (``cutmix`` as a value, not an
    object, is one)."""
    return any(
        key in REMOVED or (key in MOVED and not (key == "cutmix" and isinstance(value, dict)))
        for key, value in values.items()
    )


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every flat key moved to its section (keys already nested stay)."""
    out: dict[str, Any] = {}
    moved: dict[str, tuple[str, Any]] = {}
    for key, value in values.items():
        if key in REMOVED:
            if value != REMOVED[key]:
                raise SsSegError(
                    f"training setting {key} was removed (it lost on the benchmarks; "
                    "docs/method.md); leave it out"
                )
            continue
        if key not in MOVED or (key == "cutmix" and isinstance(value, dict)):
            out[key] = value
            continue
        for target in MOVED[key]:
            earlier = moved.get(target)
            if earlier is not None and earlier[1] != value:
                raise SsSegError(
                    f"training settings {earlier[0]} and {key} are now one setting, {target}; "
                    "give it once"
                )
            moved[target] = (key, value)
            section, _, field = target.partition(".")
            if field:
                out.setdefault(section, {})
                if not isinstance(out[section], dict):
                    raise SsSegError(f"training setting {section} must be an object")
                out[section][field] = value
            else:
                out[section] = value
    if out.get("method") in REMOVED_METHODS:
        raise SsSegError(
            f"method {out['method']} was removed (it lost on the benchmarks; docs/method.md)"
        )
    teachers = out.get("teachers")
    if isinstance(teachers, (list, tuple)) and set(teachers) & set(REMOVED_TEACHERS):
        gone = ", ".join(t for t in teachers if t in REMOVED_TEACHERS)
        raise SsSegError(f"teacher {gone} was removed (it lost on the benchmarks)")
    return out


def read(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` by section: as they are, or moved there from the flat layout."""
    return nested(values) if is_flat(values) else values
