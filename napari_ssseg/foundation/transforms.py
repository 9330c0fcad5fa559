"""Between a 2-D slice (H, W) and a foundation encoder's square input (3, S, S).

Two resize modes, chosen by the model card:

* ``longest_side_pad`` (SAM, LiteMedSAM): scale both axes by ``S / max(H, W)`` to (h, w), then
  pad bottom and right with zeros to (S, S). This is what the official SAM and LiteMedSAM
  inference code does.
* ``stretch`` (MedSAM): resize each axis to S independently.

Coordinates follow segment-anything: points are (x, y) = (column, row) in pixels, boxes are
(x0, y0, x1, y1); mapping a coordinate multiplies x by ``w / W`` and y by ``h / H`` (SAM's
``ResizeLongestSide.apply_coords``). Masks go back by upsampling the decoder's logits to S,
cropping the (h, w) region that holds the image, and resizing to (H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_ssseg.errors import InputError


@dataclass(frozen=True)
class SliceTransform:
    """The geometry linking one slice shape to one encoder input size.

    Attributes:
        slice_shape: (H, W) of the slice.
        input_size: S, side of the encoder input.
        resize: ``"longest_side_pad"`` or ``"stretch"``.
    """

    slice_shape: tuple[int, int]
    input_size: int
    resize: str = "longest_side_pad"

    def __post_init__(self) -> None:
        if len(self.slice_shape) != 2 or min(self.slice_shape) < 1:
            raise InputError(f"slice shape must be (H, W) with H, W >= 1, got {self.slice_shape}")
        if self.resize not in ("longest_side_pad", "stretch"):
            raise InputError(f"unknown resize mode {self.resize!r}")

    @property
    def resized_shape(self) -> tuple[int, int]:
        """(h, w): the part of the (S, S) input covered by the image."""
        height, width = self.slice_shape
        if self.resize == "stretch":
            return self.input_size, self.input_size
        scale = self.input_size / max(height, width)
        return int(height * scale + 0.5), int(width * scale + 0.5)

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Factors (x, y) from slice pixels to input pixels."""
        h, w = self.resized_shape
        return w / self.slice_shape[1], h / self.slice_shape[0]

    def image_to_input(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A slice (H, W) float in [0, 1] -> encoder input (3, S, S) float32 in [0, 1]."""
        tensor = torch.as_tensor(np.asarray(image, dtype=np.float32))
        if tuple(tensor.shape) != tuple(self.slice_shape):
            raise InputError(f"slice has shape {tuple(tensor.shape)}, expected {self.slice_shape}")
        if not torch.isfinite(tensor).all():
            raise InputError("slice contains NaN or infinite values")
        low, high = float(tensor.min()), float(tensor.max())
        if low < -1e-4 or high > 1 + 1e-4:
            raise InputError(
                f"slice values must be in [0, 1] (normalise intensities first), got [{low}, {high}]"
            )
        h, w = self.resized_shape
        resized = F.interpolate(
            tensor[None, None], size=(h, w), mode="bilinear", align_corners=False, antialias=True
        ).clamp_(0.0, 1.0)
        out = torch.zeros(1, 1, self.input_size, self.input_size)
        out[..., :h, :w] = resized
        return out[0].expand(3, -1, -1).contiguous()

    def points_to_input(self, points_xy: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Points (..., 2) as (x, y) slice pixels -> (..., 2) input pixels, float32."""
        sx, sy = self.scale_xy
        return torch.as_tensor(points_xy, dtype=torch.float32) * torch.tensor([sx, sy])

    def points_to_slice(self, points_xy: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`points_to_input`."""
        sx, sy = self.scale_xy
        return torch.as_tensor(points_xy, dtype=torch.float32) / torch.tensor([sx, sy])

    def boxes_to_input(self, boxes_xyxy: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Boxes (..., 4) as (x0, y0, x1, y1) slice pixels -> input pixels, float32."""
        sx, sy = self.scale_xy
        return torch.as_tensor(boxes_xyxy, dtype=torch.float32) * torch.tensor([sx, sy, sx, sy])

    def logits_to_slice(self, logits: torch.Tensor) -> torch.Tensor:
        """Decoder mask logits (B, 1, s, s) at any resolution -> (B, 1, H, W) in slice pixels."""
        if logits.ndim != 4:
            raise InputError(f"mask logits must be (B, 1, s, s), got {tuple(logits.shape)}")
        full = F.interpolate(
            logits, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
        )
        h, w = self.resized_shape
        return F.interpolate(
            full[..., :h, :w], size=self.slice_shape, mode="bilinear", align_corners=False
        )
