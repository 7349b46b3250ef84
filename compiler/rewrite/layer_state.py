"""One layer of the rewrite passes' working copy (LayerState): the record work.py holds and bn.py edits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LayerState:
    """One layer of the working copy: its class name, its config and its weights by variable name."""

    name: str
    kind: str
    config: dict[str, Any]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    shape: tuple[int | None, ...] = ()  # the layer's output shape in the model, batch excluded
    identity: bool = False  # y = x at inference (Dropout), or rewritten into a no-op: the converter drops it

    @property
    def rank(self) -> int:
        """Rank of the layer's output, batch included (0 when it is not called in the model)."""
        return len(self.shape) + 1 if self.shape else 0
