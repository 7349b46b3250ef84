"""Layer dropping for Keras encoders: whole blocks out, the residual stream passes through.

A block is found from the graph, not from layer names: walking the functional graph in order, a *cut* is a
point where a single tensor carries everything that later operations use (the residual stream between two
encoder blocks). Block k runs from the last cut before its MultiHeadAttention to the cut before the next
block's (for the last block: the cut after which the same kinds of operations have run as in the block before
it, or, for a one-block encoder, the last cut of the same shape). The *last* N blocks are dropped (upper
blocks are the most redundant ones: Sajjad et al., "On the effect of dropping layers of pre-trained
transformer models", 2023); the model is rebuilt with the tensor that entered the first dropped block
standing for the one that left the last.

Recovery is training-free: the first Dense layer after the encoder (the classifier or projection head) is
re-fitted by least squares, on calibration data, so that it gives the original model's pre-activation output
from the shortened encoder's features.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.evaluate.metrics import cosine
from edgekiln.compiler.keras_types import KerasModel, KerasTensor
from edgekiln.compiler.prune.heads import fit_linear
from edgekiln.compiler.tf_env import import_keras

MHA = "MultiHeadAttention"


@dataclass(frozen=True)
class KerasBlock:
    """Encoder block k: operations [start, end) of the graph order; `entry` enters it, `exit` leaves it."""

    start: int
    end: int
    entry: KerasTensor
    exit: KerasTensor
    layers: tuple[str, ...]


def _order(model: KerasModel) -> list[Any]:
    """The model's operation calls (nodes: Keras' internal keras.src.ops.node.Node), inputs first, in an order where
    every node follows its inputs."""
    depths = sorted(model._nodes_by_depth, reverse=True)  # noqa: SLF001  (Keras keeps the graph only there)
    return [node for depth in depths for node in model._nodes_by_depth[depth]  # noqa: SLF001
            if not node.is_input]


def _cuts(nodes: list[Any], model: KerasModel) -> dict[int, KerasTensor]:
    """Position -> the one tensor live after the node at that position, where only one is."""
    last_use: dict[int, int] = {}
    for position, node in enumerate(nodes):
        for tensor in node.input_tensors:
            last_use[id(tensor)] = position
    for tensor in model.outputs:
        last_use[id(tensor)] = len(nodes)
    cuts, live = {}, {id(t): t for t in model.inputs if last_use.get(id(t), -1) >= 0}
    for position, node in enumerate(nodes):
        live.update({id(t): t for t in node.output_tensors})
        live = {k: t for k, t in live.items() if last_use.get(k, -1) > position}
        if len(live) == 1:
            cuts[position] = next(iter(live.values()))
    return cuts


def encoder_blocks(model: KerasModel) -> list[KerasBlock]:
    """The model's encoder blocks in order, or a RecipeError saying why none can be dropped."""
    nodes = _order(model)
    cuts = _cuts(nodes, model)
    attention = [i for i, node in enumerate(nodes) if type(node.operation).__name__ == MHA]
    if not attention:
        raise RecipeError("--drop-layers needs a transformer encoder: the model has no MultiHeadAttention layer")
    starts = []
    for at in attention:
        before = [p for p in cuts if p < at]
        if not before and at > 0:
            raise RecipeError(f"cannot find where the block of '{nodes[at].operation.name}' starts: another branch "
                              "(e.g. an attention mask) runs beside the encoder", "drop layers in the source framework")
        starts.append(max(before) + 1 if before else 0)
    if len(set(starts)) != len(starts):
        raise RecipeError("two attention layers share one block (no single residual stream between them)")
    ends = starts[1:] + [_last_end(nodes, cuts, starts)]
    blocks = []
    for start, end in zip(starts, ends, strict=True):
        entry = cuts[start - 1] if start > 0 else model.inputs[0]
        blocks.append(KerasBlock(start, end, entry, cuts[end - 1], tuple(n.operation.name for n in nodes[start:end])))
    return blocks


def _last_end(nodes: list[Any], cuts: dict[int, KerasTensor], starts: list[int]) -> int:
    later = sorted(p for p in cuts if p >= starts[-1])
    if len(starts) > 1:
        previous = [type(n.operation).__name__ for n in nodes[starts[-2]:starts[-1]]]
        for p in later:
            if [type(n.operation).__name__ for n in nodes[starts[-1]:p + 1]] == previous:
                return p + 1
    entry_shape = tuple(nodes[starts[-1]].input_tensors[0].shape)
    same = [p for p in later if tuple(cuts[p].shape) == entry_shape]
    if not same:
        raise RecipeError("cannot find where the last encoder block ends (no residual stream of its shape after it)")
    return same[-1] + 1


def drop(model: KerasModel, count: int, x: np.ndarray, recover: bool) -> tuple[KerasModel, dict]:
    """A copy of `model` without its last `count` encoder blocks, re-fitted head, and the facts."""
    keras = import_keras()
    start_time = time.perf_counter()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    blocks = encoder_blocks(clone)
    if not 0 <= count < len(blocks):
        raise RecipeError(f"--drop-layers {count}: the model has {len(blocks)} encoder block(s) and at least one "
                          "stays", f"give 0 to {len(blocks) - 1}")
    kept = blocks[: len(blocks) - count]
    shortened = _rebuild(clone, blocks[len(kept)], blocks[-1]) if count else clone
    reference = first_output(model.predict(x, batch_size=64, verbose=0))  # predicted once for both cosines
    before = after = output_cosine(model, shortened, x, reference)
    head = _refit_head(model, shortened, clone, blocks[-1], x) if recover and count else None
    if head:
        after = output_cosine(model, shortened, x, reference)
    facts = {"kind": "encoder layers", "count": count,
             "criterion": "the last blocks (upper layers of an encoder are the most redundant)",
             "layers_before": len(blocks), "layers_after": len(kept),
             "blocks": [{"block": k, "layers": list(b.layers), "kept": k < len(kept)} for k, b in enumerate(blocks)],
             "params_before": int(model.count_params()), "params_after": int(shortened.count_params()),
             "recovery": {"method": "reconstruct" if head else "none",
                          "what": f"least-squares re-fit of '{head}' (the first Dense after the encoder)" if head
                          else "none", "samples": int(len(x)), "output_cosine_before": round(before, 6),
                          "output_cosine_after": round(after, 6),
                          "seconds": round(time.perf_counter() - start_time, 2)}}
    return shortened, facts


def without(model: KerasModel, k: int) -> KerasModel:
    """A copy of `model` with encoder block k alone skipped (the residual stream passes through), no recovery:
    prune-scan's per-block sensitivity."""
    blocks = encoder_blocks(model)
    return _rebuild(model, blocks[k], blocks[k])


def block_params(model: KerasModel) -> list[int]:
    """Each encoder block's parameters (the weights of the layers called inside it)."""
    layers = {layer.name: layer for layer in model.layers}  # operations such as `x + y` are not layers
    return [sum(int(layers[n].count_params()) for n in set(b.layers) if n in layers) for b in encoder_blocks(model)]


def _rebuild(model: KerasModel, first: KerasBlock, last: KerasBlock) -> KerasModel:
    """`model`'s graph re-run on fresh inputs with operations [first.start, last.end) skipped: the tensor that
    entered `first` stands for the one that left `last`."""
    keras = import_keras()
    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name) for t in model.inputs]
    values = {id(old): new for old, new in zip(model.inputs, inputs, strict=True)}
    for position, node in enumerate(_order(model)):
        if first.start <= position < last.end:
            if position == last.end - 1:
                values[id(last.exit)] = values[id(first.entry)]
            continue
        args, kwargs = node.arguments.fill_in(values)
        outputs = node.operation(*args, **kwargs)
        for old, new in zip(node.output_tensors, keras.tree.flatten(outputs), strict=True):
            values[id(old)] = new
    rebuilt = keras.Model(inputs, [values[id(t)] for t in model.outputs], name=model.name)
    fresh = keras.models.clone_model(rebuilt)  # its own layers, each called once (head pruning may follow)
    fresh.set_weights(rebuilt.get_weights())
    return fresh


def _refit_head(original: KerasModel, shortened: KerasModel, clone: KerasModel, last: KerasBlock, x: np.ndarray
                ) -> str | None:
    """Least squares for the first Dense after the encoder: the shortened model's features in, the original's
    pre-activation out."""
    keras = import_keras()
    name = next((n.operation.name for n in _order(clone)[last.end:] if type(n.operation).__name__ == "Dense"), None)
    if name is None:
        return None
    layer = original.get_layer(name)
    features = keras.Model(original.inputs, layer._inbound_nodes[0].input_tensors[0]).predict(  # noqa: SLF001
        x, batch_size=64, verbose=0)
    weights = layer.get_weights()
    target = features @ weights[0] + (weights[1] if layer.use_bias else 0.0)
    new_layer = shortened.get_layer(name)
    new_features = keras.Model(shortened.inputs, new_layer._inbound_nodes[0].input_tensors[0]).predict(  # noqa: SLF001
        x, batch_size=64, verbose=0)
    fitted, bias = fit_linear(new_features.reshape(-1, new_features.shape[-1]), target.reshape(-1, target.shape[-1]),
                              layer.use_bias)
    new_layer.set_weights([fitted.astype(weights[0].dtype)] + ([bias.astype(weights[0].dtype)] if bias is not None
                                                                 else []))
    return name


def output_cosine(original: KerasModel, other: KerasModel, x: np.ndarray, reference: np.ndarray | None = None) -> float:
    """Mean cosine of `other`'s first output vectors to `original`'s on `x` (`reference`: original's, if known)."""
    a = first_output(original.predict(x, batch_size=64, verbose=0)) if reference is None else reference
    b = first_output(other.predict(x, batch_size=64, verbose=0))
    return cosine(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]))["cosine_mean"]


def first_output(outputs: np.ndarray | list[np.ndarray] | tuple[np.ndarray, ...]) -> np.ndarray:
    """The first of a Keras model's outputs (predict returns a list for several)."""
    return outputs[0] if isinstance(outputs, list | tuple) else outputs
