"""Hard-swish and hard-sigmoid respelled so that an int8 TFLite model of them stays in LiteRT's fast path.

Measured with onnx2tf 1.29.24, TF 2.21's converter and LiteRT 2.3 (three conv + hard-swish blocks, int8):
- `HardSwish(x)` and `x * Clip(x + 3, 0, 6) / 6` become HARD_SWISH (the converter fuses the chain), which XNNPACK
  runs in float but not in int8: 4 pieces, LiteRT's built-in int8 kernel between them (FACTS.md: ~20-30x slower).
- `x * HardSigmoid(x)` becomes ADD, RELU_0_TO_1, MUL: XNNPACK runs no RELU_0_TO_1, even in float: 4 pieces.
- `(x * 1/6) * Clip(x + 3, 0, 6)` stays ADD (RELU6 fused), MUL, MUL, all XNNPACK int8 kernels: 1 piece. The
  converter's hard-swish patterns match `(x * relu6(x + 3)) * 1/6` and `x * (relu6(x + 3) * 1/6)` only.
So every hard-swish becomes that last form, and a lone hard-sigmoid `Clip(6a x + 6b, 0, 6) * 1/6` (a RELU6 in
place of RELU_0_TO_1). The functions are the same up to float rounding; the caller checks it on real samples.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

_PREFIX = "edgekiln_fast_path"


@dataclass(frozen=True)
class Canonical:
    """The respelled model and how many of each spelling were rewritten (none: the model is returned as given)."""

    model: onnx.ModelProto
    rewritten: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.rewritten)


@dataclass
class _Edit:
    """The rewrite of one model (mutates its copy): new nodes by the index of the node they replace."""

    graph: onnx.GraphProto
    at: dict[int, list[onnx.NodeProto]] = field(default_factory=dict)
    dropped: set[int] = field(default_factory=set)
    constants: dict[float, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    made: int = 0  # nodes made so far (their names' serial numbers)

    def constant(self, value: float) -> str:
        """A float32 scalar initializer of this value (one per value)."""
        if value not in self.constants:
            name = f"{_PREFIX}_const_{len(self.constants)}"
            self.graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), name))
            self.constants[value] = name
        return self.constants[value]

    def node(self, op: str, inputs: list[str], tag: str) -> tuple[onnx.NodeProto, str]:
        self.made += 1
        out = f"{_PREFIX}_{tag}_{self.made}_{op.lower()}"
        return helper.make_node(op, inputs, [out], name=out), out

    def gate(self, x: str, alpha: float, beta: float, tag: str) -> tuple[list[onnx.NodeProto], str]:
        """Clip(6a x + 6b, 0, 6) = 6 HardSigmoid(x; a, b); the Mul is left out when 6a is 1 (hard-swish's)."""
        nodes = []
        if not np.isclose(6 * alpha, 1.0, rtol=1e-6):
            scaled, x = self.node("Mul", [x, self.constant(6 * alpha)], tag)
            nodes.append(scaled)
        shifted, out = self.node("Add", [x, self.constant(6 * beta)], tag)
        clipped, out = self.node("Clip", [out, self.constant(0.0), self.constant(6.0)], tag)
        return [*nodes, shifted, clipped], out

    def swish(self, index: int, x: str, output: str, alpha: float, beta: float, kind: str) -> None:
        """Replace the node at `index` by (x * 1/6) * Clip(6a x + 6b, 0, 6), written to `output`."""
        gate, g = self.gate(x, alpha, beta, "swish")
        sixth, s = self.node("Mul", [x, self.constant(1 / 6)], "swish")
        self.at[index] = [*gate, sixth, helper.make_node("Mul", [s, g], [output], name=f"{_PREFIX}_{output}")]
        self.counts[kind] += 1


def canonicalize(model: onnx.ModelProto) -> Canonical:
    """Every hard-swish spelling as (x * 1/6) * Clip(x + 3, 0, 6), every other HardSigmoid as Clip(..., 0, 6) * 1/6."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    edit = _Edit(copy.graph)
    nodes = list(copy.graph.node)
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for name in n.input:
            consumers.setdefault(name, []).append(i)
    outputs = {o.name for o in copy.graph.output}
    values = {t.name: numpy_helper.to_array(t) for t in copy.graph.initializer}
    for i, n in enumerate(nodes):
        if i in edit.dropped or i in edit.at:
            continue
        if n.op_type == "HardSwish":
            edit.swish(i, n.input[0], n.output[0], 1 / 6, 0.5, "HardSwish")
        elif n.op_type == "HardSigmoid":
            _hard_sigmoid(edit, nodes, i, consumers, outputs)
        elif n.op_type in ("Div", "Mul"):
            _written_out(edit, nodes, i, consumers, values, outputs)
    if not edit.counts:
        return Canonical(model)
    rebuilt = [new for i, n in enumerate(nodes) if i not in edit.dropped for new in edit.at.get(i, [n])]
    del copy.graph.node[:]
    copy.graph.node.extend(rebuilt)
    return Canonical(copy, dict(edit.counts))


def _hard_sigmoid(edit: _Edit, nodes: list[onnx.NodeProto], i: int, consumers: dict[str, list[int]],
                  outputs: set[str]) -> None:
    """x * HardSigmoid(x) (its only use) as a hard-swish; any other HardSigmoid as Clip(6a x + 6b, 0, 6) * 1/6."""
    n = nodes[i]
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    x, g = n.input[0], n.output[0]
    users = consumers.get(g, [])
    if len(users) == 1 and g not in outputs and nodes[users[0]].op_type == "Mul" \
            and sorted(nodes[users[0]].input) == sorted([x, g]):
        edit.dropped.add(i)
        edit.swish(users[0], x, nodes[users[0]].output[0], alpha, beta, "x*HardSigmoid(x)")
        return
    gate, out = edit.gate(x, alpha, beta, "sigmoid")
    edit.at[i] = [*gate, helper.make_node("Mul", [out, edit.constant(1 / 6)], [g], name=f"{_PREFIX}_{g}")]
    edit.counts["HardSigmoid"] += 1


def _written_out(edit: _Edit, nodes: list[onnx.NodeProto], i: int, consumers: dict[str, list[int]],
                 values: dict[str, np.ndarray], outputs: set[str]) -> None:
    """x * Clip(x + 3, 0, 6) / 6 (or * 1/6), each intermediate used once, as (x * 1/6) * Clip(x + 3, 0, 6)."""
    last = nodes[i]
    product = _single_producer(nodes, last.input[0], consumers, outputs, "Mul")
    if product is None or not _scalar_is(values, last.input[1], 6.0 if last.op_type == "Div" else 1 / 6):
        return
    first, second = nodes[product].input
    for x, k in ((first, second), (second, first)):
        clip = _single_producer(nodes, k, consumers, outputs, "Clip")
        if clip is None or len(nodes[clip].input) != 3 or not _scalar_is(values, nodes[clip].input[1], 0.0) \
                or not _scalar_is(values, nodes[clip].input[2], 6.0):
            continue
        add = _single_producer(nodes, nodes[clip].input[0], consumers, outputs, "Add")
        shift = [t for t in nodes[add].input if t != x] if add is not None else []
        if add is not None and len(shift) == 1 and _scalar_is(values, shift[0], 3.0):
            edit.dropped.update({product, clip, add})
            edit.swish(i, x, last.output[0], 1 / 6, 0.5, "x*Clip(x+3,0,6)/6")
            return


def _single_producer(nodes: list[onnx.NodeProto], tensor: str, consumers: dict[str, list[int]], outputs: set[str],
                     op: str) -> int | None:
    """The index of the `op` node producing `tensor` when nothing else reads it, else None."""
    if tensor in outputs or len(consumers.get(tensor, [])) != 1:
        return None
    return next((j for j, n in enumerate(nodes) if tensor in n.output and n.op_type == op), None)


def _scalar_is(values: dict[str, np.ndarray], name: str, expected: float) -> bool:
    value = values.get(name)
    return value is not None and value.size == 1 and bool(np.isclose(float(value.reshape(-1)[0]), expected, rtol=1e-5))
