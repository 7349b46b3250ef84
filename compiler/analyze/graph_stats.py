"""The records of a compiled model's static facts: each op (OpRecord) and the whole graph (GraphStats).

Their own module, below the per-format readers (onnx_stats.py, tflite_stats.py) and the `stats` dispatch that
calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OpRecord:
    """One node of the compiled graph as the cost model sees it.

    dtype: the compute type: the weight's dtype for weighted ops, else the first input's.
    weight_bytes: constant inputs (weights, biases); activation_bytes: other inputs + outputs.
    input_dtype: the first non-constant input's dtype ("const" when every input is a constant: the op
        runs once at load time; "" unknown, taken as `dtype`). An int8-weight op with float input is
        dynamic-range (hybrid).
    """

    op: str
    dtype: str
    macs: int
    weight_bytes: int
    activation_bytes: int
    input_dtype: str = ""


@dataclass(frozen=True)
class GraphStats:
    """What `edgekiln inspect` shows and the manifest records for a model."""

    params: int
    macs: int
    ops: dict[str, int] = field(default_factory=dict)
    float_ops: tuple[str, ...] = ()  # compute ops with float32 outputs (in an int8 model: left unquantized)
    records: tuple[OpRecord, ...] = ()
