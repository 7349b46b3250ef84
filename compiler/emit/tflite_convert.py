"""SavedModel -> .tflite through TensorFlow's own converter, in every quantization mode.

int8 is full-integer (TFLITE_BUILTINS_INT8 only): per-channel int8 weights, int8 activations
calibrated on the user's data, and by default int8 inputs/outputs too. An op without an int8
kernel makes the conversion fail with the op named, rather than silently staying float.
16x8 (`activations="int16"`) is TFLite's int16-activation, int8-weight mode; its I/O is int16 where int8's is int8.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgekiln.compiler.data import model_feed
from edgekiln.compiler.errors import ConversionError, first_line
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.tf_env import import_tf, quiet_fds


def convert(saved_model_dir: Path, quantize: Quantize, calib: Dataset | None, int8_io: bool = True,
            activations: str = "int8") -> bytes:
    """The .tflite bytes of the SavedModel's serving signature in the given quantization mode (int8 with
    `activations="int16"`: 16x8)."""
    tf = import_tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    _configure(converter, tf, quantize, calib, int8_io, activations == "int16")
    try:
        with quiet_fds():
            return bytes(converter.convert())
    except Exception as exc:  # noqa: BLE001  (ConverterError, RuntimeError, ValueError from MLIR)
        raise conversion_error(exc, quantize) from exc


def _configure(converter: object, tf: object, quantize: Quantize, calib: Dataset | None, int8_io: bool,
               int16: bool = False) -> None:
    if quantize is Quantize.none:
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # type: ignore[attr-defined]
    if quantize is Quantize.float16:
        converter.target_spec.supported_types = [tf.float16]  # type: ignore[attr-defined]
    elif quantize is Quantize.int8:
        assert calib is not None, "the recipe guarantees calibration data for int8"
        converter.representative_dataset = lambda: representative(calib)  # type: ignore[attr-defined]
        ops = tf.lite.OpsSet  # type: ignore[attr-defined]
        converter.target_spec.supported_ops = [  # type: ignore[attr-defined]
            ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if int16 else ops.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int16 if int16 else tf.int8  # type: ignore[attr-defined]
            converter.inference_output_type = tf.int16 if int16 else tf.int8  # type: ignore[attr-defined]
    # Quantize.dynamic: DEFAULT without a representative dataset = int8 weights, float activations.


def representative(calib: Dataset) -> Iterator[dict[str, np.ndarray]]:
    """One sample at a time, keyed by signature input name (the converter calibrates per sample). Integer inputs
    (token ids, masks) keep their integer type: the converter feeds them to an int32 / int64 input tensor."""
    for i in range(calib.size):
        yield {name: model_feed(array[i : i + 1])
               for name, array in calib.inputs.items()}


_NOT_BUILTIN = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")
_NO_INT8_KERNEL = re.compile(r"Quantization not yet supported for op: '?(\w+)'?")


def conversion_error(exc: BaseException, quantize: Quantize) -> ConversionError:
    text = str(exc)
    if ops := sorted(set(_NOT_BUILTIN.findall(text))):
        return ConversionError(f"TensorFlow op(s) {', '.join(ops)} have no TFLite builtin kernel (they would need "
                               "TF Select, which LiteRT on the device does not have)",
                               "replace them in the model with supported ops, or use --format onnx if available")
    if (match := _NO_INT8_KERNEL.search(text)) and quantize is Quantize.int8:
        return ConversionError(f"op {match.group(1)} has no int8 kernel in TFLite, so the model cannot be fully "
                               "integer-quantized", "use --quantize dynamic or float16, or replace the op")
    return ConversionError(f"TFLite conversion ({quantize}) failed: {first_line(exc)}")
