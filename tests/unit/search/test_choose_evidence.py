"""The choice rule on target evidence: device timings beat the estimate, which beats host timing."""

from __future__ import annotations

from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.choose import (
    ESTIMATE_FALLBACK,
    MARGINS,
    SLOWER_MARGIN,
    Evidence,
    decide,
    evidence_for,
    pick,
)
from tests.choice_rule import candidate_row

FLOOR = Criterion()
RPI4 = Evidence("estimate", "rpi4")


def row(name: str, host: float | None, estimate: float | None, size: int, sqnr: float | None = 45.0,
        device: float | None = None) -> Candidate:
    quantize = "none" if name == "float32" else "int8"
    return candidate_row(name, "tflite", quantize, size, host, 10, sqnr, 1.0, estimate_ms=estimate,
                         device_p50_ms=device)


HOST_SLOW_INT8 = round(1.49 * SLOWER_MARGIN * 1.1, 3)  # beyond the host's noise margin, whatever it is


def host_fast_float_table() -> list[Candidate]:
    """Host timings favour float (an AVX2 host without VNNI); the Pi estimate favours int8 (2.7x)."""
    return [row("float32", 1.49, 46.0, 4000, None), row("int8", HOST_SLOW_INT8, 17.0, 1000)]


def test_the_same_table_ships_int8_for_rpi4_and_float_for_x86_64():
    rows = host_fast_float_table()
    for_pi = evidence_for([r.timings for r in rows], "rpi4", "aarch64", "x86_64", has_estimate=True)
    assert for_pi.kind == "estimate" and for_pi.warning is None
    assert decide(rows, FLOOR, rows[0], for_pi).chosen.name == "int8"
    for_x86 = evidence_for([r.timings for r in rows], "x86-64", "x86_64", "x86_64", has_estimate=False)
    assert for_x86.kind == "host" and for_x86.warning is None
    assert decide(rows, FLOOR, rows[0], for_x86).chosen.name == "float32"


def test_the_decision_line_names_the_evidence_and_what_host_timing_would_have_chosen():
    rows = host_fast_float_table()
    choice = decide(rows, FLOOR, rows[0], RPI4)
    assert choice.evidence.kind == "estimate" and choice.host_choice == "float32"
    assert "chosen by the rpi4 estimate; host timing would have chosen float32" in choice.reason
    assert "rpi4 estimate 17.000 ms vs float32 46.000 ms" in choice.reason
    agreeing = [row("float32", 2.0, 46.0, 4000, None), row("int8", 0.7, 17.0, 1000)]
    assert decide(agreeing, FLOOR, agreeing[0], RPI4).reason.endswith("host timing agrees")


def test_device_timings_beat_the_estimate_and_the_estimate_beats_host_timing():
    rows = [row("float32", 1.0, 46.0, 4000, None, device=30.0), row("int8", 0.5, 17.0, 1000, device=40.0)]
    evidence = evidence_for([r.timings for r in rows], "rpi4", "aarch64", "x86_64", has_estimate=True)
    assert evidence.kind == "device"
    assert pick(rows, FLOOR, rows[0], evidence).chosen.name == "float32"  # the device measured int8 slower
    one_untimed = [rows[0], row("int8", 0.5, 17.0, 1000)]
    assert evidence_for([r.timings for r in one_untimed], "rpi4", "aarch64", "x86_64", True).kind == "estimate"
    # Device timings decide even for a target of the host's own arch.
    assert evidence_for([r.timings for r in rows], "x86-64", "x86_64", "x86_64", False).kind == "device"


def test_a_target_without_estimate_figures_falls_back_to_host_timing_with_a_warning():
    rows = [row("float32", 1.0, None, 4000, None), row("int8", 0.5, None, 1000)]
    evidence = evidence_for([r.timings for r in rows], "jetson-nano", "aarch64", "x86_64", has_estimate=False)
    assert evidence.kind == "host"
    assert evidence.warning and "jetson-nano (aarch64) has no estimate figures" in evidence.warning
    assert "x86_64 host" in evidence.warning
    assert decide(rows, FLOOR, rows[0], evidence).chosen.name == "int8"


def test_estimates_within_the_targets_measured_ratio_error_tie():
    # 8% apart: inside the fallback margin (the widest measured ratio error, 9.5%): the smaller candidate ships
    rows = [row("int8", 1.0, 10.0, 1000, 40.0), row("float16", 1.0, 10.8, 500, 60.0)]
    assert RPI4.margin == ESTIMATE_FALLBACK == MARGINS["estimate"]
    choice = pick(rows, FLOOR, None, RPI4)
    assert choice.chosen.name == "float16" and choice.verdict_of("int8").text.startswith("as fast, but larger")
    # a target whose cross-validated ratio error is 5%: 8% is beyond it, the faster one ships
    tight = evidence_for([r.timings for r in rows], "rpi3", "aarch64", "x86_64", True, ratio_error=0.05)
    assert tight.kind == "estimate" and tight.margin == 1.05
    assert "rpi3's cross-validated int8 / float32 ratio error" in tight.to_dict()["margin_basis"]
    assert pick(rows, FLOOR, None, tight).chosen.name == "int8"
    # 12% apart is beyond the fallback too: the faster one ships
    rows = [row("int8", 1.0, 10.0, 1000, 40.0), row("float16", 1.0, 11.2, 500, 60.0)]
    choice = pick(rows, FLOOR, None, RPI4)
    assert choice.chosen.name == "int8"
    assert choice.verdict_of("float16").text == "slower (1.12x the chosen rpi4 estimate)"
    assert "(within 9.5% the estimate's error;" in choice.reason


def test_a_target_without_a_measured_ratio_error_gets_the_fallback():
    rows = [row("int8", 1.0, 10.0, 1000, 40.0), row("float16", 1.0, 10.8, 500, 60.0)]
    evidence = evidence_for([r.timings for r in rows], "rpi5", "aarch64", "x86_64", True, ratio_error=None)
    assert evidence.margin == ESTIMATE_FALLBACK and "no measured ratio error" in evidence.margin_basis


def test_host_timings_within_the_hosts_noise_margin_tie():
    near = round((1 + (SLOWER_MARGIN - 1) / 2), 3)
    rows = [row("int8", 1.0, None, 1000, 40.0), row("float16", near, None, 500, 60.0)]
    assert pick(rows, FLOOR, None).chosen.name == "float16"  # within the noise: the smaller
    rows = [row("int8", 1.0, None, 1000, 40.0), row("float16", round(SLOWER_MARGIN * 1.05, 3), None, 500, 60.0)]
    assert pick(rows, FLOOR, None).chosen.name == "int8"  # beyond it: the faster


def test_device_noise_is_a_timing_noise():
    rows = [row("int8", None, None, 1000, 40.0, device=1.0), row("float16", None, None, 500, 60.0, device=1.04)]
    assert pick(rows, FLOOR, None, Evidence("device", "rpi4")).chosen.name == "float16"  # 4%: noise
    rows = [row("int8", None, None, 1000, 40.0, device=1.0), row("float16", None, None, 500, 60.0, device=1.08)]
    assert pick(rows, FLOOR, None, Evidence("device", "rpi4")).chosen.name == "int8"  # 8%: not noise


def test_an_int8_variant_outside_the_fast_path_is_avoided_on_its_estimate():
    rows = [row("float32", 1.0, 3.0, 4000, None), row("int8", 0.9, 5.0, 1000),
            row("int8+fallback", 0.8, 1.5, 1100)]
    choice = decide(rows, FLOOR, rows[0], RPI4)
    assert choice.chosen.name == "int8+fallback"
    assert choice.verdict_of("int8").text.startswith("1.67x slower than float32 by the rpi4 estimate")


def test_the_evidence_is_recorded_with_its_margin_and_where_the_margin_comes_from():
    assert RPI4.to_dict() == {"kind": "estimate", "target": "rpi4", "margin": MARGINS["estimate"],
                              "margin_basis": "rpi4 has no measured ratio error: the widest measured on an "
                                              "anchored board (choose.ESTIMATE_FALLBACK)",
                              "label": "rpi4 estimate", "warning": None}
    measured = Evidence("estimate", "rpi4", estimate_margin=1.095)
    assert measured.to_dict()["margin"] == 1.095 and "(ratio_error, bench/fit_estimate.py)" in measured.margin_basis
    assert "bench/host_noise.py" in Evidence("host", "x86-64").to_dict()["margin_basis"]


def test_a_device_race_decides_and_the_decision_line_names_the_device():
    # Host timing favours float32; the device (build --device) times int8 2.7x faster.
    rows = [row("float32", 1.49, 46.0, 4000, None, device=46.0), row("int8", HOST_SLOW_INT8, 17.0, 1000, device=17.0)]
    on_pi = Evidence("device", "rpi4", device="pi@raspberrypi.local")
    choice = decide(rows, FLOOR, rows[0], on_pi)
    assert choice.chosen.name == "int8" and choice.host_choice == "float32"
    assert choice.reason.endswith("chosen by the timing on pi@raspberrypi.local; host timing would have chosen float32")
    assert on_pi.to_dict()["device"] == "pi@raspberrypi.local" and on_pi.margin == MARGINS["device"]
