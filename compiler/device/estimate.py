"""A latency estimate for a target device, from the compiled model's per-op MACs and bytes.

The cost model (a per-op roofline with a serial per-op overhead), for `threads` threads:

    t_op  = max(MACs / (rate[dtype] * n_eff), bytes / bandwidth) + overhead
    n_eff = 1 + (threads - 1) * thread_efficiency
    t     = sum over ops of t_op

rate is the target's per-core multiply-accumulate throughput for float or int8 kernels, bytes
the op's weights plus its input and output activations. The figures live in the target's TOML
(`[estimate]`), fitted by bench/fit_estimate.py to published measurements (the anchors), with
the error band measured on those anchors; the estimate is labelled `method: "estimate"`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edgekiln.compiler.analyze.tflite import OpRecord
from edgekiln.targets import Estimate, Target

MODEL = "per-op roofline: max(MACs / (rate[dtype] x n_eff), bytes / bandwidth) + per-op overhead"
_INT8_TYPES = {"int8", "uint8", "int16"}  # integer kernels; float16 weights are dequantized to float32


@dataclass(frozen=True)
class CostBreakdown:
    """Where the estimated time goes, in milliseconds."""

    compute_ms: float
    memory_ms: float
    overhead_ms: float

    @property
    def total_ms(self) -> float:
        return self.compute_ms + self.memory_ms + self.overhead_ms


def predict_ms(records: Iterable[OpRecord], figures: Estimate, threads: int) -> CostBreakdown:
    """The cost model above; compute_ms / memory_ms split each op's time by which bound won."""
    n_eff = 1 + (max(threads, 1) - 1) * figures.thread_efficiency
    compute = memory = overhead = 0.0
    for op in records:
        rate = figures.int8_gmacs_per_core if op.dtype in _INT8_TYPES else figures.fp32_gmacs_per_core
        t_compute = op.macs / (rate * 1e9 * n_eff)
        t_memory = (op.weight_bytes + op.activation_bytes) / (figures.bandwidth_gbs * 1e9)
        if t_compute >= t_memory:
            compute += t_compute
        else:
            memory += t_memory
        overhead += figures.op_overhead_us * 1e-6
    return CostBreakdown(compute * 1e3, memory * 1e3, overhead * 1e3)


def per_op_ms(records: Iterable[OpRecord], figures: Estimate, threads: int) -> list[float]:
    """Each op's estimated time in ms, in the records' order: the cost model applied to one op at a time."""
    return [predict_ms([record], figures, threads).total_ms for record in records]


def target_estimate(target: Target, records: Iterable[OpRecord]) -> dict | None:
    """The manifest's latency.target_estimate, or None for a target without estimate figures."""
    figures = target.estimate
    records = tuple(records)
    # The figures were fitted on LiteRT/XNNPACK anchors; an artifact without per-op records (ONNX
    # for now) gets no estimate rather than a number the anchors do not support.
    if figures is None or not records:
        return None
    threads = target.default_threads
    cost = predict_ms(records, figures, threads)
    # The band: every anchor's error e = estimate / published - 1 lay in [lo, hi], so the
    # device's time lies in [estimate / (1 + hi), estimate / (1 + lo)] as far as the anchors tell.
    lo, hi = figures.error_band
    return {"method": "estimate", "p50_ms": round(cost.total_ms, 3),
            "low_ms": round(cost.total_ms / (1 + hi), 3), "high_ms": round(cost.total_ms / (1 + lo), 3),
            "threads": threads, "model": MODEL,
            "breakdown_ms": {"compute": round(cost.compute_ms, 3), "memory": round(cost.memory_ms, 3),
                             "overhead": round(cost.overhead_ms, 3)},
            "basis": figures.basis_text(), "error_band": [lo, hi],
            "fitted_on": list(figures.fitted_on), "held_out": list(figures.held_out),
            "sources": list(figures.sources)}
