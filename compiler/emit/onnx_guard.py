"""Nodes that static int8 must leave in float, read off the calibrated min/max ranges.

Two kinds of tensor have no useful int8 form, and a quantizer that does not know it silently wrecks the model:

- a **fill value**: PyTorch's BERT-family exports add `(1 - attention_mask) * finfo(float32).min` (-3.4e38) to
  the attention scores. A tensor whose range reaches FILL_MAGNITUDE has a scale of ~1e36 per step: every
  real value in it rounds to zero. Measured on paraphrase-MiniLM-L3-v2 (PyTorch 2.3 export): plain QDQ int8
  gave cosine 0.73 to the float model, and entropy / percentile calibration failed outright ("Too many bins").
- a **wide Softmax input**: softmax depends on differences of its inputs, and exp turns a difference of 1 into
  a factor of e. When the calibrated range of a Softmax input spans more than SOFTMAX_SPAN, one uint8 step is
  over one unit of logit: attention weights off by a factor up to e^0.5 = 1.65 at best. The usual cause is the
  same mask (older exports add -10000 instead of -3.4e38), which makes the span ~1e4 (a step of ~40).

Such a Softmax and the node producing its input (the mask addition) stay in float, as does every node writing a
fill value; the rest of the model is quantized as before (the Softmax's output, in [0, 1], is quantized by the
MatMul that reads it). The TFLite path has its own rule for non-finite ranges (emit/calibrate.non_finite).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

FILL_MAGNITUDE = 1e30  # no activation is this large; a mask fill value (finfo.min, -1e30 ...) is
SOFTMAX_SPAN = 255.0   # a range wider than this gives a uint8 step of more than one unit of logit
FILL_STAND_IN = 1e4  # what a fill value becomes for the histogram calibrations (older BERT exports' mask)
RECORD = "onnx_kept_float.json"  # beside the prepared model: what was kept in float, and why


@dataclass(frozen=True)
class Kept:
    """A node kept in float and why (for the candidate's details)."""

    node: str
    op: str
    reason: str


def kept_in_float(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> list[Kept]:
    """The nodes of `model` (ONNX ModelProto) that static int8 must not quantize, given each tensor's
    calibrated (min, max)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    kept: dict[str, Kept] = {}
    for node in model.graph.node:
        fill = [t for t in node.output if t in ranges and _magnitude(ranges[t]) >= FILL_MAGNITUDE]
        if fill:
            kept.setdefault(node.name, Kept(node.name, node.op_type, f"writes a mask fill value ({fill[0]})"))
    for node in model.graph.node:
        if node.op_type != "Softmax" or node.input[0] not in ranges:
            continue
        lo, hi = ranges[node.input[0]]
        span = hi - lo if np.isfinite(hi - lo) else np.inf
        if span <= SOFTMAX_SPAN:
            continue
        why = f"input spans {span:.3g} (> {SOFTMAX_SPAN:g}: an int8 step over one unit of logit)"
        kept.setdefault(node.name, Kept(node.name, node.op_type, "its " + why))
        source = producer.get(node.input[0])
        if source is not None:
            kept.setdefault(source.name, Kept(source.name, source.op_type, f"feeds {node.name}, whose " + why))
    return list(kept.values())


def _magnitude(bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(np.inf) if not (np.isfinite(lo) and np.isfinite(hi)) else max(abs(lo), abs(hi))


def minmax_ranges(cache: Path) -> dict[str, tuple[float, float]]:
    """(min, max) per tensor from an onnxruntime calibration cache (save_tensors_data's JSON)."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(cache)
    return {name: (float(np.min(t.range_value[0])), float(np.max(t.range_value[1])))
            for name, t in data.data.items()}


def record(kept: list[Kept], folder: Path) -> None:
    """What was kept in float, beside the prepared model (the search reads it into the candidate's details)."""
    (folder / RECORD).write_text(json.dumps([k.__dict__ for k in kept]))


def recorded(folder: Path) -> list[dict]:
    """The nodes `record` wrote for this folder's prepared model (none recorded: none kept)."""
    path = folder / RECORD
    return json.loads(path.read_text()) if path.is_file() else []


def without_fill(prepared: Path) -> Path:
    """The model the histogram calibrations (entropy, percentile) read: fill constants (|value| >=
    FILL_MAGNITUDE) replaced by FILL_STAND_IN with their sign, written beside `prepared` (or `prepared` itself
    when it has none). onnxruntime's histograms cannot span +-3.4e38 ("Too many bins for data range"). Every
    other tensor keeps its values: a padded position's score becomes -1e4 instead of -3.4e38, and exp of either
    minus the row's maximum is exactly 0 in float32, so the Softmax outputs, and all after them, are unchanged;
    the nodes that see the fill are kept in float anyway (kept_in_float)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(prepared))
    tensors = [*model.graph.initializer, *(a.t for n in model.graph.node if n.op_type == "Constant"
                                           for a in n.attribute if a.name == "value")]
    changed = 0
    for tensor in tensors:
        value = numpy_helper.to_array(tensor)
        if value.dtype.kind == "f" and value.size and float(np.max(np.abs(value))) >= FILL_MAGNITUDE:
            stand_in = np.where(np.abs(value) >= FILL_MAGNITUDE, np.sign(value) * FILL_STAND_IN, value)
            tensor.CopyFrom(numpy_helper.from_array(stand_in.astype(value.dtype), tensor.name))
            changed += 1
    if not changed:
        return prepared
    out = prepared.with_name("onnx_prepared_no_fill.onnx")
    onnx.save(model, str(out))
    return out
