"""Operators that exporters write but ONNX does not define, rewritten into standard ones (in place)."""

from __future__ import annotations

from typing import Any

import numpy as np


def standard_erfc(model: Any) -> int:
    """Rewrite tf2onnx's `Erfc` nodes (Keras' exact GELU: 0.5 x erfc(-x / sqrt 2)) as 1 - Erf(x), in place.

    ONNX has no Erfc operator: tf2onnx 1.17 passes TensorFlow's op through under its own name, and
    onnxruntime refuses the whole model ("No Op registered for Erfc"). Returns the number rewritten.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph, count = model.graph, 0
    nodes = []
    for node in graph.node:
        if node.op_type != "Erfc" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        erf, one = f"{node.output[0]}/erf", f"{node.output[0]}/one"
        graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), one))
        nodes.append(helper.make_node("Erf", [node.input[0]], [erf], name=f"{node.name}/Erf"))
        nodes.append(helper.make_node("Sub", [one, erf], [node.output[0]], name=f"{node.name}/OneMinus"))
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.checker.check_model(model)
    return count
