"""The emulated estimate as evidence: between device timings and the cost model, only where the target file's
cross-validated errors say it beats the cost model (emulate/cycles.standing), else a cross-check that decides
nothing. Pure rule on tables and target files: no emulator runs here."""

from __future__ import annotations

import dataclasses

import pytest

from edgekiln import targets
from edgekiln.compiler.emulate.cycles import Standing, emulated_ms, label, standing
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.choose import decide, evidence_for
from tests.choice_rule import candidate_row

FLOOR = Criterion()
WINS = Standing(True, "the emulated estimate decides: ...", 0.05)
LOSES = Standing(False, "a cross-check, not a decider: ...", 2.49)


def row(name: str, estimate: float, emulated: float | None, size: int) -> Candidate:
    quantize = "none" if name == "float32" else "int8"
    made = candidate_row(name, "tflite", quantize, size, 1.0, 10, 45.0 if quantize == "int8" else None, 1.0,
                         estimate_ms=estimate)
    return made.timed(emulated_ms=emulated)


def table() -> list[Candidate]:
    """The cost model favours int8 (2.7x); the emulated counts favour float32 (int8 executes more)."""
    return [row("float32", 46.0, 30.0, 4000), row("int8", 17.0, 60.0, 1000)]


def test_an_emulated_estimate_that_earned_it_ranks_between_device_and_cost_model():
    rows = table()
    evidence = evidence_for([r.timings for r in rows], "rpi4", "aarch64", "x86_64", True, 0.095, WINS)
    assert (evidence.kind, evidence.margin, evidence.label) == ("emulated", 1.05, "rpi4 emulated estimate")
    assert decide(rows, FLOOR, rows[0], evidence).chosen.name == "float32"
    assert evidence.to_dict()["emulated"] == {"decides": True, "why": WINS.why}
    timed = [r.timed(device_p50_ms=5.0) for r in rows]  # device timings still come first
    assert evidence_for([r.timings for r in timed], "rpi4", "aarch64", "x86_64", True, 0.095, WINS).kind == "device"


def test_an_emulated_estimate_that_loses_is_a_cross_check_the_cost_model_decides():
    rows = table()
    evidence = evidence_for([r.timings for r in rows], "rpi4", "aarch64", "x86_64", True, 0.095, LOSES)
    assert evidence.kind == "estimate"
    assert decide(rows, FLOOR, rows[0], evidence).chosen.name == "int8"
    assert evidence.to_dict()["emulated"] == {"decides": False, "why": LOSES.why}


def test_a_row_without_an_emulated_estimate_leaves_the_cost_model_deciding():
    rows = [table()[0], row("int8", 17.0, None, 1000)]
    assert evidence_for([r.timings for r in rows], "rpi4", "aarch64", "x86_64", True, 0.095, WINS).kind == "estimate"


def test_rpi4s_target_file_says_the_counts_lose_today_and_why():
    found = standing(targets.load("rpi4"))
    assert not found.decides
    assert found.why.startswith("a cross-check, not a decider: mean |leave-one-out error| 88.8% vs the cost "
                                "model's 9.3%")


def test_the_ranking_follows_the_target_files_measured_errors_not_a_constant():
    rpi4 = targets.load("rpi4")
    assert rpi4.emulated is not None
    better = dataclasses.replace(rpi4.emulated, mean_abs_error=0.05, ratio_error=0.04)
    assert standing(dataclasses.replace(rpi4, emulated=better)).decides
    half = dataclasses.replace(rpi4.emulated, mean_abs_error=0.05)  # its ratio error still the larger
    assert not standing(dataclasses.replace(rpi4, emulated=half)).decides


def test_boards_without_anchors_borrow_a_stall_and_never_decide():
    for name, core in (("rpi5", "Cortex-A76"), ("rpi-zero-2w", "Cortex-A53")):
        board = targets.load(name)
        assert board.emulated is not None and board.emulated.core == core
        assert board.emulated.cycles_basis.startswith("assumed")
        found = standing(board)
        assert not found.decides and "borrowed from" in found.why
    assert label(targets.load("rpi5")) == "executed instructions on an emulated Cortex-A76; not a timing"


def test_counts_become_milliseconds_through_cycles_clock_stall_and_threads():
    rpi4 = targets.load("rpi4")
    assert rpi4.emulated is not None and rpi4.estimate is not None
    costs = dataclasses.replace(rpi4.emulated, stall=2.0, clock_ghz=1.5,
                                cycles={"int_simd_mac": 1.0, "float_simd": 0.5, "other": 0.5})
    board = dataclasses.replace(rpi4, emulated=costs)
    counts = {"int_simd_mac": 1_000_000, "float_simd": 2_000_000, "other": 0}
    # 2 * (1e6 + 1e6) cycles / 1.5e6 cycles per ms = 2.667 ms on one thread; 4 threads at the cost model's efficiency
    assert emulated_ms(board, counts, 1) == pytest.approx(8 / 3)
    assert emulated_ms(board, counts, 4) == pytest.approx(8 / 3 / (1 + 3 * rpi4.estimate.thread_efficiency))
    assert emulated_ms(dataclasses.replace(rpi4, emulated=None), counts, 1) is None


def _counted(row: Candidate, instructions: int) -> Candidate:
    """The row with an emulated count as search/emulated.py records it."""
    return dataclasses.replace(row, emulated={
        "board": "rpi4", "core": "cortex-a72", "runtime": "ai-edge-litert 2.3.0", "instructions": instructions,
        "label": "executed instructions on an emulated Cortex-A72; not a timing",
        "by_class": {"int_simd_mac": 0, "float_simd": instructions}, "estimate_ms": row.timings.emulated_ms})


def _block(standing_: Standing) -> dict:
    rows = [_counted(r, n) for r, n in zip(table(), (2_000_000, 4_000_000), strict=True)]
    evidence = evidence_for([r.timings for r in rows], "rpi4", "aarch64", "x86_64", True, 0.095, standing_)
    choice = decide(rows, FLOOR, rows[0], evidence)
    return {"requested": "auto", "variant": choice.chosen.name, "reason": choice.reason,
            "criterion": FLOOR.describe(), "yardstick": "float32", "candidates": [c.to_row() for c in choice.table],
            "timing": {"threads": 4, "rounds": 7, "runs_per_candidate": {"float32": 10, "int8": 10}},
            "evidence": dict(choice.evidence.to_dict(), host_would_choose=choice.host_choice)}


def test_the_summary_prints_the_counts_beside_the_estimate_and_names_an_emulated_decision(capsys, monkeypatch):
    from edgekiln.compiler import summary
    from edgekiln.compiler.console import console

    monkeypatch.setattr(console, "width", 400)
    summary.print_candidates(_block(LOSES))
    shown = capsys.readouterr().out
    assert "rpi4 est. ms   emul. Minstr   emul. ms" in shown and "4.00" in shown and "60.000" in shown
    assert "a cross-check, not a decider: ..." in shown and "decided by: chosen by the rpi4 estimate" in shown
    summary.print_candidates(_block(WINS))
    shown = capsys.readouterr().out
    assert ("decided by: chosen by the rpi4 emulated estimate: executed instructions on an emulated Cortex-A72; "
            "not a timing (margin 5%)") in shown


@pytest.mark.parametrize("name", ["x86-64", "rpi3-armv7l"])
def test_emulate_witness_is_refused_in_one_line_where_no_aarch64_core_can_be_counted(name):
    from edgekiln.compiler.errors import TargetError
    from edgekiln.compiler.search.emulated import check

    with pytest.raises(TargetError, match=f"--emulate-witness counts instructions on an emulated aarch64 core; "
                                          f"target {name} is"):
        check(targets.load(name))
