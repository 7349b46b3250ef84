"""Recovery of a pruned ONNX model without any training framework: least-squares reconstruction.

Activations come from onnxruntime (the tensors a layer reads are added as extra graph outputs);
the solve is compiler/prune/recover.py's, in NHWC terms, so NCHW activations and OIHW kernels are
transposed on the way in and out. Layers are re-fitted in topological order, each from the model
with the previous re-fits applied.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from edgekiln.compiler.graph.onnx_graph import open_session
from edgekiln.compiler.graph.onnx_prune import ConstWriter, attr, read_model
from edgekiln.compiler.prune import recover as ls
from edgekiln.compiler.prune.channels import Plan
from edgekiln.compiler.prune.groups import Analysis
from edgekiln.compiler.prune.recovery_facts import Reconstruction

if TYPE_CHECKING:
    import onnx


def run(model: onnx.ModelProto, x: np.ndarray, outputs: list[str] | None = None, batch: int = 256) -> list[np.ndarray]:
    """Outputs (the graph's, or the named tensors) of a single-input model on x, in chunks."""
    if outputs:
        model = _exposing(model, outputs)
    session = open_session(model.SerializeToString())
    feed = session.get_inputs()[0]
    fixed = feed.shape[0] if isinstance(feed.shape[0], int) else None
    step = fixed or batch
    names = outputs or [o.name for o in session.get_outputs()]
    parts = [session.run(names, {feed.name: x[k:k + step].astype(np.float32)}) for k in range(0, len(x), step)]
    return [np.concatenate(chunk) for chunk in zip(*parts, strict=True)]


def _exposing(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of the model that also outputs the named intermediate tensors."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    for name in names:
        if name not in present:
            copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return copy


def reconstruct(pruned: onnx.ModelProto, original: onnx.ModelProto, analysis: Analysis, plan: Plan, x: np.ndarray,
                seed: int = 0) -> tuple[onnx.ModelProto, Reconstruction]:
    """Re-fit every conv/dense layer downstream of a removed channel; returns (model, cost facts)."""
    start = time.perf_counter()
    by_output = {n.output[0]: n for n in original.graph.node if n.output}
    layers = [(by_output[name], name) for name in ls.affected(analysis, plan)]
    if not layers:
        return pruned, {"method": "reconstruct", "layers": 0, "samples": len(x), "seconds": 0.0}
    originals = dict(zip([n.input[0] for n, _ in layers], run(original, x, [n.input[0] for n, _ in layers]),
                         strict=True))
    consts = read_model(original).consts
    for k, (node, name) in enumerate(layers):
        x_pruned = run(pruned, x, [node.input[0]])[0]
        kernel, bias, geometry = _canonical(node, consts, originals[node.input[0]].shape)
        new_kernel, new_bias = ls.reconstruct(_nhwc(originals[node.input[0]]), _nhwc(x_pruned),
                                              analysis.mask(node.input[0], plan), analysis.mask(name, plan),
                                              kernel, bias, geometry, seed + k)
        pruned = _write(pruned, name, node.op_type, new_kernel, new_bias)
    return pruned, {"method": "reconstruct", "layers": len(layers), "samples": len(x),
                    "seconds": round(time.perf_counter() - start, 2)}


def _nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def _canonical(node: onnx.NodeProto, consts: dict[str, np.ndarray], in_shape: tuple[int, ...]
               ) -> tuple[np.ndarray, np.ndarray | None, ls.Geometry]:
    """The layer's kernel as HWIO / (in, out), its bias, and its window, from ONNX conventions."""
    w = consts[node.input[1]]
    bias = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
    if node.op_type == "Conv":
        if w.ndim != 4:
            raise ValueError(f"reconstruction handles 2-D convolutions only, not {node.output[0]}")
        kh, kw = w.shape[2:]
        stride = tuple(attr(node, "strides", [1, 1]))
        dilation = tuple(attr(node, "dilations", [1, 1]))
        pads = _pads(node, (in_shape[2], in_shape[3]), (kh, kw), stride, dilation)
        return w.transpose(2, 3, 1, 0), bias, ls.Geometry(kh, kw, stride, dilation, pads)
    kernel = w.T if node.op_type == "Gemm" and attr(node, "transB", 0) else w
    if bias is not None and bias.size != kernel.shape[1]:
        bias = None  # a broadcast scalar bias is not per output: leave it as it is
    return kernel, None if bias is None else bias.reshape(-1), ls.Geometry()


def _pads(node: onnx.NodeProto, size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
          dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    auto = attr(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        top, left, bottom, right = ls.Geometry.same_pads(size, kernel, stride, dilation)
        return (top, left, bottom, right) if auto == "SAME_UPPER" else (bottom, right, top, left)
    if auto == "VALID":
        return 0, 0, 0, 0
    pads = attr(node, "pads", [0, 0, 0, 0])
    return pads[0], pads[1], pads[2], pads[3]


def _write(model: onnx.ModelProto, name: str, op_type: str, kernel: np.ndarray, bias: np.ndarray | None
           ) -> onnx.ModelProto:
    """The model with the named layer's weights replaced (its kernel back in ONNX layout)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    writer = ConstWriter(out.graph, read_model(out))
    node = next(n for n in out.graph.node if n.output and n.output[0] == name)
    if op_type == "Conv":
        kernel = kernel.transpose(3, 2, 0, 1)
    elif op_type == "Gemm" and attr(node, "transB", 0):
        kernel = kernel.T
    writer.set(node, 1, np.ascontiguousarray(kernel))
    if bias is not None:
        old = writer.get(node, 2)
        writer.set(node, 2, bias.reshape(old.shape[:-1] + (-1,)) if old.ndim > 1 else bias)
    return out
