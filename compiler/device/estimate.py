"""A latency estimate for a target device, from the compiled model's per-op MACs and bytes.

The cost model (a per-op roofline with a serial per-op overhead), for `threads` threads:

    t_op  = max(MACs / (rate[dtype] * n_eff), bytes / bandwidth) + overhead
    n_eff = 1 + (threads - 1) * thread_efficiency
    t     = sum over ops of t_op

rate is the target's per-core multiply-accumulate throughput for float or int8 kernels, bytes
the op's weights plus its input and output activations. The figures live in the target's TOML
(`[estimate]`), fitted by bench/fit_estimate.py to published measurements (the anchors), with
the error band measured by leave-one-out on those anchors (each predicted by figures fitted on
the others); a board with no published figure of its own has no band (low/high null, "band
unknown"). The estimate is labelled `method: "estimate"`.

Per op class and dtype (OP_CLASSES, and `BASIS` says what each rule rests on):
- conv, depthwise, fully connected: compute at the fitted rate of their compute dtype. int8 weights
  with float input (dynamic range) compute in float; float16 weights are dequantized at load (a
  DEQUANTIZE of a constant costs nothing at run time) and run at the float32 rate.
- elementwise, pooling, resize, layout, conversions: bytes moved at the fitted bandwidth.
- an op outside the XNNPACK fast path (the candidate's measured coverage) runs on LiteRT's built-in
  kernels: on one thread, SLOW_KERNEL_FACTOR times XNNPACK's float32 time of the op (measured on a build
  host: no published Pi figure gives it), and each extra XNNPACK piece is one more
  DELEGATE node (one more op overhead, as in the fit: the anchors' DELEGATE nodes are costed the same).
- 16x8 (int16 activations, int8 weights): no int8 kernel runs it, so it is charged at the float32 rate, never
  the int8 one (computes_in_int8). TFLite: XNNPACK takes no 16x8 op, so the measured coverage puts every op on
  LiteRT's built-in kernels, charged as above; bench/slow_kernels.py measured the 16x8 kernels against XNNPACK
  float32 on a build host (conv 24.2x, fully connected 6.1x, add 16.8x), in line with SLOW_KERNEL_FACTOR. ONNX:
  onnxruntime fuses no 16-bit QDQ group (its optimized graph keeps Conv between DequantizeLinear and
  QuantizeLinear), so each op runs at the float32 rate and its Q/DQ nodes are charged as ops of their own.

An op whose MACs or activation bytes are unknown (ONNX shape inference failed on it: analyze/onnx_stats.py) is
charged what is known of it, so the sum is a lower bound: the manifest's estimate says so (`lower_bound`,
`how.unknown`), and a candidate's estimate, which the choice compares, is refused (None) rather than compared
as a bound: the choice then falls back to host timing and says why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from edgekiln.compiler.analyze.graph_stats import UNKNOWN_SHAPES, OpRecord, unknown_note
from edgekiln.compiler.manifest_schema import CoverageFacts, TargetEstimate, provenance
from edgekiln.targets import NO_BAND, Estimate, Target

MODEL = "per-op roofline: max(MACs / (rate[dtype] x n_eff), bytes / bandwidth) + per-op overhead"
_INT8_TYPES = {"int8", "uint8"}  # int8 kernels; float16 weights are dequantized to float32; int16: 16x8, see above
_SIXTEEN = "int16"
_MAC_CLASSES = {"conv", "depthwise", "fully_connected", "attention"}
OP_CLASSES = {
    **dict.fromkeys(("CONV_2D", "TRANSPOSE_CONV", "CONV_3D", "Conv", "ConvTranspose", "QLinearConv"), "conv"),
    "DEPTHWISE_CONV_2D": "depthwise",
    **dict.fromkeys(("FULLY_CONNECTED", "BATCH_MATMUL", "Gemm", "MatMul", "QLinearMatMul", "MatMulInteger"),
                    "fully_connected"),
    # onnxruntime's fused transformer ops (com.microsoft): the attention products at the FC rate; the fused
    # LayerNorm / GELU kernels (SkipLayerNormalization, BiasGelu, FastGelu, ...) are elementwise, by bytes
    **dict.fromkeys(("Attention", "QAttention"), "attention"),
    **dict.fromkeys(("AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "GlobalAveragePool", "AveragePool", "MaxPool",
                     "ReduceMean"), "pooling"),
    **dict.fromkeys(("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "Resize", "Upsample"), "resize"),
    **dict.fromkeys(("RESHAPE", "SQUEEZE", "TRANSPOSE", "CONCATENATION", "PAD", "SLICE", "STRIDED_SLICE",
                     "Reshape", "Squeeze", "Transpose", "Concat", "Pad", "Slice", "Flatten"), "layout"),
    **dict.fromkeys(("QUANTIZE", "DEQUANTIZE", "QuantizeLinear", "DequantizeLinear"), "conversion"),
    "DELEGATE": "partition",
}  # anything else is elementwise (activations, ADD, MUL, SOFTMAX, ...)
# Measured on a build host (AMD EPYC, AVX2, no VNNI) by bench/slow_kernels.py; no published figure on a
# Pi exists. One thread, one 32x32x64 tensor, int8 on LiteRT's built-in kernels vs the same op in float32
# on XNNPACK, two runs: HARD_SWISH 32.8x / 22.5x, PRELU 27.3x / 30.8x, ADD 12.7x / 10.0x, medians 27.3x
# and 22.5x; their mean is charged on the op's float32-sized bytes (the built-in int8 kernels are
# compute-bound: their time follows elements, not int8 bytes).
SLOW_KERNEL_FACTOR = 25.0
# onnxruntime's fused elementwise ops (emit/onnx_fused.py): one kernel where the float graph had several
FUSED_ELEMENTWISE = ("SkipLayerNormalization", "EmbedLayerNormalization", "LayerNormalization", "BiasGelu", "FastGelu",
                     "Gelu", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization", "BiasSoftmax")
_ITEMSIZE = {"int8": 1, "uint8": 1, "int16": 2, "float16": 2}
BASIS = {
    "conv": "fitted int8 / float32 rates (the anchors are conv + depthwise + FC networks: one rate each dtype)",
    "depthwise": "the conv rate: no published per-op figure separates depthwise from conv",
    "fully_connected": "the conv rate: no published per-op figure separates FC from conv",
    "attention": "onnxruntime's fused Attention (Q/K/V projections, score and context products): the conv rate, "
                 "as for FC; no published figure for the fused kernel (its saving is in fewer ops and bytes)",
    "elementwise": "bytes at the fitted bandwidth: no published per-op figure",
    "pooling": "bytes at the fitted bandwidth: no published per-op figure",
    "resize": "bytes at the fitted bandwidth: no published per-op figure",
    "dynamic_range": "float32 rate (int8 weights, float activations): no published Pi figure supports a faster one",
    "float16": "float32 rate: float16 weights are dequantized at load",
    "outside_fast_path": f"built-in kernels on one thread, {SLOW_KERNEL_FACTOR:g}x XNNPACK's float32 time of the op "
                         "(measured on a build host by bench/slow_kernels.py; no published Pi figure) + one op "
                         "overhead per extra piece",
    "fused_elementwise": "onnxruntime's fused LayerNorm / GELU kernels: bytes of their inputs and outputs at the "
                         "fitted bandwidth, as one op (no published figure for the fused kernels)",
    "onnx": "onnxruntime on the target: the LiteRT-fitted figures; no published onnxruntime Pi figure supports them",
    "int16_activations": "16x8 (int16 activations, int8 weights): the float32 rate, no faster; no published Pi "
                         "figure for 16x8 kernels exists. TFLite: XNNPACK runs no 16x8 op, LiteRT's built-in "
                         "kernels do (charged as outside the fast path; measured on a build host by "
                         "bench/slow_kernels.py: conv 24.2x, fully connected 6.1x, add 16.8x XNNPACK's float32 "
                         "time). ONNX: onnxruntime fuses no 16-bit QDQ group, each op runs in float32 between "
                         "Q/DQ nodes, which are charged by their bytes",
}


@dataclass(frozen=True)
class CostBreakdown:
    """Where the estimated time goes, in milliseconds."""

    compute_ms: float
    memory_ms: float
    overhead_ms: float
    unknown_ops: int = 0  # ops charged only what is known of them: the total is then a lower bound

    @property
    def total_ms(self) -> float:
        return self.compute_ms + self.memory_ms + self.overhead_ms


# A lookup into a constant table (an embedding) reads the rows it gathers, its output's size, not the table:
# charging MiniLM-L3's 47 MB word-embedding table made its TFLite rpi4 estimate 186 ms instead of 41.
LOOKUPS = frozenset({"GATHER", "GATHER_ND", "EMBEDDING_LOOKUP", "Gather", "GatherND", "GatherElements"})


def traffic_bytes(op: OpRecord) -> int:
    """Bytes an op moves: its weights and activations; for a table lookup the activations (indices and output)
    and the gathered rows (as many bytes as the output), whatever the table's size. Unknown activation bytes:
    the weights only (a lower bound; predict_ms counts such ops)."""
    activations = op.activation_bytes or 0
    if op.op in LOOKUPS and op.weight_bytes:
        return 2 * activations
    return op.weight_bytes + activations


def op_class(op: str) -> str:
    return OP_CLASSES.get(op, "elementwise")


def computes_in_int8(op: OpRecord) -> bool:
    """Integer kernels: int8 weights (or input) and no float input (dynamic range computes in float)."""
    return op.dtype in _INT8_TYPES and (op.input_dtype in _INT8_TYPES or op.input_dtype == "")


def predict_ms(records: Iterable[OpRecord], figures: Estimate, threads: int,
               outside_fast_path: dict[str, int] | None = None) -> CostBreakdown:
    """The cost model above; compute_ms / memory_ms split each op's time by which bound won.

    outside_fast_path: op name -> how many nodes of it run on the built-in kernels (the measured
    coverage); the first ones of that name are taken (nodes of one op share their kernel's support)."""
    n_eff = 1 + (max(threads, 1) - 1) * figures.thread_efficiency
    slow = Counter(outside_fast_path or {})
    compute = memory = overhead = 0.0
    for op in records:
        if op.op in ("DEQUANTIZE", "DequantizeLinear") and op.input_dtype == "const":
            continue  # float16 / QDQ weights: dequantized once, at load
        outside = slow[op.op] > 0
        slow[op.op] -= outside
        rate = figures.int8_gmacs_per_core if computes_in_int8(op) else figures.fp32_gmacs_per_core
        factor, cores = (SLOW_KERNEL_FACTOR, 1.0) if outside else (1.0, n_eff)
        scale = 4 / _ITEMSIZE.get(op.dtype, 4) if outside else 1.0  # float32-sized bytes (see above)
        t_compute = (op.macs or 0) * factor / (rate * 1e9 * cores)  # unknown MACs: a lower bound, counted
        t_memory = traffic_bytes(op) * scale * factor / (figures.bandwidth_gbs * 1e9)
        if t_compute >= t_memory:
            compute += t_compute
        else:
            memory += t_memory
        overhead += figures.op_overhead_us * 1e-6
    unknown = sum(not op.known for op in records)
    return CostBreakdown(compute * 1e3, memory * 1e3, overhead * 1e3, unknown)


def per_op_ms(records: Iterable[OpRecord], figures: Estimate, threads: int,
              outside: Iterable[bool] | None = None) -> list[float]:
    """Each op's estimated time in ms, in the records' order: the cost model applied to one op at a time;
    outside[i] charges op i at the built-in kernels' rate (it runs outside the fast path)."""
    records = list(records)
    flags = list(outside) if outside is not None else [False] * len(records)
    return [predict_ms([record], figures, threads, {record.op: 1} if slow else None).total_ms
            for record, slow in zip(records, flags, strict=True)]


def candidate_ms(target: Target, model_format: str, records: Iterable[OpRecord],
                 coverage: CoverageFacts | None = None) -> float | None:
    """A candidate's estimated latency on the target (None without figures or per-op records, or when some op's
    MACs or bytes are unknown: a lower bound is no figure to rank candidates by)."""
    records = tuple(records)
    if target.estimate is None or not records or not all(r.known for r in records):
        return None
    outside = coverage.get("outside_fast_path") if coverage and model_format == "tflite" else None
    return round(predict_ms(records, target.estimate, target.default_threads, outside).total_ms, 4)


def target_estimate(target: Target, records: Iterable[OpRecord], model_format: str = "tflite",
                    coverage: CoverageFacts | None = None) -> TargetEstimate | None:
    """The manifest's latency.target_estimate, or None for a target without estimate figures."""
    figures = target.estimate
    records = tuple(records)
    if figures is None or not records:
        return None
    threads = target.default_threads
    outside = coverage.get("outside_fast_path") if coverage and model_format == "tflite" else None
    cost = predict_ms(records, figures, threads, outside)
    low, high = band_ms(cost.total_ms, figures.error_band)
    unknown = unknown_note(records, f"{UNKNOWN_SHAPES}; the estimate charges what is known of them, so p50, low "
                                    "and high are lower bounds")
    how = provenance("estimate", f"{target.name} cost model ({MODEL}); low / high: {band_note(figures)}",
                     threads=threads, unknown=unknown)
    return {"method": "estimate", "p50_ms": round(cost.total_ms, 3), "low_ms": low, "high_ms": high,
            "threads": threads, "model": MODEL,
            "breakdown_ms": {"compute": round(cost.compute_ms, 3), "memory": round(cost.memory_ms, 3),
                             "overhead": round(cost.overhead_ms, 3)},
            "basis": figures.basis_text() + ("; " + BASIS["onnx"] if model_format == "onnx" else ""),
            "per_op_basis": _bases(records, model_format, bool(outside)),
            "error_band": list(figures.error_band) if figures.error_band is not None else None,
            "band": band_note(figures), "anchors": len(figures.anchors), "ratio_error": figures.ratio_error,
            "at_bound": list(figures.at_bound),
            "fitted_on": list(figures.fitted_on), "held_out": list(figures.held_out),
            "sources": list(figures.sources), "lower_bound": cost.unknown_ops > 0, "how": how}


def band_ms(p50_ms: float, error_band: tuple[float, float] | None) -> tuple[float | None, float | None]:
    """(low, high) device time for an estimate of p50_ms: each anchor's leave-one-out error
    e = predicted / published - 1 lay in [lo, hi], so the device's time lies in
    [estimate / (1 + hi), estimate / (1 + lo)] as far as the anchors tell; (None, None) without a band."""
    if error_band is None:
        return None, None
    lo, hi = error_band
    return round(p50_ms / (1 + hi), 3), round(p50_ms / (1 + lo), 3)


def band_note(figures: Estimate) -> str:
    """How the low/high were made, in words: the cross-validation behind them, or why there are none."""
    n = len(figures.anchors)
    if figures.error_band is None or not n:
        return NO_BAND
    return (f"leave-one-out over {n} published anchors of this board: each predicted by figures fitted on the "
            f"other {n - 1}, never on itself")


def _bases(records: tuple[OpRecord, ...], model_format: str, any_outside: bool) -> dict[str, str]:
    """What the rate of each op class present in the model rests on."""
    classes = {op_class(r.op) for r in records} & set(BASIS)
    bases = {c: BASIS[c] for c in sorted(classes)}
    weighted = [r for r in records if op_class(r.op) in _MAC_CLASSES]
    if any(r.dtype in _INT8_TYPES and not computes_in_int8(r) and r.input_dtype != _SIXTEEN for r in weighted):
        bases["dynamic_range"] = BASIS["dynamic_range"]
    if any(r.input_dtype == _SIXTEEN for r in records):
        bases["int16_activations"] = BASIS["int16_activations"]
    if any(r.op == "DEQUANTIZE" and r.dtype == "float16" for r in records):
        bases["float16"] = BASIS["float16"]
    if any(r.op in FUSED_ELEMENTWISE for r in records):
        bases["fused_elementwise"] = BASIS["fused_elementwise"]
    if any_outside:
        bases["outside_fast_path"] = BASIS["outside_fast_path"]
    if model_format == "onnx":
        bases["onnx"] = BASIS["onnx"]
    return bases
