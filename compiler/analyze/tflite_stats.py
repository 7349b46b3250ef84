"""Static facts about a compiled .tflite model: ops, parameters, multiply-accumulates, bytes moved.

MACs are counted for the ops that do the arithmetic (conv, depthwise conv, fully connected,
transpose conv, batch matmul) at batch 1; elementwise ops are left out, as is usual. Per-op
records (MACs, compute dtype, weight and activation bytes) feed the latency estimate; the
operator-code table (op, version) feeds the compatibility check.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from edgekiln.compiler.analyze.graph_stats import GraphStats, OpRecord, total_macs
from edgekiln.compiler.tf_env import quiet_fds

_CONVERSIONS = {"QUANTIZE", "DEQUANTIZE"}
_WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D"}


def open_litert(model_bytes: bytes) -> Any:
    """A LiteRT interpreter over the model, tensors allocated, for reading its graph."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_fds():  # the XNNPACK delegate announces itself on fd 2 at allocation
        interp = Interpreter(model_content=model_bytes)
        interp.allocate_tensors()
    return interp


def tflite_stats(model_bytes: bytes) -> GraphStats:
    """Parameters (constant weights and biases) and MACs of a .tflite model."""
    interp = open_litert(model_bytes)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # noqa: SLF001  (the only API listing the op graph)
    produced = {i for op in ops for i in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    constants = {i for op in ops for i in op["inputs"] if i >= 0 and i not in produced | graph_inputs}
    params = sum(_param_count(i, tensors, ops) for i in constants)
    records = tuple(_record(op, tensors, constants) for op in ops)
    float_ops = sorted({op["op_name"] for op in ops if op["op_name"] not in _CONVERSIONS and
                        any(np.dtype(tensors[i]["dtype"]) == np.float32 for i in op["outputs"])})
    return GraphStats(int(params), total_macs(records), dict(Counter(op["op_name"] for op in ops)),
                      tuple(float_ops), records)


def opcode_versions(model_bytes: bytes) -> list[tuple[str, int]]:
    """Every (builtin op, version) of the model's operator-code table, which an interpreter must resolve.

    Custom ops appear as 'CUSTOM:<name>'. Read from the flatbuffer: no interpreter API lists versions.
    """
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(model_bytes, 0)
    pairs = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # codes > 127 use the new field
        name = names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{(code.CustomCode() or b'').decode(errors='replace')}"
        pairs.append((name, int(code.Version())))
    return sorted(set(pairs))


def _record(op: dict, tensors: dict[int, Any], constants: set[int]) -> OpRecord:
    inputs = [i for i in op["inputs"] if i >= 0]
    weight_bytes = sum(_bytes(tensors[i]) for i in inputs if i in constants)
    activation_bytes = sum(_bytes(tensors[i]) for i in [*inputs, *op["outputs"]] if i not in constants)
    weighted = op["op_name"] in _WEIGHTED and len(inputs) > 1
    dtype_of = tensors[inputs[1] if weighted else inputs[0]]["dtype"] if inputs else np.float32
    variable = [i for i in inputs if i not in constants]
    input_dtype = np.dtype(tensors[variable[0]]["dtype"]).name if variable else "const"
    return OpRecord(op["op_name"], np.dtype(dtype_of).name, _macs(op, tensors), weight_bytes, activation_bytes,
                    input_dtype)


def _bytes(tensor: dict) -> int:
    return int(np.prod(tensor["shape"])) * np.dtype(tensor["dtype"]).itemsize


def _param_count(index: int, tensors: dict[int, Any], ops: list[dict]) -> int:
    """Elements of a constant, unless it is a small int32 shape/axis argument rather than a weight."""
    tensor = tensors[index]
    if np.dtype(tensor["dtype"]).kind == "i" and np.dtype(tensor["dtype"]).itemsize >= 4:
        is_bias = any(op["op_name"] in _WEIGHTED and len(op["inputs"]) > 2 and op["inputs"][2] == index
                      for op in ops)
        if not is_bias:
            return 0
    return int(np.prod(tensor["shape"]))


def _macs(op: dict, tensors: dict[int, Any]) -> int:
    name = op["op_name"]
    if name not in _WEIGHTED and name != "BATCH_MATMUL":
        return 0
    out = tensors[op["outputs"][0]]["shape"]
    weight = tensors[op["inputs"][1]]["shape"]
    if name == "CONV_2D":           # weight [O, kh, kw, I]
        return int(np.prod(out) * np.prod(weight[1:]))
    if name == "DEPTHWISE_CONV_2D":  # weight [1, kh, kw, C*M]: one kh*kw dot product per output
        return int(np.prod(out) * weight[1] * weight[2])
    if name == "FULLY_CONNECTED":    # weight [O, I]
        return int(np.prod(out) * weight[-1])
    if name == "TRANSPOSE_CONV":     # inputs: output_shape, weight [O, kh, kw, I], x
        x = tensors[op["inputs"][2]]["shape"]
        return int(np.prod(x) * np.prod(weight[:3]))
    if name == "BATCH_MATMUL":       # a [..., M, K] @ b [..., K, N]
        a = tensors[op["inputs"][0]]["shape"]
        return int(np.prod(out) * a[-1])
    return int(np.prod(out) * np.prod(weight[1:]))  # CONV_3D
