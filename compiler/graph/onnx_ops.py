"""Operators that exporters write but ONNX does not define, rewritten into standard ones (in place)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx


def standard_erfc(model: onnx.ModelProto) -> int:
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


# Abramowitz & Stegun 7.1.26: erf(x) = 1 - (a1 t + ... + a5 t^5) exp(-x^2), t = 1 / (1 + p x), x >= 0;
# |error| <= 1.5e-7, below float32's resolution of erf's values near 1 (6e-8 steps) times a few.
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf_as_builtins(model: onnx.ModelProto) -> int:
    """Rewrite every `Erf` node (GELU's exact form) as elementwise ops TFLite has builtins for, in place:
    sign(x) * (1 - poly(t) * exp(-x^2)), t = 1 / (1 + p |x|) (Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7).

    onnx2tf turns Erf into the select op FlexErf, which LiteRT cannot run: every PyTorch BERT-family export
    would be left out of TFLite. Only the copy handed to onnx2tf is rewritten; the ONNX candidates keep Erf.
    Returns the number rewritten.
    """
    graph, count, nodes = model.graph, 0, []
    for node in graph.node:
        if node.op_type != "Erf" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        nodes.extend(_erf_nodes(graph, node))
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
    return count


def _erf_nodes(graph: onnx.GraphProto, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """The nodes computing Erf(node.input[0]) into node.output[0] (constants added to `graph`)."""
    from onnx import helper, numpy_helper

    x, out, p = node.input[0], node.output[0], f"{node.output[0]}/as"

    def const(name: str, value: float) -> str:
        graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), f"{p}/{name}"))
        return f"{p}/{name}"

    def op(kind: str, inputs: list[str], name: str) -> str:
        made.append(helper.make_node(kind, inputs, [f"{p}/{name}"], name=f"{node.name}/{name}"))
        return f"{p}/{name}"

    made: list[onnx.NodeProto] = []
    magnitude = op("Abs", [x], "abs")
    t = op("Div", [const("one", 1.0), op("Add", [const("one_", 1.0), op("Mul", [magnitude, const("p", _AS_P)],
                                                                              "px")], "den")], "t")
    poly = const("a5", _AS_A[4])
    for k in (3, 2, 1, 0):  # Horner: ((a5 t + a4) t + a3) t ... then times t
        poly = op("Add", [op("Mul", [poly, t], f"h{k}"), const(f"a{k + 1}", _AS_A[k])], f"s{k}")
    poly = op("Mul", [poly, t], "poly")
    decay = op("Exp", [op("Neg", [op("Mul", [x, x], "sq")], "negsq")], "exp")
    positive = op("Sub", [const("one__", 1.0), op("Mul", [poly, decay], "tail")], "erf_abs")
    made.append(helper.make_node("Mul", [op("Sign", [x], "sign"), positive], [out], name=f"{node.name}/erf"))
    return made
