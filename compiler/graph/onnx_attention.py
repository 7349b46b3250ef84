"""Self-attention layers of ONNX encoders as PyTorch exports them (torch.onnx, optimum: BERT-style), found in the
graph, and the graph helpers head pruning and layer dropping share (running with intermediate outputs, dead-node
removal, reshape targets rewritten).

The pattern recognised, per layer (op names as torch.onnx writes them):

    x -> MatMul(W_q) [-> Add(b_q)] -> Reshape(B, S, heads, dim) -> Transpose(0,2,1,3) ---------> MatMul -> [Div|Mul
    x -> MatMul(W_k) [-> Add(b_k)] -> Reshape(B, S, heads, dim) -> Transpose(0,2,3,1 | ...) ----^   by scalars]
    x -> MatMul(W_v) [-> Add(b_v)] -> Reshape(B, S, heads, dim) -> Transpose(0,2,1,3) --.      -> [Add(mask)] -> Softmax
    Softmax -> MatMul(., V) -> Transpose(0,2,1,3) -> Reshape(B, S, heads*dim) -> MatMul(W_o) [-> Add(b_o)] = output

Q, K and V read the same tensor (self-attention); the reshape targets are constants or Concat chains
(Shape -> Gather -> Unsqueeze for B and S, constants for heads and dim). The scalings may be constants or, as
torch exports F.scaled_dot_product_attention, computed from Shape(q) (Q and K^T each times sqrt(1/sqrt(dim))).
Anything else is listed with the reason (`attention_layers`), never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekiln.compiler.errors import InputModelError, first_line
from edgekiln.compiler.evaluate.metrics import cosine

if TYPE_CHECKING:
    import onnx

_SCALES = {"Div", "Mul"}  # by a scalar: 1/sqrt(dim) before or after the scores MatMul
_SHAPE_MATH = {"Slice", "Gather", "Cast", "Sqrt", "Div", "Mul", "Reciprocal", "Squeeze", "Unsqueeze", "Identity"}
_FLOAT = {1, 10, 11, 16}  # float32, float16, double, bfloat16


@dataclass(frozen=True)
class Attention:
    """One self-attention layer: tensors and initializers by name (Reshapes by their output tensor)."""

    name: str
    x: str                                   # the tensor Q, K and V read: the residual stream entering the block
    weights: tuple[str, str, str]            # Q, K, V kernels [hidden, heads*dim]
    biases: tuple[str | None, str | None, str | None]
    heads: int
    dim: int
    splits: tuple[str, str, str]             # outputs of the Reshapes to (B, S, heads, dim)
    merge: str                               # output of the Reshape to (B, S, heads*dim): the per-head context
    out_weight: str                          # the output projection [heads*dim, hidden]
    out_bias: str | None
    output: str                              # the layer's output (projection + bias), before the residual Add


class Index:
    """Producers, consumers and constant values of a model's graph (read-only)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        from onnx import numpy_helper

        self.nodes = list(model.graph.node)
        self.producer = {out: n for n in self.nodes for out in n.output if out}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.initializers = {t.name for t in model.graph.initializer}
        self.consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for node in self.nodes:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.outputs = [o.name for o in model.graph.output]

    def made_by(self, name: str, *ops: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type in ops else None

    def only_consumer(self, name: str, op: str) -> onnx.NodeProto | None:
        """The one node reading `name`, of type `op`; Shape nodes (the exporter's size arithmetic) do not count."""
        users = [n for n in self.consumers.get(name, []) if n.op_type != "Shape"]
        return users[0] if len(users) == 1 and users[0].op_type == op and name not in self.outputs else None

    def scalar(self, name: str) -> bool:
        """A one-element tensor fixed once the shapes are: a constant, or arithmetic on Shape outputs and constants
        (torch's scaled_dot_product_attention export computes 1/sqrt(dim) from Shape(q) -> Slice -> Cast -> Sqrt)."""
        if name in self.consts:
            return self.consts[name].size == 1
        return self._from_shapes(name, 0)

    def _from_shapes(self, name: str, depth: int) -> bool:
        node = self.producer.get(name)
        if name in self.consts or (node is not None and node.op_type == "Shape"):
            return True
        if node is None or depth > 12 or node.op_type not in _SHAPE_MATH:
            return False
        return all(self._from_shapes(i, depth + 1) for i in node.input if i)

    def other(self, node: onnx.NodeProto, name: str) -> str:
        return node.input[1] if node.input[0] == name else node.input[0]


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> Any:
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _projection(ix: Index, name: str) -> tuple[onnx.NodeProto, onnx.NodeProto | None] | None:
    """(MatMul, bias Add or None) when `name` is x @ W [+ b] with W a 2-D initializer and b a 1-D constant (a scalar
    scaling after it, e.g. Q / sqrt(dim), is passed through: it commutes with the head split)."""
    scale = ix.made_by(name, *_SCALES)
    if scale is not None and ix.scalar(scale.input[1]):
        name = scale.input[0]
    add = ix.made_by(name, "Add")
    if add is not None:
        bias = next((i for i in add.input if i in ix.consts and ix.consts[i].ndim == 1), None)
        matmul = ix.made_by(ix.other(add, bias), "MatMul") if bias is not None else None
        return (matmul, add) if matmul is not None and _weight(ix, matmul) else None
    matmul = ix.made_by(name, "MatMul")
    return (matmul, None) if matmul is not None and _weight(ix, matmul) else None


def _weight(ix: Index, matmul: onnx.NodeProto) -> bool:
    w = matmul.input[1]
    return w in ix.initializers and ix.consts[w].ndim == 2 and len(ix.consumers.get(w, [])) == 1


def _to_reshape(ix: Index, name: str) -> tuple[onnx.NodeProto | None, list[int]]:
    """Back from `name` through Transposes and scalar scalings to a Reshape; the composed permutation."""
    perm = [0, 1, 2, 3]
    for _ in range(6):
        node = ix.producer.get(name)
        if node is None:
            return None, perm
        if node.op_type == "Reshape":
            return node, perm
        if node.op_type == "Transpose":
            perm = [list(_attr(node, "perm", [3, 2, 1, 0]))[p] for p in perm]
            name = node.input[0]
        elif node.op_type in _SCALES and ix.scalar(node.input[1]):
            name = node.input[0]
        else:
            return None, perm
    return None, perm


def _scores_matmul(ix: Index, name: str, depth: int = 0) -> onnx.NodeProto | None:
    """The Q x K^T MatMul behind the Softmax's input: through a scalar Div / Mul and the mask's Add."""
    node = ix.producer.get(name)
    if node is None or depth > 4:
        return None
    if node.op_type == "MatMul" and not any(i in ix.consts for i in node.input):
        return node
    if node.op_type in _SCALES and ix.scalar(node.input[1]):
        return _scores_matmul(ix, node.input[0], depth + 1)
    if node.op_type == "Add" and not any(i in ix.consts for i in node.input):
        return _scores_matmul(ix, node.input[0], depth + 1) or _scores_matmul(ix, node.input[1], depth + 1)
    return None


def shape_entries(ix: Index, target: str) -> list[int | None] | None:
    """A Reshape target's entries (None: computed at run time), or None when its length is unknown."""
    if target in ix.consts:
        return [int(v) for v in ix.consts[target].reshape(-1)]
    concat = ix.made_by(target, "Concat")
    if concat is None:
        return None
    entries: list[int | None] = []
    for part in concat.input:
        if part in ix.consts:
            entries += [int(v) for v in ix.consts[part].reshape(-1)]
        elif ix.made_by(part, "Unsqueeze") is not None:  # one dimension, read with Shape -> Gather
            entries.append(None)
        else:
            return None
    return entries


def attention_layers(model: onnx.ModelProto) -> tuple[list[Attention], dict[str, str]]:
    """The self-attention layers whose heads can be removed, in graph order, and the others with the reason."""
    ix = Index(model)
    ready, blocked = [], {}
    for softmax in (n for n in ix.nodes if n.op_type == "Softmax"):
        name = softmax.name.rsplit("/", 1)[0] if "/" in softmax.name else (softmax.name or softmax.output[0])
        found = _match(ix, softmax, name)
        if isinstance(found, str):
            blocked[name] = found
        else:
            ready.append(found)
    return ready, blocked


def _match(ix: Index, softmax: onnx.NodeProto, name: str) -> Attention | str:
    context = ix.only_consumer(softmax.output[0], "MatMul")
    scores = _scores_matmul(ix, softmax.input[0])
    if context is None or context.input[0] != softmax.output[0] or scores is None:
        return "not the scaled dot-product pattern (Q x K^T -> Softmax -> x V)"
    paths = [_to_reshape(ix, t) for t in (scores.input[0], scores.input[1], context.input[1])]
    splits = [reshape for reshape, perm in paths if reshape is not None and perm[1] == 2]
    if len(splits) != 3:
        return "Q, K or V does not come from a Reshape to (batch, tokens, heads, dim) with heads on axis 2"
    found = [_projection(ix, reshape.input[0]) for reshape in splits]
    projections = [p for p in found if p is not None]
    if len(projections) != 3:
        return "Q, K or V is not a MatMul by its own weight initializer (+ bias)"
    matmuls = [matmul for matmul, _ in projections]
    if len({m.input[0] for m in matmuls}) != 1:
        return "not self-attention (Q, K and V read different tensors)"
    tail = _merge(ix, context)
    if isinstance(tail, str):
        return tail
    merge, (out, out_add) = tail
    heads, dim = _heads(ix, splits, merge, matmuls, out)
    if isinstance(dim, str):
        return dim
    biases = (_bias(ix, projections[0][1]), _bias(ix, projections[1][1]), _bias(ix, projections[2][1]))
    return Attention(name, matmuls[0].input[0], (matmuls[0].input[1], matmuls[1].input[1], matmuls[2].input[1]),
                     biases, heads, dim, (splits[0].output[0], splits[1].output[0], splits[2].output[0]),
                     merge.output[0], out.input[1], _bias(ix, out_add), (out_add or out).output[0])


def _bias(ix: Index, add: onnx.NodeProto | None) -> str | None:
    return None if add is None else next(i for i in add.input if i in ix.consts)


def _merge(ix: Index, context: onnx.NodeProto
           ) -> tuple[onnx.NodeProto, tuple[onnx.NodeProto, onnx.NodeProto | None]] | str:
    """The merging Reshape after the context MatMul and the output projection it feeds."""
    transpose = ix.only_consumer(context.output[0], "Transpose")
    merge = ix.only_consumer(transpose.output[0], "Reshape") if transpose is not None else None
    if transpose is None or list(_attr(transpose, "perm", [])) != [0, 2, 1, 3] or merge is None:
        return "the context is not Transpose(0,2,1,3) -> Reshape(batch, tokens, heads*dim)"
    out = ix.only_consumer(merge.output[0], "MatMul")
    if out is None or out.input[0] != merge.output[0] or not _weight(ix, out):
        return "the merged heads do not feed one output-projection MatMul by a weight initializer"
    add = ix.only_consumer(out.output[0], "Add")
    bias = next((i for i in add.input if i in ix.consts and ix.consts[i].ndim == 1), None) if add else None
    return merge, (out, add if bias is not None else None)


def _heads(ix: Index, splits: list[onnx.NodeProto], merge: onnx.NodeProto, projections: list[onnx.NodeProto],
           out: onnx.NodeProto) -> tuple[int, int | str]:
    """(heads, dim) read from the split Reshapes' targets and checked against every weight; (0, reason) if not."""
    width = int(ix.consts[projections[0].input[1]].shape[1])
    found = set()
    for reshape in splits:
        entries = shape_entries(ix, reshape.input[1])
        if entries is None or len(entries) != 4 or entries[3] is None or entries[2] is None or entries[3] <= 0:
            return 0, "a split Reshape's heads and head size are not constants of a 4-entry target"
        dim = entries[3]
        found.add((entries[2] if entries[2] > 0 else width // dim, dim))
    if len(found) != 1:
        return 0, "Q, K and V are split into different head counts"
    heads, dim = found.pop()
    shapes = {tuple(ix.consts[p.input[1]].shape) for p in projections}
    merged = shape_entries(ix, merge.input[1])
    if len(shapes) != 1 or heads * dim != width or ix.consts[out.input[1]].shape[0] != width:
        return 0, f"{heads} heads x {dim} do not match the projections' widths {sorted(shapes)}"
    if merged is None or merged[-1] not in (width, -1):
        return 0, "the merging Reshape's last entry is not a constant heads*dim"
    return heads, dim


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray], names: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """The graph's outputs and the named intermediate tensors on `feed`, by name, in chunks of the model's fixed
    batch (64 when open; a short last chunk padded by repeating its last sample)."""
    import onnx

    from edgekiln.compiler.graph.onnx_graph import open_session

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    wanted = [o.name for o in copy.graph.output] + [n for n in dict.fromkeys(names)
                                                    if n not in {o.name for o in copy.graph.output}]
    copy.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in wanted[len(copy.graph.output):])
    session = open_session(copy.SerializeToString())
    first = session.get_inputs()[0].shape[0]
    step = first if isinstance(first, int) and first > 0 else 64
    inputs = {i.name: feed[i.name] for i in session.get_inputs()}
    total, parts = len(next(iter(inputs.values()))), []
    for start in range(0, total, step):
        chunk = {k: v[start:start + step] for k, v in inputs.items()}
        real = len(next(iter(chunk.values())))
        chunk = {k: np.concatenate([v, np.repeat(v[-1:], step - real, axis=0)]) if real < step and step == first
                 else v for k, v in chunk.items()}
        try:
            parts.append([o[:real] for o in session.run(wanted, chunk)])
        except Exception as exc:  # noqa: BLE001  (onnxruntime's Fail / InvalidArgument: no common base)
            raise InputModelError(f"onnxruntime cannot run the encoder: {first_line(exc)}",
                                  "check the model runs in onnxruntime on the calibration data") from exc
    return {n: np.concatenate(chunk) for n, chunk in zip(wanted, zip(*parts, strict=True), strict=True)}


def output_cosine(reference: dict[str, np.ndarray], other: onnx.ModelProto, feed: dict[str, np.ndarray]) -> float:
    """Mean over the float graph outputs of the mean cosine of `other`'s output vectors to `reference`'s (per
    token outputs: the real tokens only, as the re-fits see them)."""
    outputs, mask = run(other, feed), feed.get("attention_mask")
    values = [cosine(token_rows(ref, mask).reshape(-1, ref.shape[-1]),
                     token_rows(outputs[name], mask).reshape(-1, ref.shape[-1]))["cosine_mean"]
              for name, ref in reference.items() if ref.dtype.kind == "f" and ref.ndim >= 2]
    return round(float(np.mean(values)), 6) if values else 1.0


def token_rows(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(samples, tokens, ...) -> (rows, ...) without padded tokens (mask 0) when the mask matches; (n, ...)
    arrays are rows already."""
    if mask is not None and values.ndim >= 3 and values.shape[:2] == mask.shape:
        return values[mask.astype(bool)]
    return values.reshape(-1, *values.shape[2:]) if values.ndim >= 3 else values


def set_shape_entry(model: onnx.ModelProto, ix: Index, reshape_output: str, position: int, value: int) -> None:
    """Make the target of the Reshape producing `reshape_output` carry `value` at `position` (in place): a fresh
    constant for this Reshape alone (a target may be shared), or a copy of its Concat with that part replaced."""
    from onnx import helper, numpy_helper

    reshape = next(n for n in model.graph.node if n.op_type == "Reshape" and n.output[0] == reshape_output)
    target, fresh = reshape.input[1], f"{reshape_output}/pruned_shape"
    if target in ix.consts:
        entries = ix.consts[target].reshape(-1).copy()
        entries[position] = value
        model.graph.initializer.append(numpy_helper.from_array(entries.astype(np.int64), fresh))
        reshape.input[1] = fresh
        return
    concat = ix.producer[target]
    offset = position % len(shape_entries(ix, target) or [])
    parts = list(concat.input)
    for k, part in enumerate(parts):
        size = ix.consts[part].size if part in ix.consts else 1
        if offset < size:
            entries = ix.consts[part].reshape(-1).copy()
            entries[offset] = value
            model.graph.initializer.append(numpy_helper.from_array(entries.astype(np.int64), f"{fresh}/part"))
            parts[k] = f"{fresh}/part"
            break
        offset -= size
    model.graph.node.append(helper.make_node("Concat", parts, [fresh], name=f"{concat.name}/pruned", axis=0))
    reshape.input[1] = fresh


def set_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    """Replace the named initializer's value (in place), keeping its dtype."""
    from onnx import numpy_helper

    tensor = next(t for t in model.graph.initializer if t.name == name)
    dtype = numpy_helper.to_array(tensor).dtype
    tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value.astype(dtype)), name))


def tidy(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model (in place) with nodes in topological order, without the nodes and initializers nothing reads
    any more, and without stale intermediate shapes; checked by onnx.checker."""
    import onnx

    graph = model.graph
    needed = {o.name for o in graph.output}
    ordered = _topological(list(graph.node), {i.name for i in graph.input} | {t.name for t in graph.initializer})
    kept = []
    for node in reversed(ordered):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def _topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Nodes ordered so each follows its inputs' producers (appended nodes move to where they can run)."""
    ordered, pending, ready = [], list(nodes), set(available) | {""}
    while pending:
        left = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                left.append(node)
        if len(left) == len(pending):
            ordered += left  # a cycle or a missing input: let onnx.checker name it
            break
        pending = left
    return ordered


def float_params(model: onnx.ModelProto) -> int:
    """Elements of the floating-point initializers (onnx.param_count's measure)."""
    return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type in _FLOAT))
