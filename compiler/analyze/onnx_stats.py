"""Static facts about an .onnx model: ops, parameters, MACs and activation memory (shape inference).

The counting rules match analyze.py's for .tflite so the two formats compare: parameters are the
weights and biases (in QDQ models the int8/int32 tensors behind DequantizeLinear, not their scales
or zero points, and never shape/axis constants); MACs are those of Conv, ConvTranspose, Gemm and
MatMul at the compiled batch. A figure over a tensor whose shape inference could not infer is None (unknown),
never 0, and GraphStats.unknown says which ops and why.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.analyze.graph_stats import UNKNOWN_SHAPES, GraphStats, OpRecord, total_macs, unknown_note

if TYPE_CHECKING:
    import onnx

_FLOATS = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
_QDQ = {"QuantizeLinear", "DequantizeLinear"}
_SIXTEEN_BITS = {4, 5}  # UINT16, INT16: a QuantizeLinear's zero point of this type makes 16-bit activations
_MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger")


def onnx_stats(model_bytes: bytes) -> GraphStats:
    """Parameters, MACs and op counts of an ONNX model."""
    model = _inferred(model_bytes)
    shapes = _shapes(model)
    uses: dict[str, list[tuple[str, int]]] = {}
    for node in model.graph.node:
        for position, name in enumerate(node.input):
            uses.setdefault(name, []).append((node.op_type, position))
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if _is_weight(t, uses.get(t.name, [])))
    records = _records(model, shapes)
    return GraphStats(int(params), total_macs(records), dict(Counter(n.op_type for n in model.graph.node)),
                      records=records, unknown=unknown_note(records, UNKNOWN_SHAPES))


def _records(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> tuple[OpRecord, ...]:
    """Per-node records for the latency estimate, as onnxruntime runs a QDQ model: its QDQ transformer
    fuses DequantizeLinear -> op -> QuantizeLinear into an integer kernel, so a node fed by
    DequantizeLinear computes in int8 and the activation Q/DQ nodes between such ops vanish; only
    those at the graph's inputs and outputs stay. A DequantizeLinear of a weight runs at load.
    16-bit activations (16x8) fuse into nothing (measured, onnxruntime 1.32): their Q/DQ nodes stay, each op
    computes in float32 between them; such an op's input_dtype is "int16", as is that of an op writing a 16-bit
    tensor from int8 inputs (per-layer mixed precision: search/onnx_mixed.py)."""
    constants = {t.name: t for t in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    boundary = {v.name for v in [*model.graph.input, *model.graph.output]}
    sixteen = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
               and n.input[2] in constants and constants[n.input[2]].data_type in _SIXTEEN_BITS}
    widened = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in sixteen}
    # an op whose output is quantized to 16 bits (a layer int8+mixed promoted) fuses no more than one reading them
    narrowed = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.output[0] in sixteen}
    int8 = ({n.output[0] for n in model.graph.node if n.op_type in _QDQ} - sixteen - widened) | \
        {name for name, t in constants.items() if t.data_type in (2, 3)}  # UINT8, INT8

    def size(name: str) -> int | None:
        dims = shapes.get(name)
        width = 2 if name in sixteen else 1 if name in int8 else 4
        return int(np.prod(dims)) * width if dims is not None and 0 not in dims else None  # [] is a scalar

    def dequantized(name: str) -> bool:
        node = producer.get(name)
        return node is not None and node.op_type == "DequantizeLinear"

    records = []
    for node in model.graph.node:
        names = [n for n in node.input if n]
        weights = [n for n in names if n in constants or (dequantized(n) and producer[n].input[0] in constants)]
        variable = [n for n in names if n not in weights]
        wide = bool({*variable, *node.output} & (sixteen | widened))
        if node.op_type in _QDQ:
            if variable and not wide and not {*variable, *node.output} & boundary:
                continue  # fused into the integer kernel beside it
            input_dtype = "const" if not variable else "int16" if variable[0] in sixteen else "float32"
        elif (variable and variable[0] in widened) or set(node.output) & narrowed:
            input_dtype = "int16"  # float32 compute on dequantized 16-bit values (estimate.py charges float)
        else:
            input_dtype = "int8" if variable and dequantized(variable[0]) else "float32" if variable else "const"
        dtype = "int8" if (weights and dequantized(weights[0])) or input_dtype == "int8" else "float32"
        acts = [size(n) for n in [*variable, *node.output]]
        act = None if None in acts else sum(a for a in acts if a is not None)
        weight_bytes = sum(size(n) or 0 for n in weights)  # constants: their dims are always known
        records.append(OpRecord(node.op_type, dtype, _macs(node, shapes), weight_bytes, act, input_dtype))
    return tuple(records)


def onnx_arena_bytes(model_bytes: bytes) -> tuple[int, str | None]:
    """Upper bound of the activation memory: the bytes of every graph input and node output at batch 1,
    as compat.tflite_arena_bytes counts every non-constant tensor; and, when some tensors' shapes are unknown,
    how many and why (the bytes are then a sum over the known ones only: no upper bound)."""
    from onnx import helper

    model = _inferred(model_bytes)
    values = {v.name: v for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]}
    initializers = {t.name for t in model.graph.initializer}
    names = {n for node in model.graph.node for n in node.output} | {i.name for i in model.graph.input}
    total, unknown = 0, []
    for name in sorted(names - initializers):
        value = values.get(name)
        tensor = value.type.tensor_type if value is not None and value.type.HasField("tensor_type") else None
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tensor.shape.dim] if tensor else [0]
        if tensor is None or not tensor.HasField("shape") or 0 in dims:
            unknown.append(name)
            continue
        total += int(np.prod(dims)) * np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).itemsize
    why = f"{len(unknown)} of {len(names - initializers)} activation tensors have unknown shapes: {UNKNOWN_SHAPES}"
    return total, why if unknown else None


def _inferred(model_bytes: bytes) -> onnx.ModelProto:
    """The model with its tensors' shapes: ONNX's shape inference, or onnxruntime's symbolic one where ONNX's
    leaves the output of a MAC-counted node unknown (contrib ops, whose outputs it cannot infer, or tf2onnx's
    Shape -> Max -> Reshape attention arithmetic) and the symbolic one finishes."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except onnx.shape_inference.InferenceError:
        inferred = model  # counts degrade to what the file declares; never fail a build on statistics
    shapes = _shapes(inferred)
    contrib = any(n.domain == "com.microsoft" for n in model.graph.node)
    unknown = any(not shapes.get(n.output[0]) or 0 in shapes[n.output[0]]
                  for n in inferred.graph.node if n.op_type in _MAC_OPS)
    if contrib or unknown:
        return _contrib_inferred(model) or inferred
    return inferred


def _contrib_inferred(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """onnxruntime's symbolic shape inference, which knows its contrib ops (Attention, SkipLayerNormalization,
    ...); None where it gives up."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # noqa: BLE001  (it raises on ops it cannot infer; ONNX's inference is the fallback)
        return None


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    shapes = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    for tensor in model.graph.initializer:
        shapes[tensor.name] = list(tensor.dims)
    return shapes


def _is_weight(tensor: onnx.TensorProto, uses: list[tuple[str, int]]) -> bool:
    """Float initializers that are not Q/DQ scales, and integer ones that DequantizeLinear expands."""
    if any(op in _QDQ and position > 0 for op, position in uses):
        return False  # a scale or zero point
    if tensor.data_type in _FLOATS:
        return True
    return any(op == "DequantizeLinear" and position == 0 for op, position in uses)


def _macs(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int | None:
    """The node's MACs: 0 for an op without any, None for a MAC op whose shapes are unknown."""
    op = node.op_type
    if op in ("Attention", "QAttention"):
        return _attention_macs(node, shapes)
    if op not in _MAC_OPS:
        return 0
    out = shapes.get(node.output[0], [])
    weight = _weight_shape(node, shapes)
    if not out or not weight or 0 in out:
        return None
    if op in ("Conv", "ConvInteger"):              # weight [O, I/group, k...]: one dot product per output
        return int(np.prod(out) * np.prod(weight[1:]))
    if op == "ConvTranspose":                       # weight [I, O/group, k...]
        x = shapes.get(node.input[0], [])
        return int(np.prod(x) * np.prod(weight[1:])) if x and 0 not in x else None
    if op == "Gemm":                                # K is weight's first axis unless transB
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return int(np.prod(out) * (weight[1] if trans_b else weight[0]))
    return int(np.prod(out) * weight[-2]) if len(weight) >= 2 else None  # MatMul [.., K, N]


def _attention_macs(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int | None:
    """onnxruntime's fused Attention: the Q, K, V projections (input [B, S, H] x weights [H, 3H']) and the
    score and context products (B x heads x S x S x head_size each: 2 x B x S x S x H')."""
    x, weight = shapes.get(node.input[0], []), _weight_shape(node, shapes)
    if len(x) != 3 or len(weight) != 2 or 0 in x or 0 in weight:
        return None
    batch, tokens, width = x
    return int(batch * tokens * width * weight[1] + 2 * batch * tokens * tokens * weight[1] // 3)


def _weight_shape(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> list[int]:
    """The second input's shape; in QDQ models the shape of the tensor it was dequantized from."""
    return shapes.get(node.input[1], []) if len(node.input) > 1 else []


def output_steps(model_bytes: bytes) -> dict[str, float]:
    """Per graph output produced by DequantizeLinear (QDQ models): its quantization step (largest scale).

    The outputs are float, but only take values on this grid; a device whose integer kernels
    round differently is off by whole steps, which the golden tolerance must allow.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    constants = {t.name: t for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    steps = {}
    for output in model.graph.output:
        node = producers.get(output.name)
        if node is not None and node.op_type == "DequantizeLinear" and node.input[1] in constants:
            steps[output.name] = float(np.max(numpy_helper.to_array(constants[node.input[1]])))
    return steps
