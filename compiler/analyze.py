"""Static facts about a compiled .tflite model: ops, parameters and multiply-accumulates.

MACs are counted for the ops that do the arithmetic (conv, depthwise conv, fully connected,
transpose conv, batch matmul) at batch 1; elementwise ops are left out, as is usual.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .tf_env import quiet_fds

_WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D"}


@dataclass(frozen=True)
class GraphStats:
    """What `edgekiln inspect` shows and the manifest records for a model."""

    params: int
    macs: int
    ops: dict[str, int] = field(default_factory=dict)


def stats(model_format: str, model_bytes: bytes) -> GraphStats:
    """Params, MACs and ops of a compiled artifact of either format."""
    if model_format == "onnx":
        from .analyze_onnx import onnx_stats

        return onnx_stats(model_bytes)
    return tflite_stats(model_bytes)


def tflite_stats(model_bytes: bytes) -> GraphStats:
    """Parameters (constant weights and biases) and MACs of a .tflite model."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_fds():
        interp = Interpreter(model_content=model_bytes)
    interp.allocate_tensors()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # noqa: SLF001  (the only API listing the op graph)
    produced = {i for op in ops for i in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    constants = {i for op in ops for i in op["inputs"] if i >= 0 and i not in produced | graph_inputs}
    params = sum(_param_count(i, tensors, ops) for i in constants)
    macs = sum(_macs(op, tensors) for op in ops)
    return GraphStats(int(params), int(macs), dict(Counter(op["op_name"] for op in ops)))


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
