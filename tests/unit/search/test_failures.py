"""A format none of whose int8 candidates could be built is said in one sentence (search/failures.py), and the
decision line leads with it; candidates not built for a reason of the plan are no failure."""

from __future__ import annotations

from edgekiln.compiler import summary
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.failures import no_int8
from edgekiln.compiler.search.variants import NEEDS_CALIBRATION, variant_named
from tests.unit.test_summary_evidence import _block

QUANTIZER = "failed: onnxruntime int8 quantization failed: scale issue (try --quantize dynamic, or --format tflite)"
RAW = "failed: InvalidGraph: [ONNXRuntimeError] : 10 : INVALID_GRAPH : This is an invalid model."


def _table(model_format: str, int8_notes: tuple[str, ...], int8_built: bool = False, compared: bool = False
           ) -> dict[str, Candidate]:
    """float32 built, plain int8 and int8+calibration with `int8_notes` (int8 built or not)."""
    def key(name: str) -> str:
        return f"{model_format}:{name}" if compared else name

    float32 = Candidate(variant_named("float32", model_format), b"f", key=key("float32"))
    int8 = Candidate(variant_named("int8", model_format), b"q" if int8_built else None,
                     () if int8_built else int8_notes, key=key("int8"))
    tuned = Candidate(variant_named("int8+calibration", model_format), None, int8_notes, key=key("int8+calibration"))
    return {c.name: c for c in (float32, int8, tuned)}


def test_every_int8_candidate_failing_is_one_sentence_with_the_cause_what_ships_and_what_to_try() -> None:
    built = _table("onnx", (QUANTIZER,))
    assert no_int8(built, built["float32"], compared=False) == (
        "no int8 candidate could be built: onnxruntime int8 quantization failed: scale issue, so float32 ships; "
        "try --quantize dynamic, or --format tflite.")
    raw = _table("onnx", (RAW,))  # a third-party error has no hint of its own: the format's
    assert no_int8(raw, raw["float32"], compared=False) == (
        "no int8 candidate could be built: InvalidGraph: [ONNXRuntimeError] : 10 : INVALID_GRAPH : This is an "
        "invalid model, so float32 ships; try --quantize dynamic, or --format tflite.")


def test_one_int8_candidate_built_or_none_planned_is_no_family_failure() -> None:
    partly = _table("onnx", (QUANTIZER,), int8_built=True)
    assert no_int8(partly, partly["float32"], compared=False) == ""
    uncalibrated = _table("tflite", (NEEDS_CALIBRATION,))
    assert no_int8(uncalibrated, uncalibrated["float32"], compared=False) == ""


def test_with_formats_compared_the_failed_format_is_named_beside_what_ships() -> None:
    built = {**_table("onnx", (RAW,), compared=True), **_table("tflite", (), int8_built=True, compared=True)}
    assert no_int8(built, built["tflite:int8"], compared=True).startswith(
        "no onnx int8 candidate could be built: InvalidGraph: ")
    assert "so tflite:int8 ships; try --quantize dynamic, or --format tflite." in no_int8(
        built, built["tflite:int8"], compared=True)


def test_the_decision_line_leads_with_the_failed_family() -> None:
    said = "no int8 candidate could be built: onnxruntime int8 quantization failed: scale issue, so float32 ships."
    plain = summary.decision_line(_block())
    assert plain.startswith("chosen by the rpi4 estimate (margin ") and "host timing would have chosen float32" in plain
    assert summary.decision_line(dict(_block(), no_int8=said)) == f"{said} {plain}"
