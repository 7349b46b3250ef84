"""ONNX side of attention-head pruning: whole heads out of PyTorch-exported encoders, physically.

For every self-attention layer compiler/graph/onnx_attention.py finds, heads are scored on the calibration
data by compiler/prune/heads.py's criterion (mean squared contribution through the output projection), from the
real per-head contexts: onnxruntime runs the model with each layer's merged context (the output projection's
input) and output added as graph outputs, so the attention mask, the exporter's scaling and every detail of
the real attention are in them. The lowest-scoring heads go: Q / K / V kernel columns and biases and the
output-projection rows of those heads are sliced out, and the reshape targets are rewritten (heads -> kept in
the split Reshapes, heads*dim -> kept*dim in the merging one); hidden size and residual stream stay.

Recovery re-fits each pruned layer's output projection by least squares, in model order, from the pruned
model's own contexts (earlier layers already re-fitted) to the original layer's outputs, shrunk towards the
kept heads' original projection by a strength chosen on held-out sentences (compiler/prune/heads.py). Padded tokens
(`attention_mask` 0) are left out of the scores and of the fit: their states are never read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.errors import RecipeError
from edgekiln.compiler.graph.onnx_attention import (
    Attention,
    Index,
    attention_layers,
    float_params,
    output_cosine,
    run,
    set_initializer,
    set_shape_entry,
    shape_entries,
    tidy,
    token_rows,
)
from edgekiln.compiler.prune import heads as math

if TYPE_CHECKING:
    import onnx


def prune_heads(model: onnx.ModelProto, ratio: float, feed: dict[str, np.ndarray], recover: bool
                ) -> tuple[onnx.ModelProto, dict]:
    """A copy of `model` with round(ratio x heads) of each self-attention layer's heads removed, and the facts
    (shaped as compiler/graph/keras_heads.py's). `feed`: calibration inputs by name, in the model's types."""
    start = time.perf_counter()
    layers, blocked = attention_layers(model)
    if not layers:
        why = "; ".join(f"{n}: {r}" for n, r in blocked.items()) or "it has no Softmax attention"
        raise RecipeError(f"--prune-heads found no attention layer to prune ({why})", "leave out --prune-heads")
    mask = feed.get("attention_mask")
    observed = run(model, feed, [name for a in layers for name in (a.merge, a.output)])
    plans: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for a in layers:
        s = _scores(model, a, observed, mask)
        plans[a.name] = (math.to_keep(s, ratio), s)
    pruned = _slice(model, layers, plans)
    reference = {o.name: observed[o.name] for o in model.graph.output}
    before = after = output_cosine(reference, pruned, feed)
    changed = [a for a in layers if len(plans[a.name][0]) < a.heads]
    chosen: list[dict] = []
    if recover and changed:
        chosen = _refit(pruned, changed, plans, observed, feed)
        after = output_cosine(reference, pruned, feed)
    recovery = math.recovery_facts(recover, len(next(iter(feed.values()))), (before, after), chosen,
                                   time.perf_counter() - start)
    return pruned, math.pruning_facts(ratio, plans, blocked, (float_params(model), float_params(pruned)), recovery)


def head_facts(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, int]]:
    """Per prunable attention layer: each head's score (the pruner's criterion on `feed`) and one head's
    parameters (its Q, K, V kernel columns and biases and its output-projection rows), as
    compiler/graph/keras_heads.py's `head_facts`."""
    layers, _ = attention_layers(model)
    observed = run(model, feed, [a.merge for a in layers])
    ix = Index(model)
    facts = {}
    for a in layers:
        kernels = sum(ix.consts[w].shape[0] * a.dim for w in a.weights)
        biases = a.dim * sum(b is not None for b in a.biases)
        facts[a.name] = (_scores(model, a, observed, feed.get("attention_mask")),
                         int(kernels + biases + a.dim * ix.consts[a.out_weight].shape[1]))
    return facts


@contextlib.contextmanager
def head_masked(model: onnx.ModelProto, name: str, head: int) -> Iterator[onnx.ModelProto]:
    """A copy of `model` with head `head` of attention layer `name` zeroed in the output projection (its rows
    of the weight): its contribution to the layer's output, exactly what removing the head takes away. `model`
    itself is not touched."""
    import onnx

    a = next(a for a in attention_layers(model)[0] if a.name == name)
    masked = onnx.ModelProto()
    masked.CopyFrom(model)
    wo = _array(masked, a.out_weight).copy()
    wo[head * a.dim:(head + 1) * a.dim] = 0.0
    set_initializer(masked, a.out_weight, wo)
    yield masked


def _scores(model: onnx.ModelProto, a: Attention, observed: dict[str, np.ndarray], mask: np.ndarray | None
            ) -> np.ndarray:
    """The layer's head scores from its observed merged context (compiler/prune/heads.py's criterion)."""
    return math.scores(_heads_of(observed[a.merge], a, mask), _array(model, a.out_weight).reshape(a.heads, a.dim, -1))


def _array(model: onnx.ModelProto, name: str) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


def _heads_of(context: np.ndarray, a: Attention, mask: np.ndarray | None, heads: int | None = None) -> np.ndarray:
    """The merged context (samples, tokens, heads*dim) as (1, real tokens, heads, dim), float64."""
    rows = token_rows(context, mask).astype(np.float64)
    return rows.reshape(1, len(rows), heads or a.heads, a.dim)


def _columns(kept: np.ndarray, dim: int) -> np.ndarray:
    """Indices along heads*dim of the kept heads: head h is columns [h*dim, (h+1)*dim) after the split."""
    return (kept[:, None] * dim + np.arange(dim)[None, :]).reshape(-1)


def _slice(model: onnx.ModelProto, layers: list[Attention], plans: dict[str, tuple[np.ndarray, np.ndarray]]
           ) -> onnx.ModelProto:
    """A copy of `model` with the removed heads' slices gone and the reshape targets rewritten."""
    import onnx

    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    ix = Index(pruned)
    for a in layers:
        kept = plans[a.name][0]
        if len(kept) == a.heads:
            continue  # nothing removed: the layer stays exactly as it was
        columns = _columns(kept, a.dim)
        for weight, bias in zip(a.weights, a.biases, strict=True):
            set_initializer(pruned, weight, ix.consts[weight][:, columns])
            if bias is not None:
                set_initializer(pruned, bias, ix.consts[bias][columns])
        set_initializer(pruned, a.out_weight, ix.consts[a.out_weight][columns, :])
        for split in a.splits:
            if _entry(ix, split, -2) > 0:  # -1 (inferred) needs no rewrite
                set_shape_entry(pruned, ix, split, -2, len(kept))
        if _entry(ix, a.merge, -1) > 0:
            set_shape_entry(pruned, ix, a.merge, -1, len(kept) * a.dim)
    return tidy(pruned)


def _entry(ix: Index, reshape_output: str, position: int) -> int:
    entries = shape_entries(ix, ix.producer[reshape_output].input[1])
    entry = None if entries is None else entries[position]
    assert entry is not None, "attention_layers checked the target"
    return entry


def _refit(pruned: onnx.ModelProto, layers: list[Attention], plans: dict[str, tuple[np.ndarray, np.ndarray]],
           observed: dict[str, np.ndarray], feed: dict[str, np.ndarray]) -> list[dict]:
    """In model order (in place): the pruned model's context of the kept heads -> output projection fitted to the
    original layer's output on the same real tokens, shrunk towards the kept heads' original projection
    (math.refit_output; each row keeps its sentence's index, so folds hold out whole sentences). Per layer: the
    strength chosen and its held-out error."""
    mask = feed.get("attention_mask")
    chosen = []
    for a in layers:
        kept = plans[a.name][0]
        context = run(pruned, feed, [a.merge])[a.merge]
        target = token_rows(observed[a.output], mask)
        rows = _heads_of(context, a, mask, len(kept))
        original = (_array(pruned, a.out_weight).reshape(len(kept), a.dim, -1),
                    None if a.out_bias is None else _array(pruned, a.out_bias))
        fit = math.refit_output(rows, target[None], original, _sample_of_rows(context, mask, rows.shape[1]))
        set_initializer(pruned, a.out_weight, fit.weights.reshape(len(kept) * a.dim, -1))
        if a.out_bias is not None and fit.bias is not None:
            set_initializer(pruned, a.out_bias, fit.bias)
        chosen.append({"layer": a.name, **fit.facts()})
    return chosen


def _sample_of_rows(context: np.ndarray, mask: np.ndarray | None, rows: int) -> np.ndarray:
    """The sentence each of token_rows(context, mask)'s rows comes from (same selection, same order)."""
    index = np.broadcast_to(np.arange(len(context))[:, None], context.shape[:2])
    sample = token_rows(index[..., None], mask)[:, 0]
    assert len(sample) == rows, "token_rows selects the same rows from the index as from the context"
    return sample
