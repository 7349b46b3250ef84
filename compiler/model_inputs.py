"""A model's inputs as the compiler sees them (InputSpec), and samples of them keyed by input name (Dataset).

The records every reader of data shares: data.py (arrays, images) and text.py (sentences) both produce a
Dataset, and the graph frontends describe a model's inputs as InputSpecs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """A model input as the compiler sees it: name, shape (-1 = any size), dtype.

    channels_first: an NCHW image input (PyTorch-style ONNX); image folders are transposed to it.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    channels_first: bool = False


@dataclass(frozen=True)
class Dataset:
    """Samples keyed by model input name, with optional integer labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    origin: str

    @property
    def size(self) -> int:
        return next(iter(self.inputs.values())).shape[0]

    def take(self, start: int, stop: int | None = None) -> Dataset:
        """Samples [start:stop] (a view: datasets are never mutated)."""
        labels = None if self.labels is None else self.labels[start:stop]
        return Dataset({k: v[start:stop] for k, v in self.inputs.items()}, labels, self.origin)

    def subset(self, rows: np.ndarray) -> Dataset:
        """The samples at `rows` (integer indices), in that order (a copy)."""
        labels = None if self.labels is None else self.labels[rows]
        return Dataset({k: v[rows] for k, v in self.inputs.items()}, labels, self.origin)
