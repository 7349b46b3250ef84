"""Layer dropping for ONNX encoders (PyTorch exports): the last N blocks out, the residual stream passes through.

Blocks are found from the attention layers compiler/graph/onnx_attention.py recognises: block k starts at the
tensor its Q / K / V projections read (the residual stream) and ends where block k+1 starts. The last block ends
at the first tensor after its attention that the same kinds of operations lead to as in the block before it
(for BERT: the feed-forward LayerNormalization). The last N blocks are dropped (upper blocks are the most
redundant: Sajjad et al. 2023): whatever read the last block's output reads the tensor that entered the first
dropped block, and the nodes and initializers nothing reads any more go.

Recovery is training-free: the first MatMul by a weight after the encoder (a pooler or classifier head, with its
bias Add) is re-fitted by least squares on calibration data to give the original model's output of that layer
from the shortened encoder's features. A pure embedding model (mean pooling as output) has none.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.graph.onnx_attention import (
    Index,
    attention_layers,
    float_params,
    output_cosine,
    run,
    set_initializer,
    tidy,
    token_rows,
)
from edgekiln.compiler.prune.heads import fit_linear

if TYPE_CHECKING:
    import onnx

NO_HEAD = "none: no linear head after the encoder"


@dataclass(frozen=True)
class OnnxBlock:
    """Encoder block k: the tensor entering it, the one leaving it, and its weighted nodes (for the manifest)."""

    entry: str
    exit: str
    layers: tuple[str, ...]
    query_weight: str  # its attention's Q kernel: gone once the block is dropped


def encoder_blocks(model: onnx.ModelProto) -> list[OnnxBlock]:
    """The encoder blocks in order, or a RecipeError saying why they cannot be told apart."""
    layers, blocked = attention_layers(model)
    if blocked:
        name, reason = next(iter(blocked.items()))
        raise RecipeError(f"--drop-layers cannot delimit the encoder blocks: attention '{name}': {reason}")
    if not layers:
        raise RecipeError("--drop-layers needs a transformer encoder: the model has no self-attention (Softmax) layer")
    ix = Index(model)
    entries = [a.x for a in layers]
    if len(set(entries)) != len(entries):
        raise RecipeError("two attention layers read one tensor (no single residual stream between blocks)")
    exits = entries[1:] + [_last_exit(ix, entries) if len(entries) > 1 else ""]
    return [OnnxBlock(entry, end, tuple(n.name or n.output[0] for n in _between(ix, entry, end)
                                    if n.op_type in ("MatMul", "LayerNormalization")), a.weights[0])
            for entry, end, a in zip(entries, exits, layers, strict=True)]


def _between(ix: Index, entry: str, end: str) -> list[onnx.NodeProto]:
    """The nodes on the way from `entry` to `end`: descendants of the one and ancestors of the other, in order.
    Shape arithmetic is not followed (Shape -> Gather -> Concat chains or folded constants: the same block either
    way)."""
    below, stack = set(), [entry]
    while stack:
        for node in ix.consumers.get(stack.pop(), []):
            if id(node) not in below and node.op_type != "Shape":
                below.add(id(node))
                stack.extend(node.output)
    above, stack = set(), [end]
    while stack:
        producer = ix.producer.get(stack.pop())
        if producer is not None and id(producer) not in above:
            above.add(id(producer))
            stack.extend(producer.input)
    return [n for n in ix.nodes if id(n) in below and id(n) in above]


def _last_exit(ix: Index, entries: list[str]) -> str:
    """The first tensor after the last block's entry that the same operations lead to as the previous block's."""
    previous = Counter(n.op_type for n in _between(ix, entries[-2], entries[-1]))
    start = ix.consumers.get(entries[-1], [])
    first = min(ix.nodes.index(n) for n in start)
    for node in ix.nodes[first:]:
        for out in node.output:
            if out and Counter(n.op_type for n in _between(ix, entries[-1], out)) == previous:
                return out
    raise RecipeError("cannot find where the last encoder block ends (no tensor after it that the same operations "
                      "as in the block before lead to)")


def drop(model: onnx.ModelProto, count: int, feed: dict[str, np.ndarray], recover: bool
         ) -> tuple[onnx.ModelProto, dict]:
    """A copy of `model` without its last `count` encoder blocks, its head re-fitted, and the facts (shaped as
    compiler/graph/keras_layers.py's). `feed`: calibration inputs by name, in the model's types."""
    start = time.perf_counter()
    blocks = encoder_blocks(model)
    if not 0 <= count < len(blocks):
        raise RecipeError(f"--drop-layers {count}: the model has {len(blocks)} encoder block(s) and at least one "
                          "stays", f"give 0 to {len(blocks) - 1}")
    kept = len(blocks) - count
    shortened = _shortened(model, blocks[kept:]) if count else _copy(model)
    reference = run(model, feed)
    before = after = output_cosine(reference, shortened, feed)
    head = _refit_head(model, shortened, blocks[-1].exit, feed) if recover and count else None
    if head:
        after = output_cosine(reference, shortened, feed)
    facts = {"kind": "encoder layers", "count": count,
             "criterion": "the last blocks (upper layers of an encoder are the most redundant)",
             "layers_before": len(blocks), "layers_after": kept,
             "blocks": [{"block": k, "layers": list(b.layers), "kept": k < kept} for k, b in enumerate(blocks)],
             "params_before": float_params(model), "params_after": float_params(shortened),
             "recovery": {"method": "reconstruct" if head else "none",
                          "what": f"least-squares re-fit of '{head}' (the first MatMul after the encoder)" if head
                          else ("none" if not (recover and count) else NO_HEAD),
                          "samples": len(next(iter(feed.values()))), "output_cosine_before": before,
                          "output_cosine_after": after, "seconds": round(time.perf_counter() - start, 2)}}
    return shortened, facts


def without(model: onnx.ModelProto, k: int) -> onnx.ModelProto:
    """A copy of `model` with encoder block k alone skipped (whatever read its output reads its input: the residual
    stream passes through), no recovery: prune-scan's per-block sensitivity."""
    blocks = encoder_blocks(model)
    if not blocks[k].exit:
        raise RecipeError("a single encoder block cannot be skipped (no block before it to tell where it ends)")
    return _shortened(model, blocks[k:k + 1])


def block_params(model: onnx.ModelProto) -> list[int]:
    """Each encoder block's parameters: the float weights that skipping it alone removes."""
    total = float_params(model)
    return [total - float_params(without(model, k)) for k in range(len(encoder_blocks(model)))]


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _shortened(model: onnx.ModelProto, dropped: list[OnnxBlock]) -> onnx.ModelProto:
    """The model with the last dropped block's exit replaced by the first one's entry wherever it is read (a graph
    output keeps its name through an Identity), and what then feeds nothing removed. `dropped`: consecutive blocks,
    the last ones (--drop-layers) or any one (`without`)."""
    from onnx import helper

    entry, exit_ = dropped[0].entry, dropped[-1].exit
    out = _copy(model)
    for node in out.graph.node:
        for k, name in enumerate(node.input):
            if name == exit_:
                node.input[k] = entry
    if exit_ in {o.name for o in out.graph.output}:  # the encoder's states are an output (sentence-transformers)
        producer = next(n for n in out.graph.node if exit_ in n.output)
        out.graph.node.remove(producer)
        out.graph.node.append(helper.make_node("Identity", [entry], [exit_], name=f"{exit_}/dropped_blocks"))
    tidy(out)
    if {b.query_weight for b in dropped} & {t.name for t in out.graph.initializer}:
        raise RecipeError("the dropped blocks' tensors are read outside them (not a plain stack of encoder blocks)",
                          "drop layers in the source framework")
    return out


def _head(ix: Index, exit_: str) -> tuple[onnx.NodeProto, onnx.NodeProto | None] | None:
    """The first MatMul by a 2-D weight initializer downstream of the encoder's output, with its bias Add."""
    below, stack = set(), [exit_]
    while stack:
        for node in ix.consumers.get(stack.pop(), []):
            if id(node) not in below:
                below.add(id(node))
                stack.extend(node.output)
    for node in ix.nodes:
        if id(node) in below and node.op_type == "MatMul" and node.input[1] in ix.initializers \
                and ix.consts[node.input[1]].ndim == 2:
            add = ix.only_consumer(node.output[0], "Add")
            bias = next((i for i in add.input if i in ix.initializers and ix.consts[i].ndim == 1), None) \
                if add is not None else None
            return node, (add if bias is not None else None)
    return None


def _refit_head(original: onnx.ModelProto, shortened: onnx.ModelProto, exit_: str, feed: dict[str, np.ndarray]
                ) -> str | None:
    """Least squares (in place) for the head: the shortened model's features in, the original's head output out."""
    ix = Index(original)
    found = _head(ix, exit_)
    if found is None:
        return None
    matmul, add = found
    target_name = (add or matmul).output[0]
    observed = run(original, feed, [target_name])
    features = run(shortened, feed, [matmul.input[0]])[matmul.input[0]]
    mask = feed.get("attention_mask")
    x, y = token_rows(features, mask), token_rows(observed[target_name], mask)
    bias = None if add is None else next(i for i in add.input if i in ix.initializers)
    weights, fitted_bias = fit_linear(x.reshape(len(x), -1), y.reshape(len(y), -1), bias is not None)
    set_initializer(shortened, matmul.input[1], weights)
    if bias is not None and fitted_bias is not None:
        set_initializer(shortened, bias, fitted_bias.reshape(ix.consts[bias].shape))
    return matmul.name or matmul.output[0]
