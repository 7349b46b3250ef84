"""The opset static int8 starts from: an old model's opset raised where per-channel weights need it, or its weights
quantized per tensor where raising it is not safe, and which of the two (OpsetFacts, for the candidate's record).

Per-channel DequantizeLinear (its `axis` attribute) arrived in opset 13 (FACTS.md): onnxruntime's quantizer writes it
into an opset-11 or -12 model all the same, and onnxruntime then refuses the int8 model (`INVALID_GRAPH ...
DequantizeLinear`). PaddlePaddle and older PyTorch exports are opset 11. onnx's version converter raises the opset,
but is not trusted blindly: its Hardmax 12 -> 13 step keeps the node as is although opset 13 changed what `axis`
means (measured: outputs off by 1.0, tests/unit/emit/test_onnx_opset.py). The converted model is run beside the
source on the calibration samples and used only when its outputs match; otherwise weights are quantized per tensor,
which every opset from 10 represents.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edgekiln.compiler.emit.onnx_convert import calibration_feeds
from edgekiln.compiler.errors import first_line
from edgekiln.compiler.manifest_schema import OpsetFacts
from edgekiln.compiler.model_inputs import Dataset

PER_CHANNEL_OPSET = 13  # the first opset whose DequantizeLinear takes an axis
TOLERANCE = 1e-5        # converted outputs match: max |difference| <= TOLERANCE * max(1, max |source output|)
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class OpsetPlan:
    """The float model static int8 quantizes, whether its weights are per channel, and what was done (facts None:
    the model's opset already had per-channel DequantizeLinear, nothing changed)."""

    model: bytes
    per_channel: bool = True
    facts: OpsetFacts | None = None

    @property
    def note(self) -> str:
        """The candidate's note in a few words ('' when nothing changed)."""
        if self.facts is None:
            return ""
        if self.per_channel:
            return (f"opset {self.facts['source']} raised to {self.facts['quantized']} for per-channel int8 "
                    f"({self.facts['why']})")
        return f"per-tensor int8 weights at opset {self.facts['source']}: {self.facts['why']}"


def opset_of(model_bytes: bytes) -> int:
    """The model's ai.onnx opset (a model of other domains' ops only: PER_CHANNEL_OPSET, nothing to raise)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    return next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), PER_CHANNEL_OPSET)


def for_per_channel(float_model: bytes, calib: Dataset, batch: int) -> OpsetPlan:
    """`float_model` as it is (opset >= 13), raised to PER_CHANNEL_OPSET when the converted model computes what the
    source computes on the calibration samples, else as it is with per-tensor weights."""
    source = opset_of(float_model)
    if source >= PER_CHANNEL_OPSET:
        return OpsetPlan(float_model)
    try:
        converted = convert(float_model)
        difference = max_difference(float_model, converted, calibration_feeds(calib, batch))
    except Exception as exc:  # noqa: BLE001  (the converter raises RuntimeError/ValidationError; ours: ConversionError)
        return _per_tensor(float_model, source, f"onnx's version converter could not raise it to {PER_CHANNEL_OPSET}"
                                                f" ({first_line(exc, 160)})")
    samples = (calib.size // batch) * batch
    if difference > TOLERANCE:
        return _per_tensor(float_model, source, f"raising it to {PER_CHANNEL_OPSET} changed the outputs (max "
                                                f"relative difference {difference:.2g} on {samples} calibration "
                                                "samples), so the converted model is not used")
    why = f"onnx version converter; outputs match the source's on {samples} calibration samples, max relative " \
          f"difference {difference:.2g}"
    return OpsetPlan(converted, True, {"source": source, "quantized": PER_CHANNEL_OPSET, "weights": "per-channel",
                                       "why": why})


def _per_tensor(float_model: bytes, source: int, why: str) -> OpsetPlan:
    return OpsetPlan(float_model, False, {"source": source, "quantized": source, "weights": "per-tensor", "why": why})


def convert(float_model: bytes) -> bytes:
    """onnx's version converter to PER_CHANNEL_OPSET, checked by onnx.checker."""
    import onnx
    from onnx import version_converter

    converted = version_converter.convert_version(onnx.load_from_string(float_model), PER_CHANNEL_OPSET)
    onnx.checker.check_model(converted)
    return converted.SerializeToString()


def max_difference(source: bytes, converted: bytes, batches: Iterator[dict[str, np.ndarray]]) -> float:
    """The largest |converted - source| over every output and batch, relative to max(1, the output's magnitude);
    inf when an output's shape or finiteness differs."""
    from edgekiln.compiler.graph.onnx_graph import open_session

    before, after = open_session(source), open_session(converted)
    worst = 0.0
    for feed in batches:
        for ours, theirs in zip(after.run(None, feed), before.run(None, feed), strict=True):
            ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
            if ours.shape != theirs.shape or not np.array_equal(np.isfinite(ours), np.isfinite(theirs)):
                return float("inf")
            finite = np.isfinite(theirs)
            if not finite.any():
                continue
            scale = max(1.0, float(np.abs(theirs[finite]).max()))
            worst = max(worst, float(np.abs(ours[finite] - theirs[finite]).max()) / scale)
    return worst
