"""A whole candidate family that failed, said loudly: when every int8 candidate of a format failed, one sentence
naming the first cause, what ships instead and what to try, for the decision line, the manifest's warnings and
the report (not a footnote under the table).

A candidate failed when it has no model and its first note is `failed: ...` (variants.failure_note); one not built
for a reason of the plan (no calibration data, identical to plain int8) is no failure.
"""

from __future__ import annotations

import re

from edgekiln.compiler.manifest_schema import OpsetFacts
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search.candidate import Candidate

FAILED = "failed: "
# What to try when a format's int8 fails and the cause carries no hint of its own.
HINTS = {"onnx": "try --quantize dynamic, or --format tflite",
         "tflite": "try --quantize dynamic or float16, or --format onnx"}
_HINTED = re.compile(r"^(?P<cause>.*) \((?P<hint>try [^()]*)\)$")  # an EdgekilnError's one_line: "message (hint)"


def no_int8(built: dict[str, Candidate], shipped: Candidate, compared: bool) -> str:
    """'no int8 candidate could be built: <cause>, so float32 ships; <what to try>', or '' when an int8 candidate
    was built in every format that planned one, or none failed. compared: formats were compared (each is named)."""
    sentences = []
    for model_format, cause in _failed_formats(built).items():
        which = f"{model_format} int8" if compared else "int8"
        found = _HINTED.match(cause)
        cause, hint = (found["cause"], found["hint"]) if found else (cause, HINTS.get(model_format, ""))
        sentences.append(f"no {which} candidate could be built: {cause.rstrip('.')}, so {shipped.name} ships"
                         + (f"; {hint}" if hint else ""))
    return " ".join(f"{s}." for s in sentences)


def _failed_formats(built: dict[str, Candidate]) -> dict[str, str]:
    """Each format whose int8 candidates were all not built, at least one of them failing: its first cause."""
    failed: dict[str, str] = {}
    for model_format in dict.fromkeys(b.format for b in built.values()):
        int8s = [b for b in built.values() if b.format == model_format and b.variant.quantize is Quantize.int8]
        causes = [b.notes[0].removeprefix(FAILED) for b in int8s if b.notes and b.notes[0].startswith(FAILED)]
        if causes and all(b.model is None for b in int8s):
            failed[model_format] = causes[0]
    return failed


def opset_facts(built: dict[str, Candidate]) -> OpsetFacts | None:
    """How an old ONNX model's opset was handled for int8 (emit/onnx_opset.py), from any int8 candidate built."""
    return next((b.details["opset"] for b in built.values() if "opset" in b.details), None)
