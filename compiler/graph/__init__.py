"""Working graphs: one adapter per framework; the only code that touches a framework's model API.

`LOADERS` maps a source format to its loader; `detect_format` tells the format of a path.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputModelError

SOURCE_FORMATS = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}


def detect_format(path: str | Path) -> str:
    """'keras', 'h5' or 'saved_model' for a source path; a clear error otherwise."""
    source = Path(path)
    if not source.exists():
        raise InputModelError(f"model {source} does not exist")
    if source.is_dir():
        if (source / "saved_model.pb").is_file():
            return "saved_model"
        raise InputModelError(f"{source} is a directory without saved_model.pb",
                              "pass a .keras or .h5 file or a TensorFlow SavedModel directory")
    fmt = SOURCE_FORMATS.get(source.suffix.lower())
    if fmt is None:
        raise InputModelError(f"{source}: unsupported model type '{source.suffix}'",
                              "pass a .keras or .h5 file or a TensorFlow SavedModel directory")
    return fmt
