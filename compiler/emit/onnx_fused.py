"""onnxruntime's transformer optimizer on a float ONNX encoder: the `fused` candidates' graph.

    1. canonicalise (graph/onnx_layernorm.py): tf2onnx's decomposed LayerNorm -> LayerNormalization,
       its GELU -> the form onnxruntime's Gelu fusion matches (a PyTorch export needs neither);
    2. onnxruntime's basic graph optimization (constant folding, redundant nodes), saved to a file;
    3. `optimizer.optimize_model(model_type="bert", num_heads, hidden_size, opt_level=0)`: the Python
       fusions (Attention, SkipLayerNormalization, BiasGelu, FastGelu, EmbedLayerNormalization, ...).
Step 2 is what optimize_model's own opt_level 1 would run first, except that onnxruntime 1.32 does it in
`optimize_by_onnxruntime`, which imports torch (to ask for ROCm) even on CPU: done here the same way
(ORT_ENABLE_BASIC, ConstantSharing disabled), without torch. The fused ops are com.microsoft contrib ops,
which the CPU execution provider of the same onnxruntime version runs (targets/onnx_contrib_ops.toml).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekiln.compiler.errors import ConversionError, first_line
from edgekiln.compiler.tf_env import quiet_fds

if TYPE_CHECKING:
    import onnx

MODEL_TYPE = "bert"  # what onnxruntime's docs use for BERT-class encoders on CPU


def is_transformer(model: onnx.ModelProto) -> bool:
    """An encoder: a LayerNormalization node, or a Softmax beside a MatMul of two activations (attention scores,
    which tf2onnx's Keras encoders have while their LayerNorm is still decomposed); a CNN ending in Softmax has
    neither."""
    ops = {n.op_type for n in model.graph.node}
    if "LayerNormalization" in ops:
        return True
    constants = {t.name for t in model.graph.initializer}
    activations = any(n.op_type == "MatMul" and not set(n.input) & constants for n in model.graph.node)
    return "Softmax" in ops and activations


def attention_shape(model: onnx.ModelProto) -> tuple[int, int]:
    """(num_heads, hidden_size) read from the graph, (0, 0) where it does not tell (onnxruntime then reads
    them from each attention subgraph itself).

    hidden_size: the width a LayerNormalization normalises (its scale); num_heads: the heads axis of the Reshape
    that splits a [.., hidden_size] tensor into heads: [batch, tokens, heads, head_size] in a PyTorch export,
    [1, tokens, heads, 1, head_size] in tf2onnx's einsum form of Keras' MultiHeadAttention (axes of 1 aside,
    the last two are heads and head_size, heads x head_size = hidden_size).
    """
    import onnx
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    scales = [constants[n.input[1]] for n in model.graph.node
              if n.op_type == "LayerNormalization" and n.input[1] in constants]
    if not scales:
        return 0, 0
    hidden = int(scales[0].size)
    try:
        values = onnx.shape_inference.infer_shapes(model).graph
    except onnx.shape_inference.InferenceError:
        return 0, hidden
    widths = {v.name: v.type.tensor_type.shape.dim[-1].dim_value for v in [*values.value_info, *values.input]
              if v.type.tensor_type.shape.dim}
    for node in model.graph.node:
        shape = constants.get(node.input[1]) if node.op_type == "Reshape" else None
        if shape is None or shape.size < 4 or widths.get(node.input[0]) != hidden:
            continue
        dims = [int(d) for d in shape if d != 1]
        if len(dims) >= 2 and dims[-2] > 1 and dims[-2] * dims[-1] == hidden:
            return dims[-2], hidden
    return 0, hidden


def basic_optimized(source: Path, out: Path) -> None:
    """onnxruntime's basic graph optimization of `source`, written to `out` (optimize_model's first step)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"],
                         disabled_optimizers=["ConstantSharing"])


def optimize(source: Path, workdir: Path) -> tuple[Any, dict[str, int], tuple[int, int]]:
    """Steps 2 and 3 of the module docstring on an ONNX file: the optimizer's OnnxModel, the fusions that
    fired (get_fused_operator_statistics, nonzero counts) and the (num_heads, hidden_size) it was given, read
    from the basic-optimized graph (where constant folding has made the attention Reshape shapes constants)."""
    import logging

    import onnx
    from onnxruntime.transformers import optimizer

    # its "Model producer not matched: Expected pytorch, Got tf2onnx" warning is about its own defaults, not
    # something the user can act on: the fusions that fired are what the build reports
    logging.getLogger("onnxruntime.transformers.optimizer").setLevel(logging.ERROR)
    basic = workdir / "onnx_basic.onnx"
    basic_optimized(source, basic)
    heads, hidden = attention_shape(onnx.load(str(basic)))
    given = (heads, hidden) if heads else (0, 0)  # 0, 0: onnxruntime reads each attention subgraph's own
    optimized = optimizer.optimize_model(str(basic), model_type=MODEL_TYPE, num_heads=given[0], hidden_size=given[1],
                                         opt_level=0)
    return optimized, {op: int(n) for op, n in optimized.get_fused_operator_statistics().items() if n}, (heads, hidden)


def fused(float_model: bytes, workdir: Path) -> tuple[bytes | None, dict]:
    """The fused float graph (None when no fusion fired) and the facts: rewrites, fusions, heads, width."""
    import onnx

    from edgekiln.compiler.graph.onnx_layernorm import canonicalize

    model = onnx.load_from_string(float_model)
    rewrites = {op: n for op, n in canonicalize(model).items() if n}
    workdir.mkdir(parents=True, exist_ok=True)
    source, out = workdir / "onnx_canonical.onnx", workdir / "onnx_fused.onnx"
    onnx.save(model, str(source))
    try:
        with quiet_fds():
            optimized, fusions, (heads, hidden) = optimize(source, workdir)
            if fusions:
                optimized.save_model_to_file(str(out))
    except Exception as exc:  # noqa: BLE001  (the optimizer raises whatever its pattern code meets)
        raise ConversionError(f"onnxruntime's transformer optimizer failed: {first_line(exc)}",
                              "the other ONNX candidates are unaffected") from exc
    facts = {"rewrites": rewrites, "fusions": fusions, "hidden_size": hidden,
             "num_heads": heads or "not in the graph's constants: onnxruntime reads each attention subgraph's own",
             "optimizer": f'optimize_model(model_type="{MODEL_TYPE}", num_heads={heads}, '
                          f'hidden_size={hidden if heads else 0}, opt_level=0) after basic graph optimization'}
    return (out.read_bytes() if fusions else None), facts


def contrib_ops(model_bytes: bytes) -> list[str]:
    """The com.microsoft ops of a model, sorted (what the target's onnxruntime must implement)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    return sorted({n.op_type for n in model.graph.node if n.domain == "com.microsoft"})

