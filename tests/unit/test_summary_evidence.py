"""The candidate table and `inspect` show the target estimate beside host p50 and name the evidence."""

from __future__ import annotations

from edgekiln.compiler import summary
from edgekiln.compiler.commands import inspect as inspect_command
from edgekiln.compiler.console import console
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.search.choose import SLOWER_MARGIN, Evidence, decide
from tests.choice_rule import candidate_row


def _block() -> dict:
    rows = [candidate_row("float32", "tflite", "none", 4000, 1.49, 10, None, 1.0, estimate_ms=46.0),
            candidate_row("int8", "tflite", "int8", 1000, round(1.49 * SLOWER_MARGIN * 1.1, 3), 10, 40.0, 1.0,
                          estimate_ms=17.0)]  # host timing favours float32 beyond its noise margin
    choice = decide(rows, Criterion(), rows[0], Evidence("estimate", "rpi4"))
    return {"requested": "auto", "variant": choice.chosen.name, "reason": choice.reason,
            "criterion": Criterion().describe(), "yardstick": "float32",
            "candidates": [c.to_row() for c in choice.table],
            "timing": {"threads": 2, "rounds": 7, "runs_per_candidate": {"float32": 10, "int8": 10}},
            "evidence": dict(choice.evidence.to_dict(), host_would_choose=choice.host_choice)}


def test_the_candidate_table_shows_host_p50_and_the_estimate_and_the_decision_line(capsys, monkeypatch):
    monkeypatch.setattr(console, "width", 200)
    summary.print_candidates(_block())
    shown = capsys.readouterr().out
    assert "host p50 ms" in shown and "rpi4 est. ms" in shown and "17.000" in shown and "46.000" in shown
    assert "decided by: chosen by the rpi4 estimate (margin 9.5%); host timing would have chosen float32" in shown


def test_inspect_lists_each_candidate_with_both_figures(capsys, monkeypatch):
    monkeypatch.setattr(console, "width", 200)
    inspect_command._candidate_lines(_block())  # noqa: SLF001
    shown = capsys.readouterr().out
    assert f"int8: host p50 {round(1.49 * SLOWER_MARGIN * 1.1, 3)} ms, rpi4 estimate 17.0 ms; chosen" in shown
    assert "float32: host p50 1.49 ms, rpi4 estimate 46.0 ms" in shown
    assert "host timing would have chosen float32" in shown


def test_the_decision_line_says_host_timing_and_why():
    block = dict(_block(), evidence=Evidence("host", "x86-64").to_dict())
    assert summary.decision_line(block).startswith("host timing")
    warned = dict(_block(), evidence=Evidence("host", "jetson-nano", "target jetson-nano has no estimate").to_dict())
    assert summary.decision_line(warned) == "host timing: target jetson-nano has no estimate"


def test_the_candidate_table_shows_the_cosines_when_the_rows_have_them(capsys, monkeypatch):
    monkeypatch.setattr(console, "width", 200)
    summary.print_candidates(_block())  # rows without cosine figures: no cosine columns
    assert "cos p5" not in capsys.readouterr().out
    rule = Criterion(min_cosine=0.98, min_cosine_p5=0.95)
    block = _block()
    for row, (mean, p5) in zip(block["candidates"], [(1.0, 1.0), (0.999969, 0.99812)], strict=True):
        row.update(cosine_mean=mean, cosine_p5=p5)
    block["criterion"] = rule.describe()
    summary.print_candidates(block)
    shown = capsys.readouterr().out
    assert "cos p5" in shown and "0.999969" in shown and "0.998120" in shown
    assert "accurate enough = top-1 agreement >= 0.99 and cosine mean >= 0.98 and cosine p5 >= 0.95" in shown
    assert summary.fidelity_text({"sqnr_db": 25.0, "cosine_mean": 0.999969, "cosine_p5": 0.99812}) == \
        "SQNR 25.0 dB cosine 0.999969 (p5 0.99812)"


def test_the_summary_names_each_outputs_kind_and_what_decided_it(capsys, monkeypatch):
    monkeypatch.setattr(console, "width", 300)
    block = _block()
    for row in block["candidates"]:
        row["kinds"] = ["class", "values"]
    block["output_kinds"] = [{"name": "probs", "kind": "class", "decided_by": "graph: Softmax node 'prob'"},
                             {"name": "box", "kind": "values", "decided_by": "data: a short vector"}]
    summary.print_candidates(block)
    shown = capsys.readouterr().out
    assert "outputs judged as probs class (graph: Softmax node 'prob'); box values (data: a short vector)" in shown


def test_the_summary_gives_int8_fastpaths_pieces_before_and_after(capsys, monkeypatch):
    monkeypatch.setattr(console, "width", 200)
    block = _block()
    fast = dict(block["candidates"][1], name="int8+fastpath", pieces=1,
                notes=["respelled for XNNPACK int8 (HardSwish x2): 3 -> 1 piece(s)", "min/max calibration (onnx2tf)"])
    block["candidates"].append(fast)
    block["timing"]["runs_per_candidate"]["int8+fastpath"] = 10
    summary.print_candidates(block)
    assert "int8+fastpath: respelled for XNNPACK int8 (HardSwish x2): 3 -> 1 piece(s)" in capsys.readouterr().out


def test_the_summary_says_what_int8_adaround_moved_and_that_no_judged_output_changed(capsys, monkeypatch):
    """Figures equal to plain int8's are explained under the table, not left to puzzle over."""
    monkeypatch.setattr(console, "width", 200)
    block = _block()
    said = ("AdaRound: 19 of 256 int8 weights rounded the other way in 4 of 4 layers (0 s); no judged output changed: "
            "on the 32 tuning samples its outputs equal nearest rounding's bit for bit (the moved weights shift no "
            "output by a whole int8 step)")
    block["candidates"].append(dict(block["candidates"][1], name="int8+adaround", notes=["min/max calibration", said]))
    block["timing"]["runs_per_candidate"]["int8+adaround"] = 10
    summary.print_candidates(block)
    shown = " ".join(capsys.readouterr().out.split())
    assert f"int8+adaround: {said}" in shown and "int8: min/max" not in shown


def test_the_summary_names_a_rows_cross_fitting_stand_ins(capsys, monkeypatch):
    """A fold that did not build a variant judged the nearest one before it in its place: the row's held-back
    figures are that variant's, and the summary says so under the table."""
    monkeypatch.setattr(console, "width", 200)
    block = _block()
    fitted = ("cross-fitted: each of the 300 samples judged by the model calibrated and tuned without it (2 folds); "
              "fold 1: int8+fallback in its place, fold 2: int8+fallback in its place")
    layers = dict(block["candidates"][1], name="int8+fallback+layers", notes=["float: probs", fitted])
    block["candidates"].append(layers)
    block["timing"]["runs_per_candidate"]["int8+fallback+layers"] = 10
    summary.print_candidates(block)
    shown = " ".join(capsys.readouterr().out.split())
    assert ("int8+fallback+layers: held-back figures partly another variant's: fold 1: int8+fallback in its place, "
            "fold 2: int8+fallback in its place") in shown
    assert "float: probs" not in shown
