"""The choice rule checked on the table a build recorded, never on which row won.

Which candidate is fastest is decided by timing on the host that runs the test, so it differs between
machines (AVX-512/VNNI or not, Intel or AMD). What must hold everywhere: the variant the manifest names
is the one `choose.pick` gives over the rows the manifest recorded as competing, on the evidence the
manifest says decided (host timing, the target's estimate, or device timing).
"""

from __future__ import annotations

import re
from typing import Any

from edgekiln.compiler.evaluate.criterion import DEFAULT_COSINE, Criterion, fidelity_key
from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.choose import Evidence, pick

NOT_COMPETING = ("baseline (not eligible)", "not eligible")


def candidate_row(name: str, model_format: str, quantize: str, size: int, p50_ms: float | None, runs: int = 0,
                  sqnr_db: float | None = None, agreement: float | None = None, **more: Any) -> Candidate:
    """A measured candidate as a table row gives it (Candidate.from_row): the rule's tests build tables so."""
    return Candidate.from_row({"name": name, "format": model_format, "quantize": quantize, "bytes": size,
                               "p50_ms": p50_ms, "runs": runs, "sqnr_db": sqnr_db, "agreement": agreement, **more})


def _row(recorded: dict) -> Candidate:
    row = Candidate.from_row(recorded)
    return row if row.verdict is None else Candidate.from_row({k: v for k, v in recorded.items()
                                                                 if k not in ("verdict", "short")})


def competing_rows(quantization: dict) -> list[Candidate]:
    """The recorded rows the choice was made among (float32 baselines of a forced mode, and rows the
    target cannot run, are recorded but did not compete)."""
    return [_row(row) for row in quantization["candidates"] if not row["verdict"].startswith(NOT_COMPETING)]


def yardstick(quantization: dict) -> Candidate | None:
    """The float32 row that "N x slower" is relative to (recorded by name)."""
    named = quantization.get("yardstick")
    return next((_row(row) for row in quantization["candidates"] if row["name"] == named), None)


def recorded_criterion(quantization: dict) -> Criterion:
    text = quantization["criterion"]
    budget = re.match(r"accuracy drop <= ([0-9.]+) points", text)
    given = text.replace(f"cosine mean >= {DEFAULT_COSINE:g} (the default)", "")  # not a floor the user gave
    mean, p5 = (re.search(rf"cosine {name} >= ([0-9.]+)", given) for name in ("mean", "p5"))
    return Criterion(max_drop=float(budget.group(1)) if budget else None,
                     min_cosine=float(mean.group(1)) if mean else None,
                     min_cosine_p5=float(p5.group(1)) if p5 else None,
                     by_kind="each output by its kind" in text or bool(budget))


def assert_choice_obeys_rule(manifest: dict) -> None:
    """The shipped variant is the rule's choice over the recorded table, and the table says so."""
    q = manifest["quantization"]
    rows = competing_rows(q)
    assert rows, "no competing row was recorded"
    # pick compares rows by identity: the yardstick is the competing row itself when it competed
    baseline = next((r for r in rows if r.name == q.get("yardstick")), None) or yardstick(q)
    recorded = q.get("evidence") or {"kind": "host", "target": ""}
    evidence = Evidence(recorded["kind"], recorded["target"], recorded.get("warning"), recorded.get("device", ""),
                        recorded.get("margin") if recorded["kind"] == "estimate" else None)
    timed = baseline is not None and baseline.timings.host_p50_ms is not None
    ranked = baseline if timed and evidence.latency(baseline) is not None else None
    choice = pick(rows, recorded_criterion(q), ranked, evidence)
    assert choice.chosen.name == q["variant"], (choice.chosen.name, q["variant"], q["candidates"])
    verdicts = {row["name"]: row["verdict"] for row in q["candidates"]}
    assert verdicts[q["variant"]] == "chosen"
    assert all(verdicts[r.name] == choice.verdict_of(r.name).text for r in rows)


def assert_refinements_not_below_plain_int8(quantization: dict, prefix: str = "tflite:") -> None:
    """Every built int8 refinement row (int8+...) is at least as faithful as the plain int8 row: top-1
    agreement, then SQNR, or a tie by the rows' 95 % intervals (search/faithful.py), on the table the build
    recorded."""
    rows = {row["name"].removeprefix(prefix): row for row in quantization["candidates"]
            if row["name"].startswith(prefix) or ":" not in row["name"]}
    plain = rows["int8"]

    def key(row: dict) -> tuple:
        return fidelity_key(Quality(row.get("sqnr_db"), row.get("agreement")))

    # int8+fastpath respells ops for speed (graph/onnx_fast_path.py), it refines no fidelity: not guarded
    refined = [name for name in rows if name.startswith("int8+") and name != "int8+fastpath"]
    assert refined, "no int8 refinement was built"
    for name in refined:
        tie = rows[name].get("kinds") and Criterion().same_fidelity(Quality.from_dict(rows[name]),
                                                                    Quality.from_dict(plain))
        assert key(rows[name]) >= key(plain) or tie, (name, rows[name], plain)


def host_choice(manifest: dict) -> str:
    """What host timing alone gives over the recorded table (the manifest records it beside the choice)."""
    q = manifest["quantization"]
    rows = competing_rows(q)
    base = next((r for r in rows if r.name == q.get("yardstick")), None) or yardstick(q)
    timed = base if base and base.timings.host_p50_ms is not None else None
    return pick(rows, recorded_criterion(q), timed).chosen.name
