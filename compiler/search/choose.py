"""Which measured variant to ship: the fastest that is accurate enough, size then fidelity breaking ties.

Pure logic over a measured candidate table (no TensorFlow, no timing), so the rule is unit-tested on
tables. "Accurate enough" is the accuracy budget (--max-drop) when labelled evaluation data was given,
else a fidelity floor on held-back calibration samples. float32 always meets it, so the choice is never
slower than float32 beyond the host's noise margin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Protocol

SLOWER_MARGIN = 1.05  # below 5% two host p50s are within this shared host's run-to-run noise
SIZE_MARGIN = 1.02  # sizes within 2% are the same size (int8 variants differ by a few header bytes)


class Faithfulness(Protocol):
    """What the criterion reads: a measured row, or a candidate's quality before it is timed."""

    @property
    def sqnr_db(self) -> float | None: ...
    @property
    def agreement(self) -> float | None: ...
    @property
    def accuracy_drop(self) -> float | None: ...


@dataclass(frozen=True)
class Criterion:
    """max_drop: accuracy budget in points (labelled evaluation); else the fidelity floor applies."""

    max_drop: float | None = None
    min_agreement: float = 0.99
    min_sqnr_db: float = 30.0

    def meets(self, row: Faithfulness) -> bool:
        if self.max_drop is not None:
            return row.accuracy_drop is not None and bool(row.accuracy_drop <= self.max_drop)
        agreement_ok = row.agreement is None or bool(row.agreement >= self.min_agreement)
        return agreement_ok and bool(_sqnr(row) >= self.min_sqnr_db)

    def describe(self) -> str:
        if self.max_drop is not None:
            return f"accuracy drop <= {self.max_drop:g} points on the labelled evaluation data"
        return f"top-1 agreement >= {self.min_agreement:g} and SQNR >= {self.min_sqnr_db:g} dB on held-back samples"

    def shortfall(self, row: Faithfulness) -> str:
        """Why a row does not meet the criterion, in a few words."""
        if self.max_drop is not None:
            return f"accuracy drops {row.accuracy_drop:.2f} points (budget {self.max_drop:g})"
        sqnr = "inf" if row.sqnr_db is None else f"{row.sqnr_db:.1f} dB"
        agreement = "" if row.agreement is None else f"top-1 agreement {row.agreement:.3f}, "
        return f"{agreement}SQNR {sqnr}: below the fidelity floor"


@dataclass(frozen=True)
class Row:
    """One measured candidate. sqnr_db None means bit-exact (infinite); p50_ms is host latency, None when
    the candidate was the only eligible one and so was not raced."""

    name: str
    format: str
    quantize: str
    bytes: int
    p50_ms: float | None
    runs: int = 0
    sqnr_db: float | None = None
    agreement: float | None = None
    accuracy: float | None = None
    accuracy_drop: float | None = None
    pieces: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


@dataclass(frozen=True)
class Choice:
    """The chosen row, why, and a verdict for every row (in full, and in a few words for a table)."""

    chosen: Row
    reason: str
    verdicts: dict[str, str]
    short: dict[str, str] = field(default_factory=dict)


def pick(rows: list[Row], criterion: Criterion, baseline: Row | None = None) -> Choice:
    """The fastest row meeting the criterion; within SLOWER_MARGIN of it, the smallest (within SIZE_MARGIN),
    then the most faithful, then the smallest exactly.

    `baseline` (float32) is only quoted in the reason; it competes only if it is among `rows`.
    """
    eligible = [r for r in rows if criterion.meets(r)]
    if len(rows) == 1:  # nothing to choose between: nothing was raced
        only = rows[0]
        short = "" if criterion.meets(only) else \
            f"; it does not meet {criterion.describe()}: {criterion.shortfall(only)}"
        return Choice(only, f"{only.name}: the only eligible candidate{short}", {only.name: "chosen"},
                      {only.name: "chosen"})
    if not eligible:  # only when even float32 fails: ship the most faithful and say so
        best = max(rows, key=_sqnr)
        return Choice(best, f"no candidate meets {criterion.describe()}; {best.name} is the most faithful",
                      {r.name: "chosen" if r is best else criterion.shortfall(r) for r in rows},
                      {r.name: "chosen" if r is best else "not accurate enough" for r in rows})
    fastest = min(eligible, key=_p50)
    tied = [r for r in eligible if _p50(r) <= _p50(fastest) * SLOWER_MARGIN]
    smallest = min(r.bytes for r in tied)
    # Among equals, the earlier (simpler) candidate: max() keeps the first of equal keys.
    chosen = max((r for r in tied if r.bytes <= smallest * SIZE_MARGIN), key=lambda r: (_sqnr(r), -r.bytes))
    verdicts = {r.name: _verdict(r, chosen, criterion, tied, baseline) for r in rows}
    return Choice(chosen, _reason(chosen, rows, criterion, verdicts, baseline), verdicts,
                  {r.name: _short(r, chosen, criterion, tied, baseline) for r in rows})


def _short(row: Row, chosen: Row, criterion: Criterion, tied: list[Row], baseline: Row | None) -> str:
    """The verdict in a few words, for the CLI table."""
    words = []
    if row is chosen:
        words.append("chosen")
    elif not criterion.meets(row):
        words.append("over budget" if criterion.max_drop is not None else "below floor")
    elif row not in tied:
        words.append("slower")
    elif row.bytes > chosen.bytes * SIZE_MARGIN:
        words.append("larger")
    else:
        words.append("less faithful" if _sqnr(row) < _sqnr(chosen) else "tie")
    if baseline is not None and row is not baseline and _p50(row) > _p50(baseline) * SLOWER_MARGIN:
        words.append(f"{_p50(row) / _p50(baseline):.1f}x")  # the table's legend: times the baseline's p50
    return "; ".join(words)


def _verdict(row: Row, chosen: Row, criterion: Criterion, tied: list[Row], baseline: Row | None) -> str:
    if row is chosen:
        return "chosen"
    slower = baseline is not None and row is not baseline and _p50(row) > _p50(baseline) * SLOWER_MARGIN
    versus = f"{_p50(row) / _p50(baseline):.2f}x slower than {baseline.name}" if slower and baseline else ""
    why = f" ({row.notes[0]})" if versus and row.notes else ""
    if not criterion.meets(row):
        return criterion.shortfall(row) + (f"; {versus}{why}" if versus else "")
    if versus:
        return versus + why
    if row not in tied:
        return f"slower ({_p50(row) / _p50(chosen):.2f}x the chosen p50)"
    if row.bytes > chosen.bytes * SIZE_MARGIN:
        return f"as fast, but larger ({row.bytes / chosen.bytes:.2f}x the chosen size)"
    if _sqnr(row) < _sqnr(chosen):
        return "as fast and as small, less faithful"
    return "a tie (as fast, as small, as faithful): the earlier, simpler candidate is chosen"


def _reason(chosen: Row, rows: list[Row], criterion: Criterion, verdicts: dict[str, str],
            baseline: Row | None) -> str:
    base = f" vs {baseline.name} {_p50(baseline):.3f} ms" if baseline is not None and baseline is not chosen else ""
    speed = f"; p50 {_p50(chosen):.3f} ms{base}"
    text = f"{chosen.name}: the fastest candidate (within {SLOWER_MARGIN - 1:.0%} noise; then smallest) " \
           f"that meets {criterion.describe()}{speed}"
    others = [f"{r.name} {verdicts[r.name]}" for r in rows if r is not chosen and r is not baseline]
    return text + ("; " + "; ".join(others) if others else "")


def _sqnr(row: Faithfulness) -> float:
    return math.inf if row.sqnr_db is None else row.sqnr_db


def _p50(row: Row) -> float:
    """A raced row's p50 (pick only compares rows it raced: an un-raced one is alone)."""
    assert row.p50_ms is not None, f"{row.name} was not timed"
    return row.p50_ms
