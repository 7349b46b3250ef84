"""search/candidate.Candidate: one record from plan to manifest; its manifest row reads back as the same record."""

from __future__ import annotations

from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search.candidate import Candidate, Timings, Verdict
from edgekiln.compiler.search.variants import VARIANTS

ROW_KEYS = ["name", "format", "quantize", "bytes", "p50_ms", "runs", "sqnr_db", "agreement", "accuracy",
            "accuracy_drop", "pieces", "notes", "estimate_ms", "device_p50_ms", "cosine_mean", "cosine_p5",
            "verdict", "short"]


def _measured() -> Candidate:
    variant = next(v for v in VARIANTS["tflite"] if v.name == "int8+rewrites")
    return Candidate(variant, b"\0" * 1234, ("min/max calibration",), {"coverage": {"fast_path_pieces": 2}},
                     key="tflite:int8+rewrites", quality=Quality(31.5, 0.99, 98.1, 0.3, 0.9991, 0.998),
                     timings=Timings(0.42, 140, 1.2, None), verdict=Verdict("chosen", "chosen"))


def test_the_row_has_the_manifests_keys_in_order_and_reads_back_as_the_same_figures():
    row = _measured().to_row()
    assert list(row) == ROW_KEYS
    assert row["bytes"] == 1234 and row["pieces"] == 2 and row["quantize"] == "int8" and row["p50_ms"] == 0.42
    back = Candidate.from_row(row)
    assert back.to_row() == row
    assert back.variant.rewrites and back.variant.quantize is Quantize.int8  # the catalogue's variant
    assert back.model is None and back.bytes == 1234  # a row holds the size, not the model


def test_a_sweep_points_row_names_the_variant_it_shipped():
    point = Candidate.from_row({"name": "prune0.25-auto", "variant": "onnx:int8+calibration", "format": "auto",
                                "quantize": "auto", "bytes": 900, "p50_ms": 1.5, "sqnr_db": None})
    assert point.name == "prune0.25-auto" and point.variant.quantize is Quantize.int8
    assert point.judged.sqnr_db is None and point.timings.host_p50_ms == 1.5


def test_timed_sets_only_the_timings_given():
    c = _measured().timed(device_p50_ms=9.0)
    assert c.timings == Timings(0.42, 140, 1.2, 9.0) and c.quality == _measured().quality
