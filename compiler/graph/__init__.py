"""Working graphs: one adapter per framework; the only code that touches a framework's model API.

`detect_format` tells the format of a path; `LOADERS` maps a source format to its loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from edgekiln.compiler.errors import InputModelError

if TYPE_CHECKING:
    from edgekiln.compiler.graph.keras_graph import KerasGraph
    from edgekiln.compiler.graph.onnx_graph import OnnxGraph


SOURCE_FORMATS = {".keras": "keras", ".h5": "h5", ".hdf5": "h5", ".onnx": "onnx"}
_SUPPORTED = "pass a .keras, .h5 or .onnx file or a TensorFlow SavedModel directory"


def detect_format(path: str | Path) -> str:
    """'keras', 'h5', 'saved_model' or 'onnx' for a source path; a clear error otherwise."""
    source = Path(path)
    if not source.exists():
        raise InputModelError(f"model {source} does not exist")
    if source.is_dir():
        if (source / "saved_model.pb").is_file():
            return "saved_model"
        raise InputModelError(f"{source} is a directory without saved_model.pb", _SUPPORTED)
    fmt = SOURCE_FORMATS.get(source.suffix.lower())
    if fmt is None:
        raise InputModelError(f"{source}: unsupported model type '{source.suffix}'", _SUPPORTED)
    return fmt


def framework(source_format: str) -> str:
    """'onnx' or 'keras': which adapter (and which emitters) a source format goes through."""
    return "onnx" if source_format == "onnx" else "keras"


def _load_keras(path: Path, source_format: str, workdir: Path, unsafe: bool, batch: int,
                input_shapes: dict[str, tuple[int, ...]] | None,
                data_shapes: dict[str, dict[str, tuple[int, ...]]] | None) -> KerasGraph:
    from edgekiln.compiler.graph import keras_graph

    return keras_graph.load(path, source_format, workdir, unsafe=unsafe)


def _load_onnx(path: Path, source_format: str, workdir: Path, unsafe: bool, batch: int,
               input_shapes: dict[str, tuple[int, ...]] | None,
               data_shapes: dict[str, dict[str, tuple[int, ...]]] | None) -> OnnxGraph:
    from edgekiln.compiler.graph import onnx_graph

    return onnx_graph.load(path, workdir, batch=batch, input_shapes=input_shapes, data_shapes=data_shapes)


class Loader(Protocol):
    """A framework's loader: the source's working graph (an adapter takes the arguments it needs)."""

    def __call__(self, path: Path, source_format: str, workdir: Path, unsafe: bool, batch: int,
                 input_shapes: dict[str, tuple[int, ...]] | None,
                 data_shapes: dict[str, dict[str, tuple[int, ...]]] | None) -> KerasGraph | OnnxGraph: ...


LOADERS: dict[str, Loader] = {"keras": _load_keras, "onnx": _load_onnx}


def load(path: str | Path, source_format: str, workdir: Path, *, unsafe: bool = False, batch: int = 1,
         input_shapes: dict[str, tuple[int, ...]] | None = None,
         data_shapes: dict[str, dict[str, tuple[int, ...]]] | None = None) -> KerasGraph | OnnxGraph:
    """The working graph of a source model (KerasGraph or OnnxGraph). input_shapes / data_shapes close an
    ONNX source's dynamic axes (graph/onnx_shapes.py); a Keras model's input size is its Input layer's."""
    if input_shapes and framework(source_format) != "onnx":
        raise InputModelError(f"input_shape applies to ONNX sources; {Path(path).name} is {source_format}, whose "
                              "input size is set by the model itself", "drop --input-shape for this model")
    return LOADERS[framework(source_format)](Path(path), source_format, workdir, unsafe, batch, input_shapes,
                                             data_shapes)
