"""The records of a compiled model's static facts: each op (OpRecord) and the whole graph (GraphStats).

Their own module, below the per-format readers (onnx_stats.py, tflite_stats.py) and the `stats` dispatch that
calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

UNKNOWN_SHAPES = "ONNX shape inference (and onnxruntime's symbolic one) could not infer their tensors' shapes"


@dataclass(frozen=True)
class OpRecord:
    """One node of the compiled graph as the cost model sees it.

    dtype: the compute type: the weight's dtype for weighted ops, else the first input's.
    weight_bytes: constant inputs (weights, biases); activation_bytes: other inputs + outputs.
    input_dtype: the first non-constant input's dtype ("const" when every input is a constant: the op
        runs once at load time; "" unknown, taken as `dtype`). An int8-weight op with float input is
        dynamic-range (hybrid).
    macs / activation_bytes None: unknown (a tensor's shape could not be inferred), never a silent 0.
    """

    op: str
    dtype: str
    macs: int | None
    weight_bytes: int
    activation_bytes: int | None
    input_dtype: str = ""

    @property
    def known(self) -> bool:
        return self.macs is not None and self.activation_bytes is not None


@dataclass(frozen=True)
class GraphStats:
    """What `edgekiln inspect` shows and the manifest records for a model."""

    params: int
    macs: int | None  # None: some MAC-counted op's shapes are unknown (`unknown` says which and why)
    ops: dict[str, int] = field(default_factory=dict)
    float_ops: tuple[str, ...] = ()  # compute ops with float32 outputs (in an int8 model: left unquantized)
    records: tuple[OpRecord, ...] = ()
    unknown: str | None = None  # what could not be counted and why (None: everything was)


def total_macs(records: tuple[OpRecord, ...]) -> int | None:
    """The graph's MACs: the sum over its ops, None when any op's are unknown (a partial sum is no total)."""
    counts = [r.macs for r in records]
    return None if None in counts else sum(c for c in counts if c is not None)


def unknown_note(records: tuple[OpRecord, ...], why: str) -> str | None:
    """Which ops' MACs or bytes are unknown, and why, in one sentence (None: all are known)."""
    missing = [r for r in records if not r.known]
    if not missing:
        return None
    ops = sorted({r.op for r in missing})
    return f"MACs or activation bytes unknown for {len(missing)} of {len(records)} ops ({', '.join(ops)}): {why}"
