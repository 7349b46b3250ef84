"""AdaRound baked into an int8 TFLite model: the converter's model with only its integer weights rewritten.

The int8 model (emit/tflite_int8.quantize) keeps, for every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, the
calibrated float model's weight tensor name; its int8 weights carry per-channel scales and zero point 0. So:
read each such layer's float weights from the calibrated model and its scales from the int8 model, run the
calibrated (float) model on calibration samples to get each layer's float inputs, learn the rounding
(emit/adaround.py) and write the integers into the int8 model's weight buffers. Scales, zero points, biases and
the graph stay as the converter made them. Half of the samples given optimise, the other half are held back to
measure each layer's output error against nearest rounding (`LayerRounding.held_back`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekiln.compiler.emit import adaround
from edgekiln.compiler.emit.adaround import LayerRounding, Rounded
from edgekiln.compiler.tf_env import quiet_fds

WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
GRAM_BYTES = 256 * 2**20  # Gram matrices gathered in one pass of the calibrated model over the samples


@dataclass
class _Layer:
    """A layer to round: where its weights sit in the int8 model, its float input in the calibrated model,
    its rounding problem's parts, and the Gram matrices gathered so far (optimised, held back)."""

    op: str
    tensor: str
    buffer: int
    shape: tuple[int, ...]
    input_index: int
    weights: np.ndarray  # (O, K)
    scales: np.ndarray
    groups: np.ndarray
    gram_of: Callable[[list[np.ndarray]], np.ndarray]
    rows_of: Callable[[tuple[int, ...]], int]
    grams: tuple[np.ndarray, np.ndarray] | None = None
    rows: int = 0  # the optimised samples' input rows (patches)

    def problem(self, gram: np.ndarray) -> adaround.Problem:
        return adaround.Problem(self.weights, self.scales, gram, self.groups)


def refine(calibrated: bytes, quantized: bytes, feeds: list[dict[str, np.ndarray]],
           settings: adaround.Settings = adaround.Settings(),
           progress: Callable[[str], None] = lambda line: None) -> Rounded:
    """`quantized` with AdaRound's integers in place of nearest rounding's, layer by layer, within the settings'
    time budget (a layer not reached, or too costly, keeps nearest rounding and says so). `progress` hears each
    step as it starts (the build's display times it until the next)."""
    from tensorflow.lite.tools import flatbuffer_utils

    start = time.monotonic()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(quantized))
    layers, outcomes = _layers(model, flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated)), settings)
    half = min(settings.samples, max(len(feeds) // 2, 1))
    for group in _memory_groups(layers):
        progress(f"AdaRound: the float inputs of {len(group)} layer(s) on {min(2 * half, len(feeds))} samples")
        _gather(calibrated, group, feeds[:half], feeds[half : 2 * half])
        for layer in group:
            progress(f"AdaRound layer {layers.index(layer) + 1}/{len(layers)}: {layer.op} {layer.tensor[:60]}, "
                     f"{settings.iterations} steps")
            outcomes.append(_round(layer, model, settings, start))
            layer.grams = None
    return Rounded(bytes(flatbuffer_utils.convert_object_to_bytearray(model)), tuple(outcomes),
                   time.monotonic() - start)


def _round(layer: _Layer, model: Any, s: adaround.Settings, start: float) -> LayerRounding:
    """Learn one layer's rounding and write it into the int8 model's weight buffer (in place)."""
    size = layer.weights.size
    if time.monotonic() - start > s.seconds:
        return LayerRounding(layer.tensor, layer.op, size, kept=f"past the {s.seconds:g} s budget")
    assert layer.grams is not None
    if layer.rows < s.min_rows * layer.weights.shape[1]:
        return LayerRounding(layer.tensor, layer.op, size, kept=f"{layer.rows} input rows for "
                             f"{layer.weights.shape[1]} weights a channel: too few to learn from")
    fitted, held = layer.problem(layer.grams[0]), layer.grams[1]
    ints, near = adaround.learn(fitted, s), adaround.nearest(fitted)
    errors = [adaround.channel_errors(fitted, q).sum() for q in (ints, near)]
    ratio = float(errors[0] / errors[1]) if errors[1] > 0 else 1.0
    held_ratio = None
    if held.any():
        held_errors = [adaround.channel_errors(fitted, q, held).sum() for q in (ints, near)]
        held_ratio = float(held_errors[0] / held_errors[1]) if held_errors[1] > 0 else 1.0
    model.buffers[layer.buffer].data = _stored(ints, layer.op, layer.shape)
    return LayerRounding(layer.tensor, layer.op, size, int((ints != near).sum()), round(ratio, 4),
                         None if held_ratio is None else round(held_ratio, 4))


def _stored(ints: np.ndarray, op: str, shape: tuple[int, ...]) -> np.ndarray:
    """The (O, K) integers back in the weight tensor's layout, as the buffer's bytes."""
    laid = ints.T.reshape(shape) if op == "DEPTHWISE_CONV_2D" else ints.reshape(shape)
    return np.frombuffer(laid.astype(np.int8).tobytes(), np.uint8).copy()


def _memory_groups(layers: list[_Layer]) -> Iterator[list[_Layer]]:
    """Layers whose Gram matrices (two per layer) fit GRAM_BYTES together, in model order."""
    group: list[_Layer] = []
    used = 0
    for layer in layers:
        need = 2 * 8 * len(np.unique(layer.groups)) * layer.weights.shape[1] ** 2
        if group and used + need > GRAM_BYTES:
            yield group
            group, used = [], 0
        group.append(layer)
        used += need
    if group:
        yield group


def _gather(calibrated: bytes, group: list[_Layer], fitted: list[dict[str, np.ndarray]],
            held: list[dict[str, np.ndarray]]) -> None:
    """Each layer's Gram matrices of its float inputs: on the optimised samples and on the held-back ones."""
    sums: dict[int, list[np.ndarray]] = {}
    for which, feeds in enumerate((fitted, held)):
        totals = {id(layer): np.zeros(0) for layer in group}
        for tensors in _float_inputs(calibrated, feeds, [layer.input_index for layer in group]):
            for layer in group:
                x = tensors[layer.input_index]
                layer.rows += 0 if which else layer.rows_of(x.shape)
                gram = layer.gram_of([x])
                totals[id(layer)] = gram if totals[id(layer)].size == 0 else totals[id(layer)] + gram
        for key, total in totals.items():
            sums.setdefault(key, []).append(total)
    for layer in group:
        fit, back = sums[id(layer)]
        layer.grams = (fit, back if back.size else np.zeros_like(fit))


def _float_inputs(calibrated: bytes, feeds: list[dict[str, np.ndarray]],
                  indices: list[int]) -> Iterator[dict[int, np.ndarray]]:
    """The calibrated (float) model's tensors `indices`, one sample at a time."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with quiet_fds():  # no XNNPACK: it would not keep the intermediate tensors
        interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
    inputs = interp.get_signature_runner().get_input_details()
    for feed in feeds:
        for name, detail in inputs.items():
            interp.set_tensor(detail["index"], feed[name].astype(detail["dtype"]))
        interp.invoke()
        yield {i: interp.get_tensor(i).copy() for i in indices}


def _layers(model: Any, calibrated: Any, s: adaround.Settings) -> tuple[list[_Layer], list[LayerRounding]]:
    """The int8 model's weighted layers AdaRound can round, and the outcomes of those it cannot (kept)."""
    float_weights = _float_weights(calibrated)
    graph, users = model.subgraphs[0], _buffer_users(model)
    layers, kept = [], []
    for op in graph.operators:
        name = _op_name(model, op)
        if name not in WEIGHTED or len(op.inputs) < 2:
            continue
        w = graph.tensors[op.inputs[1]]
        tensor = w.name.decode()
        found = float_weights.get(tensor)
        why = _unroundable(w, found, users)
        if why or found is None:
            if w.type == INT8:
                kept.append(LayerRounding(tensor, name, int(np.prod(w.shape)), kept=why))
            continue
        layer = _layer(name, op, w, tensor, *found)
        if layer.problem(np.zeros((1, 1, 1))).cost > s.max_cost:
            kept.append(LayerRounding(tensor, name, layer.weights.size,
                                      kept=f"{layer.problem(np.zeros((1, 1, 1))).cost:.1e} multiply-adds a step"))
        else:
            layers.append(layer)
    return layers, kept


INT8, FLOAT32 = 9, 0  # TFLite TensorType values


def _unroundable(w: Any, found: tuple[Any, Any, np.ndarray] | None, users: dict[int, int]) -> str:
    if w.type != INT8:
        return "not int8"
    if found is None:
        return "no float weights of that name in the calibrated model"
    q = w.quantization
    if q is None or q.scale is None or (q.zeroPoint is not None and np.any(q.zeroPoint != 0)):
        return "not symmetric int8"
    if users.get(w.buffer, 0) > 1:
        return "its weights are shared"
    if tuple(found[2].shape) != tuple(w.shape):
        return "the float weights' shape differs"
    return ""


def _layer(name: str, op: Any, w: Any, tensor: str, cal_op: Any, input_index: int, floats: np.ndarray) -> _Layer:
    """The rounding problem's parts of one layer, in (O, K) rows."""
    shape, scale = tuple(int(d) for d in w.shape), np.asarray(w.quantization.scale, np.float64)
    opts = op.builtinOptions
    if name == "DEPTHWISE_CONV_2D":
        rows = floats[0].reshape(-1, shape[3]).T
        multiplier = max(int(getattr(opts, "depthMultiplier", 1) or 1), 1)
        groups = np.arange(shape[3]) // multiplier
        window = _window(opts, shape[1:3])
        return _Layer(name, tensor, w.buffer, shape, input_index, rows.astype(np.float64),
                      _per_row(scale, shape[3]), groups, lambda xs: adaround.depthwise_gram(xs, window),
                      lambda x: adaround.positions(x, window))
    rows = floats.reshape(shape[0], -1).astype(np.float64)
    groups = np.zeros(shape[0], np.int64)
    if name == "CONV_2D":
        window = _window(opts, shape[1:3])
        return _Layer(name, tensor, w.buffer, shape, input_index, rows, _per_row(scale, shape[0]), groups,
                      lambda xs: adaround.conv_gram(xs, window), lambda x: adaround.positions(x, window))
    return _Layer(name, tensor, w.buffer, shape, input_index, rows, _per_row(scale, shape[0]), groups,
                  lambda xs: adaround.dense_gram(xs, rows.shape[1]), lambda x: int(np.prod(x)) // rows.shape[1])


def _per_row(scale: np.ndarray, rows: int) -> np.ndarray:
    return np.broadcast_to(scale, (rows,)).astype(np.float64) if scale.size == 1 else scale


def _window(opts: Any, kernel: tuple[int, ...]) -> adaround.Window:
    return adaround.Window((kernel[0], kernel[1]), (opts.strideH, opts.strideW),
                           (opts.dilationHFactor or 1, opts.dilationWFactor or 1), opts.padding == 0)  # 0: SAME


def _float_weights(calibrated: Any) -> dict[str, tuple[Any, int, np.ndarray]]:
    """Weight tensor name -> (op, its input tensor's index, float weights) of the calibrated model's weighted ops
    whose weight name is unique (a name two weights share cannot say which is which)."""
    graph, seen = calibrated.subgraphs[0], set()
    found: dict[str, tuple[Any, int, np.ndarray]] = {}
    for op in graph.operators:
        if _op_name(calibrated, op) not in WEIGHTED or len(op.inputs) < 2:
            continue
        w = graph.tensors[op.inputs[1]]
        name = w.name.decode()
        data = calibrated.buffers[w.buffer].data
        if name in seen or w.type != FLOAT32 or data is None:
            found.pop(name, None)
            seen.add(name)
            continue
        seen.add(name)
        found[name] = (op, int(op.inputs[0]), np.frombuffer(bytes(data), np.float32).reshape(w.shape))
    return found


def _buffer_users(model: Any) -> dict[int, int]:
    users: dict[int, int] = {}
    for t in model.subgraphs[0].tensors:
        users[t.buffer] = users.get(t.buffer, 0) + 1
    return users


def _op_name(model: Any, op: Any) -> str:
    from tensorflow.lite.python import schema_py_generated as schema

    code = model.operatorCodes[op.opcodeIndex]
    number = max(code.builtinCode, code.deprecatedBuiltinCode)
    return next((k for k, v in vars(schema.BuiltinOperator).items() if v == number and not k.startswith("_")), "")
