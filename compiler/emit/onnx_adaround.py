"""AdaRound baked into an int8 QDQ ONNX model: only the int8 weight initializers rewritten, scales unchanged.

A QDQ model from onnxruntime's static quantizer keeps each Conv / Gemm / MatMul weight as an int8 initializer
`NAME_quantized` read by a DequantizeLinear (per-channel scales, zero point 0) and the activations as
QuantizeLinear -> DequantizeLinear pairs of the float model's tensors. So: each such layer's float weights are the
float model's `NAME`, its float inputs the float model's tensor before the activation's QuantizeLinear; the
rounding is learned as for TFLite (emit/adaround.py, the same Problem, Gram matrices and learning) and the integers
written back into the initializer in its own layout. Every integer moves at most one step from nearest rounding
(AdaRound chooses floor or ceil); a layer whose stored integers are not nearest rounding of those float weights
(another quantizer's convention) is left as it is and says why. Half the samples optimise, half are held back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from onnx import helper, numpy_helper

from edgekiln.compiler.emit import adaround
from edgekiln.compiler.emit.adaround import LayerRounding, Rounded

if TYPE_CHECKING:
    import onnx

WEIGHTED = ("Conv", "Gemm", "MatMul")
SUFFIX = "_quantized"  # onnxruntime's name for a quantized initializer


@dataclass
class _Layer:
    """One layer to round: its node, its int8 initializer, the float weights as (O, K) rows, the scales, how to
    lay integers back out, and the float tensor it reads."""

    op: str
    initializer: str
    shape: tuple[int, ...]
    weights: np.ndarray
    scales: np.ndarray
    groups: np.ndarray
    source_input: str
    to_rows: str  # how (O, K) rows map to the stored layout: "conv", "depthwise", "rows" (O, K) or "columns" (K, O)
    window: adaround.Window | None = None
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)


def refine(float_model: onnx.ModelProto, qdq: onnx.ModelProto, feeds: list[dict[str, np.ndarray]],
           settings: adaround.Settings = adaround.Settings()) -> tuple[onnx.ModelProto, Rounded]:
    """A copy of `qdq` with AdaRound's integers in place of nearest rounding's (float_model: the graph `qdq` was
    quantized from, whose tensor and initializer names it keeps); the outcome of each weighted layer."""
    import onnx as onnx_lib

    start = time.monotonic()
    model = onnx_lib.ModelProto()
    model.CopyFrom(qdq)
    layers, outcomes = _layers(float_model, model)
    half = min(settings.samples, max(len(feeds) // 2, 1))
    fitted, held = feeds[:half], feeds[half : 2 * half]
    inputs = _float_inputs(float_model, sorted({layer.source_input for layer in layers}), fitted + held)
    stored = {t.name: t for t in model.graph.initializer}
    for layer in layers:
        xs = inputs[layer.source_input]
        outcomes.append(_round(layer, stored[layer.initializer], xs[: len(fitted)], xs[len(fitted) :], settings,
                               start))
    return model, Rounded(model.SerializeToString(), tuple(outcomes), time.monotonic() - start)


def _round(layer: _Layer, stored: onnx.TensorProto, fitted: list[np.ndarray], held: list[np.ndarray],
           s: adaround.Settings, start: float) -> LayerRounding:
    """Learn one layer's rounding and write it into its int8 initializer (in place)."""
    size = layer.weights.size
    near_stored = _rows(numpy_helper.to_array(stored).astype(np.int32), layer)
    if time.monotonic() - start > s.seconds:
        return LayerRounding(layer.initializer, layer.op, size, kept=f"past the {s.seconds:g} s budget")
    fitted_gram = _gram(layer, fitted)
    problem = adaround.Problem(layer.weights, layer.scales, fitted_gram, layer.groups)
    near = adaround.nearest(problem)
    if not np.array_equal(near, near_stored):
        return LayerRounding(layer.initializer, layer.op, size, kept="its integers are not nearest rounding of the "
                             f"float weights ({int((near != near_stored).sum())} differ): left as quantized")
    rows = sum(_row_count(layer, x) for x in fitted)
    if rows < s.min_rows * layer.weights.shape[1]:
        return LayerRounding(layer.initializer, layer.op, size, kept=f"{rows} input rows for "
                             f"{layer.weights.shape[1]} weights a channel: too few to learn from")
    if problem.cost > s.max_cost:
        return LayerRounding(layer.initializer, layer.op, size, kept=f"{problem.cost:.1e} multiply-adds a step")
    ints = adaround.learn(problem, s)
    errors = [adaround.channel_errors(problem, q).sum() for q in (ints, near)]
    held_ratio = None
    if held:
        held_gram = _gram(layer, held)
        held_errors = [adaround.channel_errors(problem, q, held_gram).sum() for q in (ints, near)]
        held_ratio = round(float(held_errors[0] / held_errors[1]), 4) if held_errors[1] > 0 else 1.0
    stored.CopyFrom(numpy_helper.from_array(_laid_out(ints, layer).astype(np.int8), stored.name))
    ratio = float(errors[0] / errors[1]) if errors[1] > 0 else 1.0
    return LayerRounding(layer.initializer, layer.op, size, int((ints != near).sum()), round(ratio, 4), held_ratio)


def _gram(layer: _Layer, xs: list[np.ndarray]) -> np.ndarray:
    if layer.window is None:
        return adaround.dense_gram(xs, layer.weights.shape[1])
    nhwc = [_nhwc(x, layer.pads) for x in xs]
    if layer.to_rows == "depthwise":
        return adaround.depthwise_gram(nhwc, layer.window)
    return adaround.conv_gram(nhwc, layer.window)


def _row_count(layer: _Layer, x: np.ndarray) -> int:
    if layer.window is None:
        return int(x.size // layer.weights.shape[1])
    return adaround.positions(_nhwc(x, layer.pads).shape, layer.window)


def _nhwc(x: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """NCHW -> NHWC with ONNX's explicit pads applied (top, left, bottom, right): the window then slides VALID."""
    top, left, bottom, right = pads
    return np.pad(x.transpose(0, 2, 3, 1), ((0, 0), (top, bottom), (left, right), (0, 0)))


def _rows(ints: np.ndarray, layer: _Layer) -> np.ndarray:
    """The stored integers as the problem's (O, K) rows."""
    if layer.to_rows == "conv":
        return ints.transpose(0, 2, 3, 1).reshape(ints.shape[0], -1)
    if layer.to_rows == "columns":
        return ints.T
    return ints.reshape(ints.shape[0], -1)


def _laid_out(ints: np.ndarray, layer: _Layer) -> np.ndarray:
    """(O, K) rows back in the initializer's layout."""
    if layer.to_rows == "conv":
        o, _, kh, kw = layer.shape
        return ints.reshape(o, kh, kw, -1).transpose(0, 3, 1, 2)
    if layer.to_rows == "columns":
        return ints.T
    return ints.reshape(layer.shape)


def _layers(float_model: onnx.ModelProto, qdq: onnx.ModelProto) -> tuple[list[_Layer], list[LayerRounding]]:
    """Every Conv / Gemm / MatMul whose weight is an int8 initializer behind a DequantizeLinear, and the ones left
    as they are with the reason."""
    floats = {t.name: numpy_helper.to_array(t) for t in float_model.graph.initializer}
    inits = {t.name: t for t in qdq.graph.initializer}
    producer = {o: n for n in qdq.graph.node for o in n.output}
    layers, kept = [], []
    for node in (n for n in qdq.graph.node if n.op_type in WEIGHTED and len(n.input) > 1):
        dq = producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        name = dq.input[0]
        ints = numpy_helper.to_array(inits[name])
        why, layer = _layer(node, dq, name, ints, floats, inits, producer)
        if layer is None:
            kept.append(LayerRounding(name, node.op_type, int(ints.size), kept=why))
        else:
            layers.append(layer)
    return layers, kept


def _layer(node: onnx.NodeProto, dq: onnx.NodeProto, name: str, ints: np.ndarray, floats: dict[str, np.ndarray],
           inits: dict[str, onnx.TensorProto], producer: dict[str, onnx.NodeProto]) -> tuple[str, _Layer | None]:
    """The rounding problem's parts of one layer, or why it has none."""
    source = floats.get(name.removesuffix(SUFFIX))
    zero = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] in inits else np.zeros(1)
    if ints.dtype != np.int8 or source is None or source.shape != ints.shape or np.any(zero != 0):
        return "not int8 weights with zero point 0 and float weights of the same name", None
    x = _float_source(node.input[0], producer)
    if x is None:
        return "its input is not a quantized activation of the float model", None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64).reshape(-1)
    if node.op_type == "Conv":
        return _conv(name, ints, source, scale, x, attrs)
    if node.op_type == "Gemm" and (attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0):
        return "a Gemm with transA or alpha", None
    rows = "rows" if node.op_type == "Gemm" and attrs.get("transB", 0) else "columns"
    if ints.ndim != 2:
        return f"{ints.ndim}-D {node.op_type} weights", None
    weights = source if rows == "rows" else source.T
    if scale.size not in (1, weights.shape[0]):
        return f"{scale.size} scales for {weights.shape[0]} output channels", None
    return "", _Layer(node.op_type, name, ints.shape, weights.astype(np.float64), np.broadcast_to(
        scale, weights.shape[:1]).copy(), np.zeros(weights.shape[0], np.int64), x, rows)


def _conv(name: str, ints: np.ndarray, source: np.ndarray, scale: np.ndarray, x: str,
          attrs: dict) -> tuple[str, _Layer | None]:
    """A 2-D Conv, plain (group 1) or depthwise (one input channel a group), explicit pads."""
    if ints.ndim != 4 or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return "not a 2-D Conv with explicit pads", None
    o, per_group, kh, kw = ints.shape
    group = int(attrs.get("group", 1))
    pads = tuple(attrs.get("pads", [0, 0, 0, 0]))
    window = adaround.Window((kh, kw), tuple(attrs.get("strides", [1, 1])), tuple(attrs.get("dilations", [1, 1])),
                             same=False)
    if scale.size not in (1, o):
        return f"{scale.size} scales for {o} output channels", None
    scales = np.broadcast_to(scale, (o,)).copy()
    if group == 1:
        weights = source.transpose(0, 2, 3, 1).reshape(o, -1).astype(np.float64)
        return "", _Layer("Conv", name, ints.shape, weights, scales, np.zeros(o, np.int64), x, "conv", window,
                          (pads[0], pads[1], pads[2], pads[3]))
    if per_group == 1 and group == o:
        weights = source.reshape(o, -1).astype(np.float64)
        return "", _Layer("Conv", name, ints.shape, weights, scales, np.arange(o), x, "depthwise", window,
                          (pads[0], pads[1], pads[2], pads[3]))
    return f"a grouped Conv ({group} groups)", None


def _float_source(tensor: str, producer: dict[str, onnx.NodeProto]) -> str | None:
    """The float model's tensor behind an activation's QuantizeLinear -> DequantizeLinear pair."""
    dq = producer.get(tensor)
    q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
    return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None


def _float_inputs(float_model: onnx.ModelProto, names: list[str],
                  feeds: list[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Each named tensor of the float model on each feed (the tensors made graph outputs, one session)."""
    import onnx as onnx_lib

    from edgekiln.compiler.graph.onnx_graph import open_session

    probe = onnx_lib.ModelProto()
    probe.CopyFrom(float_model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names if n not in known)
    session = open_session(probe.SerializeToString(), threads=1, optimize=False)
    runs = [session.run(names, feed) for feed in feeds]
    return {name: [run[i] for run in runs] for i, name in enumerate(names)}
