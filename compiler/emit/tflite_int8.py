"""int8 TFLite in two steps: calibrate once, then quantize as often as needed (milliseconds each).

`calibrate` runs TensorFlow's converter in calibrate-only mode: a float .tflite whose activation tensors
carry the min/max seen on the calibration data. `quantize` turns that into an int8 model with the MLIR
quantizer, the same call `tf.lite.experimental.QuantizationDebugger` makes, with its options: ops or nodes
(named by output tensor) kept in float (the denylist), a NumericVerify debug build, and int8 inputs/outputs.
Same calibration + `quantize()` gives exactly the model `TFLiteConverter.convert()` gives (checked by test).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edgekiln.compiler.emit.tflite_convert import conversion_error, representative
from edgekiln.compiler.errors import ConversionError, first_line
from edgekiln.compiler.model_inputs import Dataset
from edgekiln.compiler.tf_env import import_tf, quiet_fds


def calibrate(saved_model_dir: Path, calib: Dataset) -> bytes:
    """The float model with calibrated activation ranges (min/max per tensor)."""
    from edgekiln.compiler.recipe import Quantize

    tf = import_tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: representative(calib)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_calibrate_only = True  # noqa: SLF001  (what QuantizationDebugger sets)
    try:
        with quiet_fds():
            calibrated = bytes(converter.convert())
    except Exception as exc:  # noqa: BLE001  (ConverterError, RuntimeError, ValueError from MLIR)
        raise conversion_error(exc, Quantize.int8) from exc
    refuse_non_finite(calibrated)
    return calibrated


def refuse_non_finite(calibrated: bytes) -> None:
    """A ConversionError when calibration gave a tensor an infinite or NaN range: it must not reach the
    quantizer (an activation overflowed float32 on the calibration data, or a weight is not finite)."""
    from edgekiln.compiler.emit.calibrate import non_finite

    bad = non_finite(calibrated)
    if bad:
        name, lo, hi = bad[0]
        raise ConversionError(f"int8 calibration gave {len(bad)} tensor(s) a non-finite range, first '{name}' "
                              f"[{lo:g}, {hi:g}]",
                              "check the model's float outputs on this data for inf/NaN (see `edgekiln explain`)")


def quantize(calibrated: bytes, int8_io: bool = True, float_ops: Iterable[str] = (),
             float_nodes: Iterable[str] = (), debug: bool = False) -> bytes:
    """An int8 model from a calibrated one; `float_ops` (TFLite op names) and `float_nodes` stay float32."""
    tf = import_tf()
    from tensorflow.lite.python import convert

    io_type = tf.int8 if int8_io and not debug else tf.float32
    try:
        with quiet_fds():
            return bytes(convert.mlir_quantize(
                calibrated, fully_quantize=int8_io and not debug, input_data_type=io_type, output_data_type=io_type,
                enable_numeric_verify=debug, denylisted_ops=sorted(float_ops) or None,
                denylisted_nodes=sorted(float_nodes) or None))
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"int8 quantization failed: {first_line(exc)}") from exc
