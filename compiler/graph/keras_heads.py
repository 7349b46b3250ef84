"""Keras side of attention-head pruning: MultiHeadAttention layers lose whole heads, physically.

Each self-attention MultiHeadAttention (query, value and key the same tensor, no attention mask) is rebuilt
with fewer heads: its query / key / value kernels and biases and its output kernel keep the chosen heads'
slices (compiler/prune/heads.py chooses them on calibration data); key_dim, hidden size and every other
layer stay. Recovery re-fits each pruned layer's output projection by least squares, in model order, on
the pruned model's own inputs to that layer, towards the original layer's outputs, shrunk towards the kept
heads' original projection by a strength chosen on held-out sentences (compiler/prune/heads.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np

from edgekiln.compiler.graph.keras_layers import first_output, output_cosine
from edgekiln.compiler.keras_types import KerasLayer, KerasModel
from edgekiln.compiler.prune import heads as math
from edgekiln.compiler.tf_env import import_keras

MHA = "MultiHeadAttention"


def attention_layers(model: KerasModel) -> tuple[list[str], dict[str, str]]:
    """The MultiHeadAttention layers heads can be removed from, and the others with the reason."""
    ready, blocked = [], {}
    for layer in model.layers:
        if type(layer).__name__ != MHA:
            continue
        nodes = layer._inbound_nodes  # noqa: SLF001  (Keras keeps call arguments only there)
        args, kwargs = nodes[0].arguments.args, nodes[0].arguments.kwargs
        if len(nodes) != 1:
            blocked[layer.name] = "called more than once (shared weights)"
        elif len(args) < 2 or args[0] is not args[1] or (len(args) > 2 and args[2] is not args[0]):
            blocked[layer.name] = "not self-attention (query, key and value differ)"
        elif any(kwargs.get(k) is not None for k in ("attention_mask", "key", "query_mask", "value_mask")) \
                or kwargs.get("use_causal_mask"):
            blocked[layer.name] = "called with a mask (the re-fit assumes unmasked attention)"
        elif layer.get_config().get("use_gate") or layer.get_config().get("output_shape"):
            blocked[layer.name] = "gated or with a custom output shape"
        else:
            ready.append(layer.name)
    return ready, blocked


def _weights(layer: KerasLayer) -> math.AttentionWeights:
    w = [np.asarray(a, np.float64) for a in layer.get_weights()]
    if len(w) == 8:
        return math.AttentionWeights(*w)
    return math.AttentionWeights(w[0], None, w[1], None, w[2], None, w[3], None)


def _set(layer: KerasLayer, w: math.AttentionWeights) -> None:
    arrays = [w.wq, w.bq, w.wk, w.bk, w.wv, w.bv, w.wo, w.bo]
    dtype = layer.get_weights()[0].dtype
    layer.set_weights([a.astype(dtype) for a in arrays if a is not None])


def _probe(model: KerasModel, names: list[str], x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per layer: its query input and its output on `x`."""
    keras = import_keras()
    tensors = []
    for name in names:
        node = model.get_layer(name)._inbound_nodes[0]  # noqa: SLF001
        tensors += [node.arguments.args[0], node.output_tensors[0]]
    values = keras.Model(model.inputs, tensors).predict(x, batch_size=64, verbose=0)
    return {name: (values[2 * k], values[2 * k + 1]) for k, name in enumerate(names)}


def prune(model: KerasModel, ratio: float, x: np.ndarray, recover: bool) -> tuple[KerasModel, dict]:
    """A copy of `model` with round(ratio x heads) of each prunable layer's heads removed, and the facts."""
    keras = import_keras()
    start = time.perf_counter()
    names, blocked = attention_layers(model)
    observed = _probe(model, names, x)
    plans: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        query, _ = observed[name]
        w = _weights(model.get_layer(name))
        s = math.scores(math.head_outputs(query, query, w), w.wo)
        plans[name] = (math.to_keep(s, ratio), s)

    def clone(layer: KerasLayer) -> KerasLayer:
        config = layer.get_config()
        if layer.name in plans:
            config["num_heads"] = len(plans[layer.name][0])
        return layer.__class__.from_config(config)

    pruned = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.name not in plans and layer.weights:
            pruned.get_layer(layer.name).set_weights(layer.get_weights())
    for name, (kept, _) in plans.items():
        _set(pruned.get_layer(name), _weights(model.get_layer(name)).keep(kept))
    reference = first_output(model.predict(x, batch_size=64, verbose=0))  # predicted once for both cosines
    before = after = output_cosine(model, pruned, x, reference)
    chosen: list[dict] = []
    if recover:
        chosen = _refit(pruned, names, plans, observed, x)
        after = output_cosine(model, pruned, x, reference)
    recovery = math.recovery_facts(recover, len(x), (before, after), chosen, time.perf_counter() - start)
    params = (int(model.count_params()), int(pruned.count_params()))
    return pruned, math.pruning_facts(ratio, plans, blocked, params, recovery)


def _refit(pruned: KerasModel, names: list[str], plans: dict[str, tuple[np.ndarray, np.ndarray]],
           observed: dict[str, tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> list[dict]:
    """In model order: the pruned model's query input to the layer (earlier layers already re-fitted) ->
    kept heads -> output projection fitted to the original layer's output, shrunk towards the kept heads'
    original projection (math.refit_output). Per layer: the strength chosen and its held-out error."""
    chosen = []
    for name in names:
        kept, _ = plans[name]
        query, _ = _probe(pruned, [name], x)[name]
        layer = pruned.get_layer(name)
        w = _weights(layer)
        target = observed[name][1]
        fit = math.refit_output(math.head_outputs(query, query, w), target, (w.wo, w.bo))  # a sample per sentence
        _set(layer, math.AttentionWeights(w.wq, w.bq, w.wk, w.bk, w.wv, w.bv, fit.weights, fit.bias))
        chosen.append({"layer": name, **fit.facts()})
    return chosen


@contextlib.contextmanager
def head_masked(model: KerasModel, name: str, head: int) -> Iterator[KerasModel]:
    """`model` (modified in place, restored on exit) with head `head` of attention layer `name` zeroed in the
    output projection: its contribution to the layer's output, exactly what removing the head takes away."""
    layer = model.get_layer(name)
    saved = layer.get_weights()
    w = _weights(layer)
    wo = w.wo.copy()
    wo[head] = 0.0
    _set(layer, math.AttentionWeights(w.wq, w.bq, w.wk, w.bk, w.wv, w.bv, wo, w.bo))
    try:
        yield model
    finally:
        layer.set_weights(saved)


def head_facts(model: KerasModel, x: np.ndarray) -> dict[str, tuple[np.ndarray, int]]:
    """Per prunable attention layer: each head's score (the pruner's criterion on `x`) and one head's
    parameters (query, key, value and output projection slices)."""
    names, _ = attention_layers(model)
    observed = _probe(model, names, x)
    facts = {}
    for name in names:
        w = _weights(model.get_layer(name))
        query = observed[name][0]
        per_head = (w.params() - (0 if w.bo is None else w.bo.size)) // w.heads
        facts[name] = (math.scores(math.head_outputs(query, query, w), w.wo), int(per_head))
    return facts
