"""The shapes the calibration / evaluation data imply, for sources whose inputs have dynamic axes (ONNX
exports with dynamic height and width); the shapes a user gives are compiler/input_shapes.py's.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def data_shapes(paths: dict[str, str | None]) -> dict[str, dict[str, tuple[int, ...]]]:
    """Per data role ('calibration data', 'evaluation data'), the shape of one sample of each array, keyed
    as the file keys it (.npz: array names, labels `y` left out; .npy: `x`). An image folder has no shape
    of its own (it is resized to the model's input) and an unreadable file is left to data.py to report:
    neither is listed."""
    found = {}
    for role, path in paths.items():
        arrays = _array_shapes(Path(path)) if path else None
        if arrays:
            found[role] = {key: shape[1:] for key, shape in arrays.items() if len(shape) > 1}
    return found


def sequence_shapes(model_path: Path, seq_len: int) -> dict[str, dict[str, tuple[int, ...]]]:
    """For text data (no arrays to read a shape from): `seq_len` tokens per sample for every input of the ONNX
    model (ids, attention mask, token types), which closes an exported encoder's open sequence axis."""
    import onnx

    inputs = onnx.load(str(model_path), load_external_data=False).graph.input
    return {f"--seq-len {seq_len}": {i.name: (seq_len,) for i in inputs}}


def _array_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    try:
        if path.suffix == ".npy":
            return {"x": tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)}
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {k: tuple(archive[k].shape) for k in archive.files if k != "y"}
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    return None

