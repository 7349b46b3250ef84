"""A tiny BERT-style encoder written with onnx.helper the way torch.onnx exports one (no PyTorch needed).

int64 `input_ids` and `attention_mask` [batch, sequence] (symbolic axes), Gather embeddings (word +
position), LayerNormalization (opset 17), per layer: Q / K / V as MatMul + Add(bias) -> Reshape(B, S, heads,
dim) -> Transpose, scores MatMul / Div(sqrt dim) / Add((1 - mask) * -10000) / Softmax, context MatMul ->
Transpose -> Reshape(B, S, hidden) -> output MatMul + Add -> residual Add -> LayerNormalization, an Erf GELU
feed-forward block. Layer 0's reshape targets come from Shape -> Gather -> Unsqueeze -> Concat chains with
Constant nodes for heads and dim (as torch.onnx writes them); layer 1's are initializers shared by Q, K and
V. Output: the masked mean over tokens (`sentence_embedding`), or a 3-class linear head on it (`logits`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

VOCAB, HIDDEN, HEADS, LAYERS, FFN, CLASSES, MAX_POS = 60, 32, 4, 2, 64, 3, 32
DIM = HIDDEN // HEADS


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def weight(self, name: str, shape: tuple[int, ...], scale: float, mean: float = 0.0) -> str:
        value = (mean + self.rng.normal(0, scale, shape)).astype(np.float32)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        self.nodes.append(helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(value)))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [f"{name}_output_0"], name=name, **attrs))
        return f"{name}_output_0"

    def layer_norm(self, x: str, name: str) -> str:
        gamma = self.weight(f"{name}.weight", (HIDDEN,), 0.1, mean=1.0)
        beta = self.weight(f"{name}.bias", (HIDDEN,), 0.05)
        return self.op("LayerNormalization", [x, gamma, beta], name, axis=-1, epsilon=1e-12)

    def linear(self, x: str, name: str, fan_in: int, fan_out: int, scale: float, bias: bool = True) -> str:
        w = self.weight(f"{name}.weight", (fan_in, fan_out), scale)
        y = self.op("MatMul", [x, w], f"{name}/MatMul")
        return self.op("Add", [self.weight(f"{name}.bias", (fan_out,), 0.05), y], f"{name}/Add") if bias else y

    def torch_shape(self, of: str, tail: list[int], name: str) -> str:
        """Concat(Unsqueeze(Shape(of)[0]), Unsqueeze(Shape(of)[1]), *tail as Constant nodes), as torch.onnx writes
        x.view(x.size(0), x.size(1), *tail)."""
        parts = []
        for axis in (0, 1):
            shape = self.op("Shape", [of], f"{name}/Shape_{axis}")
            index = self.const(f"{name}/Index_{axis}", np.array(axis, np.int64))
            gathered = self.op("Gather", [shape, index], f"{name}/Gather_{axis}", axis=0)
            zero = self.const(f"{name}/Zero_{axis}", np.array([0], np.int64))
            parts.append(self.op("Unsqueeze", [gathered, zero], f"{name}/Unsqueeze_{axis}"))
        parts += [self.const(f"{name}/Tail_{k}", np.array([v], np.int64)) for k, v in enumerate(tail)]
        return self.op("Concat", parts, f"{name}/Concat", axis=0)


def _embeddings(b: _Builder, fill: float, token_types: bool = False) -> tuple[str, str]:
    """Hidden states after the embedding LayerNorm, and the additive mask [batch, 1, 1, sequence]."""
    words = b.op("Gather", [b.weight("embeddings.word.weight", (VOCAB, HIDDEN), 0.5), "input_ids"],
                 "/embeddings/word/Gather")
    length = b.op("Gather", [b.op("Shape", ["input_ids"], "/embeddings/Shape"),
                             b.const("/embeddings/One", np.array(1, np.int64))], "/embeddings/Gather_len", axis=0)
    positions = b.op("Range", [b.const("/embeddings/Start", np.array(0, np.int64)), length,
                               b.const("/embeddings/Step", np.array(1, np.int64))], "/embeddings/Range")
    pos = b.op("Gather", [b.weight("embeddings.position.weight", (MAX_POS, HIDDEN), 0.5), positions],
               "/embeddings/position/Gather")
    summed = b.op("Add", [words, pos], "/embeddings/Add")
    if token_types:  # BERT's segment embedding: a third int64 input, as torch exports bert-base
        types = b.op("Gather", [b.weight("embeddings.token_type.weight", (2, HIDDEN), 0.5), "token_type_ids"],
                     "/embeddings/token_type/Gather")
        summed = b.op("Add", [summed, types], "/embeddings/Add_types")
    hidden = b.layer_norm(summed, "/embeddings/LayerNorm")
    mask = b.op("Unsqueeze", ["attention_mask", b.const("/mask/Axes", np.array([1, 2], np.int64))], "/mask/Unsqueeze")
    inverted = b.op("Sub", [b.const("/mask/One", np.array(1.0, np.float32)),
                            b.op("Cast", [mask], "/mask/Cast", to=TensorProto.FLOAT)], "/mask/Sub")
    return hidden, b.op("Mul", [inverted, b.const("/mask/Min", np.array(fill, np.float32))], "/mask/Mul")


def _sdpa_scale(b: _Builder, q: str, p: str) -> str:
    """sqrt(1 / sqrt(dim)) from Shape(q), as torch.onnx writes scaled_dot_product_attention's default scale."""
    last = b.op("Slice", [b.op("Shape", [q], f"{p}/Shape"), b.const(f"{p}/Minus1", np.array([-1], np.int64)),
                          b.const(f"{p}/Max", np.array([2**62], np.int64))], f"{p}/Slice")
    size = b.op("Sqrt", [b.op("Cast", [last], f"{p}/Cast", to=TensorProto.FLOAT)], f"{p}/Sqrt")
    scale = b.op("Div", [b.const(f"{p}/One", np.array([1.0], np.float32)), size], f"{p}/Div")
    return b.op("Sqrt", [scale], f"{p}/Sqrt_1")


def _attention(b: _Builder, x: str, mask: str, layer: int, sdpa: bool, bias: bool) -> str:
    p = f"/encoder/layer.{layer}/attention"
    shared = None if layer == 0 else b.init(f"{p}/split_shape", np.array([0, 0, HEADS, DIM], np.int64))
    heads = {}
    key_perm = [0, 2, 1, 3] if sdpa else [0, 2, 3, 1]  # sdpa: K^T by a second Transpose
    for proj, perm in (("query", [0, 2, 1, 3]), ("key", key_perm), ("value", [0, 2, 1, 3])):
        y = b.linear(x, f"{p}/self/{proj}", HIDDEN, HIDDEN, 0.4, bias)
        target = shared or b.torch_shape(y, [HEADS, DIM], f"{p}/self/{proj}/shape")
        split = b.op("Reshape", [y, target], f"{p}/self/{proj}/Reshape")
        heads[proj] = b.op("Transpose", [split], f"{p}/self/{proj}/Transpose", perm=perm)
    if sdpa:
        scale = _sdpa_scale(b, heads["query"], f"{p}/self/scale")
        key = b.op("Transpose", [heads["key"]], f"{p}/self/key/Transpose_1", perm=[0, 1, 3, 2])
        scaled = b.op("MatMul", [b.op("Mul", [heads["query"], scale], f"{p}/self/query/Mul"),
                                 b.op("Mul", [key, scale], f"{p}/self/key/Mul")], f"{p}/self/MatMul")
    else:
        scores = b.op("MatMul", [heads["query"], heads["key"]], f"{p}/self/MatMul")
        scaled = b.op("Div", [scores, b.const(f"{p}/self/Sqrt", np.array(np.sqrt(DIM), np.float32))],
                      f"{p}/self/Div")
    probs = b.op("Softmax", [b.op("Add", [scaled, mask], f"{p}/self/Add")], f"{p}/self/Softmax", axis=-1)
    context = b.op("Transpose", [b.op("MatMul", [probs, heads["value"]], f"{p}/self/MatMul_1")],
                   f"{p}/self/Transpose", perm=[0, 2, 1, 3])
    merge = (b.torch_shape(context, [HIDDEN], f"{p}/self/merge_shape") if layer == 0 else
             b.init(f"{p}/merge_shape", np.array([0, 0, HIDDEN], np.int64)))
    merged = b.op("Reshape", [context, merge], f"{p}/self/Reshape")
    out = b.linear(merged, f"{p}/output/dense", HIDDEN, HIDDEN, 0.3, bias)
    return b.layer_norm(b.op("Add", [out, x], f"{p}/output/Add"), f"{p}/output/LayerNorm")


def _feed_forward(b: _Builder, x: str, layer: int) -> str:
    p = f"/encoder/layer.{layer}"
    up = b.linear(x, f"{p}/intermediate/dense", HIDDEN, FFN, 0.3)
    erf = b.op("Erf", [b.op("Div", [up, b.const(f"{p}/gelu/Sqrt2", np.array(np.sqrt(2), np.float32))],
                            f"{p}/gelu/Div")], f"{p}/gelu/Erf")
    gate = b.op("Add", [erf, b.const(f"{p}/gelu/One", np.array(1.0, np.float32))], f"{p}/gelu/Add")
    gelu = b.op("Mul", [b.op("Mul", [up, gate], f"{p}/gelu/Mul"),
                        b.const(f"{p}/gelu/Half", np.array(0.5, np.float32))], f"{p}/gelu/Mul_1")
    down = b.linear(gelu, f"{p}/output/dense", FFN, HIDDEN, 0.2)
    return b.layer_norm(b.op("Add", [down, x], f"{p}/output/Add"), f"{p}/output/LayerNorm")


def _mean_pool(b: _Builder, x: str) -> str:
    weights = b.op("Cast", [b.op("Unsqueeze", ["attention_mask", b.const("/pool/Axis", np.array([-1], np.int64))],
                                 "/pool/Unsqueeze")], "/pool/Cast", to=TensorProto.FLOAT)
    axis = b.const("/pool/Tokens", np.array([1], np.int64))
    total = b.op("ReduceSum", [b.op("Mul", [x, weights], "/pool/Mul"), axis], "/pool/ReduceSum", keepdims=0)
    count = b.op("Clip", [b.op("ReduceSum", [weights, axis], "/pool/Count", keepdims=0),
                          b.const("/pool/Eps", np.array(1e-9, np.float32))], "/pool/Clip")
    return b.op("Div", [total, count], "/pool/Div")


def tiny_bert(classifier: bool = False, seed: int = 0, sdpa: bool = False, bias: bool = True,
              mask_fill: float = -10000.0, token_types: bool = False) -> onnx.ModelProto:
    """The encoder (LAYERS layers, HIDDEN wide, HEADS heads); `classifier`: a CLASSES-way linear head on the pooled
    output (`logits`) instead of the pooled output itself (`sentence_embedding`); `sdpa`: attention as torch.onnx
    exports F.scaled_dot_product_attention (Q and K^T each scaled by sqrt(1/sqrt(dim)) computed from Shape(q));
    `bias`: False leaves out the attention projections' biases (Q, K, V and output); `mask_fill`: what padded
    positions add to the attention scores (older exports -10000, torch >= 2 float32's lowest, -3.4e38);
    `token_types`: a third input, `token_type_ids` (0 / 1), through a segment embedding."""
    b = _Builder(seed)
    x, mask = _embeddings(b, mask_fill, token_types)
    for layer in range(LAYERS):
        x = _feed_forward(b, _attention(b, x, mask, layer, sdpa, bias), layer)
    pooled = _mean_pool(b, x)
    out_name, width = ("logits", CLASSES) if classifier else ("sentence_embedding", HIDDEN)
    result = b.linear(pooled, "/classifier", HIDDEN, CLASSES, 0.5) if classifier else pooled
    b.nodes.append(helper.make_node("Identity", [result], [out_name], name="/output/Identity"))
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
           for n in ("input_ids", "attention_mask", *(("token_type_ids",) if token_types else ()))]
    output = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", width])
    graph = helper.make_graph(b.nodes, "tiny_bert", ids, [output], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tokens(count: int, length: int, seed: int = 0, padded: bool = True, token_types: bool = False
           ) -> dict[str, np.ndarray]:
    """Random token ids and an attention mask (a random tail of each row padded with id 0, mask 0); `token_types`:
    token_type_ids too (a random second segment of each row typed 1, padding 0)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (count, length)).astype(np.int64)
    mask = np.ones_like(ids)
    if padded:
        for row, used in enumerate(rng.integers(max(2, length // 2), length + 1, count)):
            ids[row, used:], mask[row, used:] = 0, 0
    arrays = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        starts = rng.integers(1, length, count)
        arrays["token_type_ids"] = ((np.arange(length)[None] >= starts[:, None]) & (mask > 0)).astype(np.int64)
    return arrays
