"""Normalization: the affine map from raw values to model inputs, stored in every model so queries match training."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SiameseError


@dataclass(frozen=True)
class Normalization:
    """x_normalised = (x_raw - offset) / scale, stored in every model so queries get the same transform."""

    offset: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "offset", float(self.offset))
            object.__setattr__(self, "scale", float(self.scale))
        except (TypeError, ValueError) as exc:
            raise SiameseError(f"invalid normalization offset={self.offset!r}, scale={self.scale!r}; "
                               "expected numbers") from exc
        if not (math.isfinite(self.offset) and math.isfinite(self.scale) and self.scale > 0):
            raise SiameseError(f"invalid normalization offset={self.offset}, scale={self.scale}; "
                               "expected finite numbers with scale > 0")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.offset).div_(self.scale)  # = (x - offset) / scale with one new tensor, not two

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset

    def to_dict(self) -> dict[str, float]:
        return {"offset": float(self.offset), "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalization:
        if not isinstance(d, Mapping) or set(d) != {"offset", "scale"}:
            raise SiameseError(f"invalid normalization {d!r}; expected a dict with exactly 'offset' and 'scale'")
        return cls(d["offset"], d["scale"])
