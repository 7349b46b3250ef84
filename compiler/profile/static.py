"""What each op of a compiled model is, beside its measured time: MACs, params, weight bytes, dtype, fast path, layer.

TFLite: the op records of analyze/tflite_stats.py (the op graph in execution order, the order the profile's rows
have), XNNPACK's partitions from analyze/coverage.py, the Keras layer from the tensor name. ONNX: the
source graph's nodes by name (onnxruntime's optimized graph renames some: '<node>_output_0_nchwc'); the
kernel onnxruntime picked comes with the measured row. An ONNX file tf2onnx made from a Keras model names its
convolutions `Conv__3`: their layers are read from the TensorFlow name scopes of the node and its weights
(`conv2d_4_1/convolution/...` is the Keras layer conv2d_4), as a TFLite op's are from its tensor name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekiln.compiler.analyze.graph_stats import OpRecord


@dataclass(frozen=True)
class OpFacts:
    """The static columns of one profile row; record feeds the cost model (None: no estimate)."""

    layer: str
    macs: int | None  # None: unknown (its shapes could not be inferred)
    params: int
    weight_bytes: int
    dtype: str
    fast_path: bool | str | None
    record: OpRecord | None = None


def tflite_facts(model_bytes: bytes, layer_names: list[str]) -> list[OpFacts]:
    """One OpFacts per node, in the interpreter's node order."""
    from edgekiln.compiler.analyze import coverage
    from edgekiln.compiler.analyze.tflite_stats import _param_count, open_litert, tflite_stats
    from edgekiln.compiler.diagnose.tflite_diagnosis import layer_of

    records = tflite_stats(model_bytes).records
    interp = open_litert(model_bytes)
    ops = interp._get_ops_details()  # noqa: SLF001  (the only API listing the op graph)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    produced = {i for op in ops for i in op["outputs"]} | {d["index"] for d in interp.get_input_details()}
    fast = coverage.covered_nodes(ops)
    facts = []
    for op, record in zip([op for op in ops if op["op_name"] != coverage.DELEGATE], records, strict=False):
        constants = [i for i in op["inputs"] if i >= 0 and i not in produced]
        name = tensors[op["outputs"][0]]["name"] if op["outputs"] else op["op_name"]
        facts.append(OpFacts(layer_of(name, layer_names), record.macs,
                             sum(_param_count(i, tensors, ops) for i in constants), record.weight_bytes,
                             record.dtype, op["index"] in fast, record))
    return facts


def onnx_facts(model_bytes: bytes) -> dict[str, OpFacts]:
    """Node name -> OpFacts of the ONNX file's nodes, also keyed by their output tensors' names
    (onnxruntime names a node it rewrote after its output: '<tensor>_nchwc')."""
    from edgekiln.compiler.analyze.onnx_stats import _inferred, _macs, _shapes
    from edgekiln.compiler.diagnose.layer_names import TF2ONNX_NODE, keras_layers, model_scope

    model = _inferred(model_bytes)
    shapes, constants = _shapes(model), {t.name: t for t in model.graph.initializer}
    dtypes = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.value_info]}
    producers = {out: node for node in model.graph.node for out in node.output}
    facts: dict[str, OpFacts] = {}
    from_keras = any(TF2ONNX_NODE.search(node.name) for node in model.graph.node)
    scope = model_scope([node.name for node in model.graph.node]) if from_keras else ""
    for node in model.graph.node:
        weights = [constants[_through_dq(i, producers)] for i in node.input[1:]
                   if _through_dq(i, producers) in constants]
        elements = sum(int(np.prod(t.dims)) for t in weights)
        size = sum(int(np.prod(t.dims)) * _itemsize(t.data_type) for t in weights)
        dtype = _dtype_name(dtypes.get(node.input[0], 1) if node.input else 1, weights)
        layer = keras_layers([node.name, *(t.name for t in weights)], scope) if from_keras else ""
        facts[node.name] = OpFacts(layer or node.name, _macs(node, shapes), elements, size, dtype, None)
    for tensor, node in producers.items():  # a conv with its activation fused in carries the activation's output
        fact = facts[node.name]
        while node.op_type in _FUSED_ACTIVATIONS and node.input and node.input[0] in producers:
            node = producers[node.input[0]]
            inner = facts[node.name]
            layers = "+".join(dict.fromkeys([*inner.layer.split("+"), *fact.layer.split("+")]))  # a layer once
            fact = OpFacts(layers, inner.macs, inner.params, inner.weight_bytes, inner.dtype, None)
            if node.op_type not in _FUSED_ACTIVATIONS:
                break
        facts.setdefault(tensor, fact)
    return facts


_FUSED_ACTIVATIONS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish"}


def onnx_match(name: str, facts: dict[str, OpFacts]) -> OpFacts | None:
    """The source node behind a node name of onnxruntime's optimized graph."""
    if name in facts:
        return facts[name]
    stem = re.sub(r"_nchwc$|_token_\d+$", "", name)
    return facts.get(stem) or facts.get(re.sub(r"_output_\d+$", "", stem))


def _through_dq(name: str, producers: dict[str, Any]) -> str:
    """An input produced by DequantizeLinear stands for the int8 initializer behind it (QDQ models)."""
    node = producers.get(name)
    return node.input[0] if node is not None and node.op_type == "DequantizeLinear" else name


def _itemsize(data_type: int) -> int:
    from onnx import helper

    return int(np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize)


def _dtype_name(input_type: int, weights: list[Any]) -> str:
    from onnx import helper

    elem = weights[0].data_type if weights else input_type
    return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem or 1)).name)
