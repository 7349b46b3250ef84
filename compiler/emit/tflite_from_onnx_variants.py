"""The TFLite candidates of an ONNX source: one onnx2tf run writes float32, float16, dynamic and int8.

onnx2tf converts once and writes every number format from that conversion (with -oiqt), so these
candidates cost one run. It calibrates with min/max and offers no hook for the Keras path's int8
refinements (rewrites, tuned ranges, float fallback): those candidates are not built, and the table
says why. Every model keeps the layout change onnx2tf made (NCHW -> NHWC), which the runtime undoes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..candidates import Built, Candidate
from ..choose import Criterion
from ..data import Dataset
from ..recipe import Quantize
from . import tflite_from_onnx as onnx2tf
from .tflite_variants import Judge, with_coverage

NOT_BUILT = "onnx2tf (ONNX -> TFLite) writes float32, float16, dynamic and plain min/max int8 only"


def build(graph: Any, candidates: list[Candidate], calib: Dataset | None, judge: Judge, criterion: Criterion,
          workdir: Path, int8_io: bool, calibration: str = "auto") -> tuple[list[Built], dict | None]:
    """One Built per candidate, in the given order; no diagnosis (the per-layer debugger needs the Keras path).

    A ConversionError (onnx2tf failed, or wrote ops LiteRT cannot run) propagates: the caller decides
    whether the format is dropped from the comparison or the build stops.
    """
    int8 = calib is not None and any(c.quantize is Quantize.int8 for c in candidates)
    mode = Quantize.int8 if int8 else Quantize.dynamic if any(
        c.quantize is Quantize.dynamic for c in candidates) else Quantize.none
    converted = onnx2tf.convert(graph, calib if int8 else None, mode, workdir)
    details = {"converter": f"onnx2tf {onnx2tf.version()}"}
    built = []
    for c in candidates:
        suffix = _suffix(c, int8_io)
        if suffix is None or suffix not in converted.files:
            built.append(Built(c, None, (NOT_BUILT if suffix is None else f"onnx2tf wrote no {suffix} model",)))
            continue
        extra = {"calibration": "minmax"} if c.quantize is Quantize.int8 else {}
        notes = ("min/max calibration (onnx2tf)",) if extra else ()
        built.append(with_coverage(Built(c, converted.model(suffix), notes, dict(details, **extra),
                                         layouts=converted.layouts)))
    return built, None


def _suffix(candidate: Candidate, int8_io: bool) -> str | None:
    """The onnx2tf output file of a candidate; None for the refinements onnx2tf cannot make."""
    if candidate.rewrites or candidate.tune_calibration or candidate.fallback:
        return None
    return onnx2tf.ARTIFACT.get((candidate.quantize, int8_io))
