"""Why int8 hurts a model: per-layer quantization error, fast-path coverage, and the likely cause in words.

Per-layer error comes from `tf.lite.experimental.QuantizationDebugger` on a NumericVerify build of the
model: each quantized op is compared with its float op fed the same (dequantized) input, so an error is
the layer's own, not inherited. Layers are ranked by the mean over channels of noise / signal power:
a tensor whose channels span orders of magnitude shares one int8 scale, its small channels round to
nothing, and only a per-channel measure shows it (the tensor-wide SQNR is dominated by the big channels).
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from collections.abc import Iterator

import numpy as np

from edgekiln.compiler.analyze.coverage import Coverage
from edgekiln.compiler.diagnose import causes
from edgekiln.compiler.diagnose.layer_error import LayerError
from edgekiln.compiler.emit import tflite_int8
from edgekiln.compiler.emit.calibrate import TensorStats
from edgekiln.compiler.keras_types import KerasModel
from edgekiln.compiler.manifest_schema import Diagnosis
from edgekiln.compiler.tf_env import import_tf, quiet_fds

DEBUG_SAMPLES = 16   # calibration samples the debug model runs (it uses reference kernels: slow)
TOP_LAYERS = 10      # layers listed in the manifest


def layer_errors(calibrated: bytes, feeds: list[dict[str, np.ndarray]], layer_names: list[str]) -> list[LayerError]:
    """Every quantized tensor's own error on the feeds, worst first.

    A model output is ranked by its tensor-wide noise / signal instead: nothing downstream amplifies its
    small channels (e.g. the near-zero probabilities of a softmax), so losing them costs nothing.
    """
    tf = import_tf()
    debug_model = tflite_int8.quantize(calibrated, debug=True)
    options = tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"channel_nsr": _channel_nsr, "signal": _signal})
    with warnings.catch_warnings(), quiet_fds():
        warnings.simplefilter("ignore")
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model, debug_dataset=lambda: _ordered(debug_model, feeds),
            debug_options=options)
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
    rows = list(csv.DictReader(io.StringIO(dump.getvalue())))
    outputs = _output_names(calibrated)
    nsr = [_finite(row["mean_squared_error"]) / max(_finite(row["signal"]), 1e-30)
           if row["tensor_name"] in outputs else _finite(row["channel_nsr"]) for row in rows]
    total = sum(nsr) or 1.0
    ops = [_op_error(row, n, total, layer_names) for row, n in zip(rows, nsr, strict=True)]
    return sorted(group(ops), key=lambda e: -e.channel_nsr)


def _op_error(row: dict, nsr: float, total: float, layer_names: list[str]) -> LayerError:
    mse, signal, scale = float(row["mean_squared_error"]), float(row["signal"]), float(row["scale"])
    sqnr = None if mse == 0 else 10 * math.log10(max(signal, 1e-30) / mse)
    return LayerError(layer_of(row["tensor_name"], layer_names), row["op_name"], (row["tensor_name"],),
                      math.sqrt(mse) / scale if scale else 0.0, sqnr, nsr, nsr / total)


def group(ops: list[LayerError]) -> list[LayerError]:
    """One entry per layer, in first-seen order: errors and shares add, the worst op's figures are kept."""
    layers: dict[str, list[LayerError]] = {}
    for op in ops:
        layers.setdefault(op.layer, []).append(op)
    return [LayerError(name, "+".join(dict.fromkeys(e.op for e in parts)), sum((e.tensors for e in parts), ()),
                       max(e.rmse_over_scale for e in parts),
                       min((e.sqnr_db for e in parts if e.sqnr_db is not None), default=None),
                       sum(e.channel_nsr for e in parts), sum(e.share for e in parts))
            for name, parts in layers.items()]


def _output_names(model: bytes) -> set[str]:
    from ai_edge_litert.interpreter import Interpreter

    with quiet_fds():
        return {d["name"] for d in Interpreter(model_content=model).get_output_details()}


def _channel_nsr(float_value: np.ndarray, quantized: np.ndarray, scale: float, zero_point: int) -> float:
    """Mean over channels (last axis) of noise power / signal power; channels without signal are skipped."""
    ref = float_value.astype(np.float64).reshape(-1, float_value.shape[-1] if float_value.ndim else 1)
    deq = ((quantized.astype(np.float64) - zero_point) * scale).reshape(ref.shape)
    signal, noise = (ref**2).mean(axis=0), ((ref - deq) ** 2).mean(axis=0)
    live = signal > 0
    return float(np.mean(noise[live] / signal[live])) if live.any() else 0.0


def _signal(float_value: np.ndarray, quantized: np.ndarray, scale: float, zero_point: int) -> float:
    return float(np.mean(float_value.astype(np.float64) ** 2))


def _finite(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else 0.0


def _ordered(model: bytes, feeds: list[dict[str, np.ndarray]]) -> Iterator[list[np.ndarray]]:
    """Samples as lists in the debug model's input order (its inputs are 'serving_default_NAME:0')."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_fds():
        details = Interpreter(model_content=model).get_input_details()
    names = [d["name"].removeprefix("serving_default_").rsplit(":", 1)[0] for d in details]
    for feed in feeds[:DEBUG_SAMPLES]:
        yield [feed[name] if name in feed else next(iter(feed.values())) for name in names]


def layer_of(tensor_name: str, layer_names: list[str]) -> str:
    """Keras layer(s) behind a TFLite tensor name such as 'model_1/relu1_1/Relu;model_1/conv1_1/convolution'.

    TensorFlow's name scopes add a `_N` to each layer name when the model is exported (conv2d -> conv2d_1,
    conv2d_1 -> conv2d_1_2); layers fused into one op are joined with '+'.
    """
    found = []
    for part in tensor_name.split(";"):
        scopes = part.split("/")
        scope = scopes[1] if len(scopes) > 2 else scopes[0]
        stem = re.sub(r"_\d+$", "", scope)
        if not layer_names:  # a SavedModel source: the name scope is all there is
            name = stem if len(scopes) > 2 else None
        else:
            name = next((n for n in (stem, scope) if n in layer_names), None)
        if name and name not in found:
            found.append(name)
    if not found:
        return "(model output)" if tensor_name.startswith("StatefulPartitionedCall") else tensor_name.split(";")[0]
    return "+".join(sorted(found, key=layer_names.index) if layer_names else found)


def report(errors: list[LayerError], cover: Coverage, stats: dict[int, TensorStats], calibrated: bytes,
           keras_model: KerasModel | None, samples: int, failure: str = "", accurate: str = "") -> Diagnosis:
    """The manifest's quantization.diagnosis block (of the plain int8 model); `failure`: why layers are missing;
    `accurate`: how plain int8 meets the accuracy criterion, if it does."""
    diagnosis: Diagnosis = {
        "of": "int8 (plain: min/max calibration, no rewrites, no float fallback)",
        "method": "tf.lite.experimental.QuantizationDebugger layer statistics: each quantized op against its float "
                  "op on the same input; ranked by mean per-channel noise/signal power",
        "samples": samples,
        "layers": [e.to_dict() for e in errors[:TOP_LAYERS]],
        "coverage": cover.to_dict(),
        "causes": causes.find(errors, cover, stats, calibrated, keras_model, accurate),
    }
    if failure:
        diagnosis["note"] = failure
    return diagnosis
