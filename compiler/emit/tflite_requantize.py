"""int8 TFLite from the SavedModel an earlier onnx2tf run wrote: only the TFLite converter runs, calibrated on OUR data.

A cross-fitting fold (search/crossfit.py) needs the build's int8 candidates calibrated on other samples. onnx2tf
would convert the ONNX graph again to get them (parse, simplify, build the Keras graph, export the SavedModel,
write float32 / float16 / dynamic, then int8); the graph it builds does not depend on the calibration samples, so a
fold reuses the build's SavedModel and runs only the int8 step. That step copies onnx2tf 1.29.24's own
(onnx2tf.py, "Quantized TFLite": one TFLiteConverter.from_saved_model, per-channel, the representative dataset in
the model's batch, the settings of each output file in its order), so the files are the bytes onnx2tf would write
for the same samples (tests/integration/test_tflite_requantize.py). It runs in a subprocess with onnx2tf's
environment, as onnx2tf does: TensorFlow's state stays out of the build.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekiln.compiler.emit import tflite_from_onnx as onnx2tf
from edgekiln.compiler.errors import ConversionError
from edgekiln.compiler.recipe import Quantize

if TYPE_CHECKING:
    from edgekiln.compiler.graph.onnx_graph import OnnxGraph
    from edgekiln.compiler.model_inputs import Dataset

# onnx2tf's int8 outputs in the order it writes them (one converter, each setting its own I/O types): the order is
# kept, so that a file never depends on a setting an earlier one left behind differently than in onnx2tf.
ORDER = ("integer_quant", "full_integer_quant", "integer_quant_with_int16_act", "full_integer_quant_with_int16_act")


def int8_suffixes(int8_io: bool, sixteen: bool) -> tuple[str, ...]:
    """The int8 files a build's candidates read: plain int8 (float or int8 I/O) and, if planned, 16x8."""
    return (onnx2tf.ARTIFACT[(Quantize.int8, int8_io)], *((onnx2tf.SIXTEEN_ARTIFACT[int8_io],) if sixteen else ()))


def requantize(earlier: onnx2tf.Converted, graph: OnnxGraph, calib: Dataset, suffixes: tuple[str, ...],
               workdir: Path) -> onnx2tf.Converted:
    """`earlier`'s conversion with its int8 files (`suffixes`) made again, calibrated on `calib`; the float32
    baseline and the layouts are earlier's (the same graph)."""
    scratch = workdir / f"requantize-{len(list(workdir.glob('requantize-*')))}"
    scratch.mkdir(parents=True)
    args = [sys.executable, "-m", __name__, str(earlier.saved_model), str(scratch)]
    for spec in graph.inputs:  # as onnx2tf's -cind files: channels-last float32 (its mean 0 and std 1 change nothing)
        path = scratch / f"calib_{spec.name.replace('/', '_')}.npy"
        np.save(path, onnx2tf.nhwc(calib.inputs[spec.name].astype(np.float32)))
        args += ["--cind", spec.name, str(path)]
    args += [arg for suffix in suffixes for arg in ("--make", suffix)]
    try:
        done = subprocess.run(args, env=onnx2tf.environment(), capture_output=True, text=True,
                              timeout=onnx2tf.TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"the int8 TFLite conversion did not finish within {onnx2tf.TIMEOUT_S} s",
                              "use --format onnx") from exc
    files = {suffix: scratch / f"model_{suffix}.tflite" for suffix in suffixes}
    if done.returncode != 0 or not all(p.exists() for p in files.values()):
        raise ConversionError(f"the TFLite converter could not quantize onnx2tf's SavedModel: "
                              f"{onnx2tf.error_line(done.stdout + done.stderr)}", "use --format onnx")
    return replace(earlier, files={"float32": earlier.files["float32"], **files})


def _representative(calib: dict[str, np.ndarray], batch: int) -> Any:
    """onnx2tf's representative_dataset_gen: the samples in steps of the model's batch, by input name."""
    import tensorflow as tf

    count = next(iter(calib.values())).shape[0]
    for start in range(0, count, batch):
        yield {name: tf.cast(tf.convert_to_tensor(data[start : start + batch]), tf.float32)
               for name, data in calib.items()}


def _convert(saved_model: str, out: Path, calib: dict[str, np.ndarray], wanted: list[str]) -> None:
    """Write model_<suffix>.tflite for each wanted suffix, with onnx2tf's converter settings."""
    import tensorflow as tf

    signature = tf.saved_model.load(saved_model).signatures["serving_default"]
    first = next(iter(signature.structured_input_signature[1].values()))
    batch = first.shape[0] if isinstance(first.shape[0], int) else 1
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    int8_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.SELECT_TF_OPS]
    int16_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                 tf.lite.OpsSet.SELECT_TF_OPS]
    settings = {  # suffix -> (ops, I/O type or None: the converter's default / what the one before set)
        "integer_quant": (int8_ops, None), "full_integer_quant": (int8_ops, tf.int8),
        "integer_quant_with_int16_act": (int16_ops, tf.float32),
        "full_integer_quant_with_int16_act": (int16_ops, tf.int16),
    }
    for suffix in (s for s in ORDER if s in wanted):
        ops, io = settings[suffix]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if ops is int16_ops:
            converter.target_spec.supported_types = []
        converter.target_spec.supported_ops = ops
        converter._experimental_disable_per_channel = False  # onnx2tf -qt per-channel
        converter.unfold_batchmatmul = False
        converter.representative_dataset = lambda: _representative(calib, batch)
        if io is not None:
            converter.inference_input_type = io
            converter.inference_output_type = io
        (out / f"model_{suffix}.tflite").write_bytes(converter.convert())


def main() -> None:
    parser = argparse.ArgumentParser(description="int8 TFLite files from onnx2tf's SavedModel (internal)")
    parser.add_argument("saved_model")
    parser.add_argument("out", type=Path)
    parser.add_argument("--cind", nargs=2, action="append", default=[], metavar=("NAME", "NPY"))
    parser.add_argument("--make", action="append", default=[], choices=ORDER)
    args = parser.parse_args()
    _convert(args.saved_model, args.out, {name: np.load(path) for name, path in args.cind}, args.make)


if __name__ == "__main__":
    main()
