"""Keras and TensorFlow sources (.keras, .h5, SavedModel) as a working graph.

Every source is exported once to a SavedModel: it is what the TFLite converter reads
(`from_saved_model`, the clean path) and what the reference outputs are computed with, so the
names of inputs and outputs are the serving signature's everywhere downstream.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from edgekiln.compiler.errors import InputModelError, first_line
from edgekiln.compiler.keras_types import KerasModel
from edgekiln.compiler.model_inputs import InputSpec
from edgekiln.compiler.tf_env import import_keras, import_tf, quiet_fds

_SIGNATURE = "serving_default"


@dataclass
class KerasGraph:
    """A loaded TF/Keras model and its SavedModel export.

    keras_model is None for SavedModel sources (Keras 3 cannot load those); the serving
    signature is then the model.
    """

    source_format: str
    saved_model_dir: Path
    keras_model: KerasModel | None
    signature: Any  # the SavedModel's serving ConcreteFunction
    inputs: list[InputSpec]
    output_names: list[str]
    params: int
    handle: Any = None  # the loaded SavedModel object; keeps the signature's variables alive
    # its tf2onnx conversion by batch size (emit/onnx_convert.keras_to_onnx): made once, the folds reuse it
    onnx_bytes: dict[int, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    def run(self, inputs: dict[str, np.ndarray], batch: int = 64) -> list[np.ndarray]:
        """Float reference outputs of the source model, in output_names order."""
        tf = import_tf()
        chunks: list[list[np.ndarray]] = []
        total = next(iter(inputs.values())).shape[0]
        for start in range(0, total, batch):
            feed = {k: tf.constant(v[start : start + batch], dtype=_dtype_of(self, k)) for k, v in inputs.items()}
            result = self.signature(**feed)
            chunks.append([result[name].numpy() for name in self.output_names])
        return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]


def _dtype_of(graph: KerasGraph, name: str) -> str:
    return next(s.dtype for s in graph.inputs if s.name == name)


def load(path: str | Path, source_format: str, workdir: Path, unsafe: bool = False) -> KerasGraph:
    """Load a Keras / TF model without running code from it (unless unsafe), and export it."""
    source = Path(path)
    if source_format == "saved_model":
        return _from_saved_model(source, source_format, None, 0)
    model = _load_keras(source, source_format, unsafe)
    return from_model(model, workdir / "source_saved_model", source_format, source.name)


def from_model(model: KerasModel, export_dir: Path, source_format: str, label: str) -> KerasGraph:
    """A working graph of an in-memory Keras model (e.g. a pruned one), exported to export_dir."""
    try:
        with quiet_fds():
            model.export(str(export_dir), verbose=False)
    except Exception as exc:  # noqa: BLE001  (Keras raises many types; wrap them where they enter)
        raise InputModelError(f"cannot export {label} for conversion: {first_line(exc)}") from exc
    return _from_saved_model(export_dir, source_format, model, int(model.count_params()))


def _load_keras(source: Path, source_format: str, unsafe: bool) -> KerasModel:
    _check_container(source, source_format)
    keras = import_keras()
    try:
        return keras.models.load_model(source, compile=False, safe_mode=not unsafe)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise InputModelError(
                f"{source.name} contains a Lambda layer: loading it would run code stored in the file",
                "if you trust the file, pass --unsafe",
            ) from exc
        raise InputModelError(f"cannot load {source.name}: {first_line(exc)}") from exc
    except Exception as exc:  # noqa: BLE001  (unknown layers, corrupt weights, ...)
        raise InputModelError(f"cannot load {source.name}: {first_line(exc)}",
                              "is it a complete Keras model saved with model.save()?") from exc


def _check_container(source: Path, source_format: str) -> None:
    """Fail early and clearly on truncated or mislabelled files (Keras' own errors are obscure)."""
    if source_format == "keras" and not zipfile.is_zipfile(source):
        raise InputModelError(f"{source.name} is not a Keras archive (truncated or not a .keras file)",
                              "re-save it with model.save('model.keras')")
    if source_format == "h5":
        try:
            with h5py.File(source, "r") as f:
                if "model_config" not in f.attrs:
                    raise InputModelError(f"{source.name} holds weights only, not a model",
                                          "save the whole model with model.save()")
        except OSError as exc:
            raise InputModelError(f"{source.name} is not a readable HDF5 file (truncated or corrupt)",
                                  "re-save it with model.save()") from exc


def _from_saved_model(directory: Path, source_format: str, keras_model: KerasModel | None, params: int) -> KerasGraph:
    tf = import_tf()
    try:
        loaded = tf.saved_model.load(str(directory))
    except Exception as exc:  # noqa: BLE001
        raise InputModelError(f"cannot load SavedModel {directory}: {first_line(exc)}") from exc
    if _SIGNATURE not in loaded.signatures:
        raise InputModelError(f"SavedModel {directory} has no '{_SIGNATURE}' signature",
                              f"its signatures: {list(loaded.signatures)}; export one with tf.saved_model.save")
    signature = loaded.signatures[_SIGNATURE]
    specs = signature.structured_input_signature[1]
    inputs = [InputSpec(name, tuple(-1 if d is None else int(d) for d in spec.shape), spec.dtype.name)
              for name, spec in sorted(specs.items())]
    outputs = sorted(signature.structured_outputs)
    if not params:
        params = int(sum(np.prod(v.shape) for v in loaded.variables))
    return KerasGraph(source_format, directory, keras_model, signature, inputs, outputs, params, loaded)
