"""The choice rule on measured tables: fastest accurate enough, size then fidelity breaking ties."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.recipe import Quantize
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.choose import SLOWER_MARGIN, pick
from edgekiln.compiler.search.variants import plan
from tests.choice_rule import candidate_row

FLOOR = Criterion()


def row(name: str, p50: float, size: int, sqnr: float | None, agreement: float | None = 1.0, **extra) -> Candidate:
    return candidate_row(name, "tflite", "int8", size, p50, 10, sqnr, agreement, **extra)


def test_the_fastest_candidate_above_the_floor_wins():
    rows = [row("float32", 1.0, 1000, None), row("int8", 0.3, 250, 12.0, 0.8), row("dynamic", 0.5, 260, 40.0)]
    choice = pick(rows, FLOOR, rows[0])
    assert choice.chosen.name == "dynamic"
    assert choice.verdict_of("int8").text == "top-1 agreement 0.800, SQNR 12.0 dB: below the fidelity floor"
    assert choice.verdict_of("int8").short == "below floor"
    assert "dynamic: the fastest candidate" in choice.reason and "vs float32 1.000 ms" in choice.reason


def test_within_the_noise_margin_the_smaller_wins_then_the_more_faithful():
    rows = [row("float32", 1.0, 1000, None), row("float16", 1.02, 500, 60.0)]
    assert pick(rows, FLOOR, rows[0]).chosen.name == "float16"  # 2% slower is noise; half the size
    rows = [row("int8", 0.30, 250, 35.0), row("int8+rewrites", 0.31, 252, 45.0)]
    choice = pick(rows, FLOOR)
    assert choice.chosen.name == "int8+rewrites"  # same speed, same size class: the more faithful
    assert choice.verdict_of("int8").text == "as fast and as small, less faithful"


def test_a_full_tie_is_called_a_tie_not_less_faithful():
    rows = [row("int8", 0.30, 250, 49.2), row("int8+rewrites", 0.30, 251, 49.2)]
    choice = pick(rows, FLOOR)
    assert choice.chosen.name == "int8"  # the earlier, simpler candidate
    assert choice.verdict_of("int8+rewrites").text.startswith("a tie (as fast, as small, as faithful)")
    assert choice.verdict_of("int8+rewrites").short == "tie"


def test_a_slower_int8_is_rejected_and_the_reason_says_why():
    base = row("float32", 1.0, 1000, None)
    rows = [base, row("int8", 2.5, 250, 40.0, notes=("PRELU x8 outside XNNPACK, 9 piece(s)",)),
            row("int8+fallback", 0.4, 260, 38.0)]
    choice = pick(rows, FLOOR, base)
    assert choice.chosen.name == "int8+fallback"
    assert choice.verdict_of("int8").text == "2.50x slower than float32 (PRELU x8 outside XNNPACK, 9 piece(s))"
    assert choice.verdict_of("int8").short == "slower; 2.5x"
    assert "int8 2.50x slower than float32" in choice.reason


def test_labelled_data_uses_the_accuracy_budget_not_the_floor():
    budget = Criterion(max_drop=1.0)
    rows = [row("float32", 1.0, 1000, None, accuracy_drop=0.0),
            row("int8", 0.3, 250, 20.0, 0.9, accuracy_drop=0.8),      # poor fidelity, within the budget
            row("dynamic", 0.2, 260, 45.0, accuracy_drop=1.5)]        # over the budget
    choice = pick(rows, budget, rows[0])
    assert choice.chosen.name == "int8"
    assert choice.verdict_of("dynamic").text == "accuracy drops 1.50 points (budget 1)"
    assert choice.verdict_of("dynamic").short == "over budget"


def test_nothing_accurate_enough_ships_the_most_faithful():
    rows = [row("int8", 0.3, 250, 12.0, 0.8), row("int8+rewrites", 0.3, 250, 20.0, 0.9)]
    choice = pick(rows, FLOOR)
    assert choice.chosen.name == "int8+rewrites" and choice.reason.startswith("no candidate meets")


@pytest.mark.parametrize("seed", range(200))
def test_never_slower_than_float32_nor_less_faithful_than_a_tied_plain_int8(seed):
    """On random tables: float32 always meets the floor, so the choice is at most the noise margin slower;
    and plain int8, when accurate enough and as fast, is never traded for a less faithful variant."""
    rng = np.random.default_rng(seed)
    names = ["float16", "dynamic", "int8", "int8+rewrites", "int8+fallback"]
    base = row("float32", 1.0, 1000, None)
    rows = [base] + [row(n, float(rng.uniform(0.2, 3.0)), int(rng.integers(240, 600)), float(rng.uniform(5, 60)),
                         float(rng.choice([0.9, 0.97, 1.0]))) for n in names]
    choice = pick(rows, FLOOR, base)
    assert choice.chosen.timings.host_p50_ms <= base.timings.host_p50_ms * SLOWER_MARGIN
    plain = rows[3]
    if FLOOR.meets(plain.judged) and plain.timings.host_p50_ms <= choice.chosen.timings.host_p50_ms and \
            plain.bytes <= choice.chosen.bytes:
        assert (choice.chosen.judged.sqnr_db or np.inf) >= plain.judged.sqnr_db
    else:  # plain int8 was passed over, and its verdict gives the reason the numbers give
        verdict = choice.verdict_of("int8").text
        assert choice.chosen.name != "int8" and verdict != "chosen"
        if not FLOOR.meets(plain.judged):
            assert "below the fidelity floor" in verdict, verdict
        else:
            assert not verdict.startswith("a tie"), verdict


def _names(mode: Quantize, model_format: str, **options: object) -> list[str]:
    return [c.name for c in plan(mode, model_format, **options).build]  # type: ignore[arg-type]


def test_plans_per_mode():
    names = {mode: _names(mode, "tflite") for mode in Quantize}
    assert names[Quantize.auto] == ["float32", "float16", "dynamic", "int8", "int8+rewrites", "int8+adaround",
                                    "int8+fallback", "int8+fallback+layers", "16x8"]
    assert names[Quantize.int8] == ["float32", "int8", "int8+rewrites"]  # forced int8 stays full-integer
    assert names[Quantize.float16] == ["float32", "float16"] and names[Quantize.none] == ["float32"]
    assert _names(Quantize.auto, "tflite", calibrated=False) == ["float32", "float16", "dynamic"]
    onnx = {mode: _names(mode, "onnx") for mode in Quantize}
    assert onnx[Quantize.auto] == ["float32", "dynamic", "fused", "fused+dynamic", "int8", "int8+adaround",
                                   "int8+calibration", "int8+s8s8", "int8+exclude", "16x8",
                                   "int8+mixed"]  # fused: encoders only
    assert onnx[Quantize.int8] == ["float32", "int8", "int8+calibration", "int8+s8s8"]  # no node kept in float
    assert onnx[Quantize.dynamic] == ["float32", "dynamic"] and onnx[Quantize.none] == ["float32"]


def test_on_a_full_tie_the_plain_variant_stays():
    rows = [row("int8", 0.089, 247_064, 49.2), row("int8+fallback", 0.087, 247_680, 49.2)]
    assert pick(rows, FLOOR).chosen.name == "int8"
