"""What a source graph says of its outputs' kinds: the activation that ends each output (a Softmax, a Sigmoid).

A final Softmax over the last axis makes an output class probabilities; a final Sigmoid makes each entry a
probability, which is a class decision when the output holds one score per sample (a binary head; several
sigmoid scores may as well be boxes or landmarks squashed into [0, 1], so those are left to the data). The
judge combines this with what the data shows (evaluate/output_kinds.py); `--output-kind` overrides both.

Reshapes between the activation and the output (Flatten, Reshape, Squeeze, Identity) keep its meaning;
anything else (a Transpose, an Add, a Concat) breaks the chain, and the graph says nothing of that output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

    from edgekiln.compiler.keras_types import KerasModel

ACTIVATIONS = ("softmax", "sigmoid")
_PASS_THROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"}  # the values unchanged, regrouped
_ONNX_OPS = {"Softmax": "softmax", "LogSoftmax": "softmax", "Sigmoid": "sigmoid"}


@dataclass(frozen=True)
class FinalActivation:
    """The activation that ends one output (`activation`: one of ACTIVATIONS) and where the graph applies it,
    in words for the summary (e.g. "Softmax node 'prob'", "layer 'dense_2' (activation sigmoid)")."""

    activation: str
    where: str


def final_activations(graph: object) -> dict[str, FinalActivation]:
    """Each output's final activation by output name (outputs ending otherwise are absent) of a working graph
    (KerasGraph, OnnxGraph): ONNX from its nodes, Keras from its layers; a SavedModel source (no Keras model to
    read) and any other graph say nothing."""
    model = getattr(graph, "model", None)
    if model is not None:
        return of_onnx(model)
    keras_model = getattr(graph, "keras_model", None)
    return of_keras(keras_model) if keras_model is not None else {}


# --- ONNX ----------------------------------------------------------------------------------------------------

def of_onnx(model: onnx.ModelProto) -> dict[str, FinalActivation]:
    """The final activation of each graph output whose producing node (through reshapes) is one."""
    producers = {out: node for node in model.graph.node for out in node.output}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    found = {}
    for output in model.graph.output:
        node = producers.get(output.name)
        while node is not None and node.op_type in _PASS_THROUGH and node.input:
            node = producers.get(node.input[0])
        if node is None or node.op_type not in _ONNX_OPS:
            continue
        if node.op_type != "Sigmoid" and not _softmax_on_last_axis(node, _rank(output), opset):
            continue  # a softmax over channels (NCHW segmentation): the last axis is not the class axis
        where = f"{node.op_type} node '{node.name or node.output[0]}'"
        found[output.name] = FinalActivation(_ONNX_OPS[node.op_type], where)
    return found


def _rank(output: onnx.ValueInfoProto) -> int | None:
    tensor = output.type.tensor_type
    return len(tensor.shape.dim) if tensor.HasField("shape") else None


def _softmax_on_last_axis(node: onnx.NodeProto, rank: int | None, opset: int) -> bool:
    """Whether the softmax normalises the output's last axis (before opset 13 the default axis is 1, over the
    flattened rest: the last axis only of a 2-D output)."""
    axis = next((a.i for a in node.attribute if a.name == "axis"), -1 if opset >= 13 else 1)
    if axis == -1:
        return True
    return rank is not None and axis in (rank - 1, -1) if opset >= 13 else rank == 2 and axis in (1, -1)


# --- Keras ---------------------------------------------------------------------------------------------------

def of_keras(model: KerasModel) -> dict[str, FinalActivation]:
    """The final activation of each output, named as the SavedModel export names them (a dict of outputs by
    its keys, else output_0, output_1, ... in the model's order)."""
    structure = getattr(model, "_outputs_struct", None)  # Keras 3 keeps the user's output structure only there
    if isinstance(structure, dict):
        named = list(structure.items())
    else:
        named = [(f"output_{i}", tensor) for i, tensor in enumerate(model.outputs)]
    found = {}
    for name, tensor in named:
        history = getattr(tensor, "_keras_history", None)
        layer = getattr(history, "operation", None)
        if layer is not None and (hit := of_layer(type(layer).__name__, layer.name, layer.get_config())):
            found[name] = hit
    return found


def of_layer(class_name: str, name: str, config: dict[str, Any]) -> FinalActivation | None:
    """The activation a Keras layer ends with: a Softmax layer (over the last axis), an Activation layer, or
    any layer's `activation` argument (Dense, Conv: applied per entry of the last axis)."""
    if class_name == "Softmax":
        axis = config.get("axis", -1)
        return FinalActivation("softmax", f"Softmax layer '{name}'") if axis in (-1, [-1]) else None
    activation = _activation_name(config.get("activation"))
    if activation in ACTIVATIONS:
        return FinalActivation(activation, f"layer '{name}' (activation {activation})")
    return None


def _activation_name(activation: object) -> str | None:
    """A layer config's activation: a name, or a serialized function ({'config': {'name': ...}} and similar)."""
    if isinstance(activation, str):
        return activation
    if isinstance(activation, dict):
        inner = activation.get("config")
        name = inner.get("name") if isinstance(inner, dict) else activation.get("class_name")
        return name if isinstance(name, str) else None
    return None
