"""Mapping between a volume's slices and the square grid the network sees.

Slices are resized keeping their aspect ratio so the longer side is ``size`` and then padded
symmetrically to ``size x size``; :meth:`SliceGrid.to_source` undoes both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.transforms import Resize, SpatialCrop, SpatialPad
from monai.utils import convert_to_tensor


@dataclass(frozen=True)
class SliceGrid:
    """Geometry of one volume's slices.

    Attributes:
        source_shape: (H, W) of a slice in the volume.
        size: side S of the network's square input.
    """

    source_shape: tuple[int, int]
    size: int

    @property
    def resized_shape(self) -> tuple[int, int]:
        """(h, w) after the aspect-preserving resize; max(h, w) == size."""
        scale = self.size / max(self.source_shape)
        return tuple(max(1, int(round(s * scale))) for s in self.source_shape)  # type: ignore[return-value]

    @property
    def pad_before(self) -> tuple[int, int]:
        # SpatialPad(method="symmetric") puts floor(width / 2) before the data.
        return tuple((self.size - r) // 2 for r in self.resized_shape)  # type: ignore[return-value]

    def to_network(self, slices: torch.Tensor, nearest: bool = False) -> torch.Tensor:
        """(N, H, W) slices -> (N, S, S); ``nearest`` for label maps."""
        mode = "nearest" if nearest else "bilinear"
        resize = Resize(self.resized_shape, mode=mode, anti_aliasing=not nearest)
        pad = SpatialPad((self.size, self.size), method="symmetric")
        out = convert_to_tensor(pad(resize(slices.float())), track_meta=False)
        return out.to(slices.dtype if nearest else torch.float32)

    def to_source(self, maps: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) network maps -> (N, C, H, W) on the source slice grid (bilinear)."""
        start = self.pad_before
        end = tuple(s + r for s, r in zip(start, self.resized_shape, strict=True))
        crop = SpatialCrop(roi_start=start, roi_end=end)
        resize = Resize(self.source_shape, mode="bilinear", anti_aliasing=False)
        n, c = maps.shape[:2]
        flat = maps.reshape(n * c, *maps.shape[2:])
        out = convert_to_tensor(resize(crop(flat)), track_meta=False)
        return out.reshape(n, c, *self.source_shape)
