"""A model's inputs as the compiler sees them (InputSpec), and samples of them keyed by input name (Dataset).

The records every reader of data shares: data.py (arrays, images) and text.py (sentences) both produce a
Dataset, and the graph frontends describe a model's inputs as InputSpecs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekiln.compiler.batches import release


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

    def in_memory(self) -> Dataset:
        """The samples read out of a memory-mapped file (data.py) into memory; in-memory arrays as they are."""
        inputs = {k: np.array(v) if isinstance(v, np.memmap) else v for k, v in self.inputs.items()}
        release(list(self.inputs.values()))  # the file's pages read for the copy leave the resident set
        return Dataset(inputs, self.labels, self.origin)

    def subset(self, rows: np.ndarray) -> Dataset:
        """The samples at `rows` (integer indices), in that order: a copy, except of a memory-mapped file
        (data.py) a view when they are evenly spaced (a cross-fitting fold): nothing of it is read until used."""
        mapped = any(isinstance(v, np.memmap) for v in self.inputs.values())
        picked = _as_slice(rows) if mapped else rows
        labels = None if self.labels is None else self.labels[picked]
        return Dataset({k: v[picked] for k, v in self.inputs.items()}, labels, self.origin)


def _as_slice(rows: np.ndarray) -> slice | np.ndarray:
    """Evenly spaced increasing indices as the slice that picks them; any other indices as they are."""
    if len(rows) < 2:
        return rows
    step = int(rows[1] - rows[0])
    if step > 0 and int(rows[0]) >= 0 and np.all(np.diff(rows) == step):
        return slice(int(rows[0]), int(rows[-1]) + 1, step)
    return rows
