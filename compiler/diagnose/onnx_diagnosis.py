"""Which nodes of an onnxruntime QDQ int8 model add its error: float and int8 activations compared node by node.

Both models (the pre-processed float model quantize_static started from, and its QDQ int8 model) get
every compute node's output as an extra graph output; the QDQ model keeps those names for the float
outputs of its compute nodes, and its dequantized copy (`<name>_DequantizeLinear_Output`) is what the
next node sees, so that is compared. A node's share is the relative noise power (error power / signal power)
it adds over the noisiest of its inputs: quantizing its inputs and weights is what it adds, and that is
what keeping the node in float (`nodes_to_exclude`) removes. Shares are of the sum over all nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekiln.compiler.graph.onnx_graph import open_session
from edgekiln.compiler.manifest_schema import Diagnosis, NodeFacts

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
SAMPLES = 32     # calibration samples run through both models
TOP = 10         # nodes listed in the manifest's diagnosis


@dataclass(frozen=True)
class NodeError:
    """One compute node: its output's SQNR against float, and the relative noise power it adds."""

    name: str
    op: str
    sqnr_db: float | None  # None: bit-exact
    added: float
    share: float = 0.0
    output: bool = False  # produces a graph output (the last layer: often worth keeping in float)
    layer: str = ""  # the Keras layers behind a node of a file tf2onnx made (layer_names.keras_layers), else ""

    def to_dict(self) -> NodeFacts:
        sqnr = None if self.sqnr_db is None else round(self.sqnr_db, 2)
        facts: NodeFacts = {"name": self.name, "op": self.op, "sqnr_db": sqnr, "share": round(self.share, 4)}
        if self.layer:
            facts["layer"] = self.layer
        return facts


def node_errors(float_bytes: bytes, int8_bytes: bytes, feeds: list[dict[str, np.ndarray]]) -> list[NodeError]:
    """Every compute node of the int8 model, worst (largest added noise) first."""
    import onnx

    int8 = onnx.load_from_string(int8_bytes)
    nodes = [n for n in int8.graph.node if n.op_type not in QDQ_OPS and n.name]
    layers = node_layers(int8)
    produced = {o for n in int8.graph.node for o in n.output}
    tracked = list(dict.fromkeys(float_name(o) for n in nodes for o in n.output if o))
    # What consumers see: the dequantized tensor where there is one (a fused Relu only clamps there);
    # a quantized graph output keeps its name on the DequantizeLinear that ends the graph.
    seen = {t: f"{t}_DequantizeLinear_Output" if f"{t}_DequantizeLinear_Output" in produced else t
            for t in tracked}
    reference = _activations(float_bytes, tracked, feeds)
    ours = _activations(int8_bytes, list(seen.values()), feeds)
    noise = {t: _relative_noise(reference[t], ours[seen[t]]) for t in tracked if t in reference and seen[t] in ours}
    graph_outputs = {o.name for o in int8.graph.output}
    errors = []
    for node in nodes:
        outs = [float_name(o) for o in node.output if float_name(o) in noise]
        if not outs:
            continue
        out = max(noise[o] for o in outs)
        before = max((noise.get(float_name(i), 0.0) for i in node.input if i), default=0.0)
        sqnr = None if out == 0 else -10 * math.log10(out)
        errors.append(NodeError(node.name, node.op_type, sqnr, max(out - before, 0.0),
                                output=bool(graph_outputs & set(outs)), layer=layers.get(node.name, "")))
    total = sum(e.added for e in errors) or 1.0
    ranked = sorted(errors, key=lambda e: -e.added)
    return [NodeError(e.name, e.op, e.sqnr_db, e.added, e.added / total, e.output, e.layer) for e in ranked]


def node_layers(model: Any) -> dict[str, str]:
    """Node name -> the Keras layers behind it, for a file tf2onnx made from a Keras model (its Conv__3 is named by
    its own and its weights' TensorFlow scopes); {} for any other file, whose node names are the user's."""
    from edgekiln.compiler.diagnose.layer_names import TF2ONNX_NODE, keras_layers, model_scope

    if not any(TF2ONNX_NODE.search(n.name) for n in model.graph.node):
        return {}
    constants = {t.name for t in model.graph.initializer}
    dequantized = {o: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    scope = model_scope([n.name for n in model.graph.node if n.op_type not in QDQ_OPS])
    weights = {n.name: [dequantized.get(i, i) for i in n.input[1:] if dequantized.get(i, i) in constants]
               for n in model.graph.node}
    return {name: found for name, names in weights.items() if (found := keras_layers([name, *names], scope))}


def report(errors: list[NodeError], samples: int, accurate: str = "", failure: str = "") -> Diagnosis:
    """The manifest's quantization.diagnosis for ONNX int8: nodes ranked by their share of the error."""
    top = errors[:TOP]
    causes = [f"{e.name}{f' (layer {e.layer})' if e.layer else ''} ({e.op}) adds {e.share:.0%} of the int8 error"
              for e in top[:3] if e.share > 0]
    if accurate:
        causes.insert(0, f"plain int8 is accurate enough ({accurate})")
    if failure:
        causes.append(failure)
    return {"of": "int8 (plain: onnxruntime QDQ, no node kept in float but those int8 cannot represent)",
            "method": "float vs QDQ activations per node, relative noise power added",
            "samples": samples, "nodes": [e.to_dict() for e in top], "causes": causes}


def _activations(model_bytes: bytes, names: list[str], feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The named intermediate tensors over all feeds (names the model lacks are skipped)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    produced = {o for n in model.graph.node for o in n.output}
    existing = {o.name for o in model.graph.output}
    wanted = [n for n in names if n in produced]
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in wanted if n not in existing)
    session = open_session(model.SerializeToString(), optimize=False)  # keep every tensor
    outputs = [o.name for o in session.get_outputs()]
    runs = [session.run(None, feed) for feed in feeds]
    return {name: np.concatenate([np.asarray(r[i], np.float32).ravel() for r in runs])
            for i, name in enumerate(outputs) if name in wanted}


def float_name(name: str) -> str:
    """The float model's name of a tensor of the QDQ model (its Q/DQ suffixes dropped)."""
    for suffix in ("_DequantizeLinear_Output", "_QuantizeLinear_Input"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _relative_noise(reference: np.ndarray, ours: np.ndarray) -> float:
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    if reference.shape != ours.shape:
        return 0.0
    noise = float(np.sum((reference.astype(np.float64) - ours) ** 2))
    return noise / signal if signal > 0 else 0.0
