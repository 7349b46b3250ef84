"""What a sweep writes, as types: DIR/points/<name>.json (a point's key and row) and DIR/sweep.json.

A point's row is what its manifest measured (`PointRow`, worker.row_of) or why it was not built
(`PointFailure`); sweep.json's points add where the point sits in the grid, its side-by-side timing here and
its marks (`BuiltRow`, `FailedRow`). The report reads sweep.json defensively (report/sweep.py), as a file
of any age.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NotRequired, TypedDict

from edgekiln.compiler.manifest_schema import EvidenceEntry

if TYPE_CHECKING:
    from typing_extensions import TypeIs  # typing.TypeIs is Python 3.13; only mypy reads it here


class PointRow(TypedDict):
    """The sweep's columns of one built point, from its manifest (None: the manifest has no such figure)."""

    variant: str | None
    sha256: str
    bytes: int
    params: int
    macs: int | None
    accuracy: float | None
    accuracy_drop: float | None
    reference_accuracy: float | None
    sqnr_db: float | None
    agreement: float | None
    cosine_mean: float | None
    cosine_p5: float | None
    estimate_ms: float | None
    worker_p50_ms: float


class PointFailure(TypedDict):
    """A point that was not built: the one-line reason; `retry` when its worker died (the next run tries it)."""

    error: str
    retry: NotRequired[bool]


PointOutcome = PointRow | PointFailure


def failed(outcome: PointOutcome) -> TypeIs[PointFailure]:
    """Whether the point was not built (its row has the reason)."""
    return "error" in outcome


class SavedPoint(TypedDict):
    """DIR/points/<name>.json: the point's key (points.key) and its row; the mark of a finished point."""

    key: str
    row: PointOutcome


class PointTiming(TypedDict):
    """A built point timed here, side by side with the others: the median of its round p50s, its runs."""

    p50_ms: float
    timed_runs: int


class PointAt(TypedDict):
    """Where a point sits in the grid, and its recipe file (relative to DIR)."""

    name: str
    prune: float | str
    format: str
    quantize: str
    student: float | str  # the width of `build --distill` (1.0: the model itself)
    recipe: str


class FrontMarks(TypedDict):
    on_front: bool
    within_budget: bool


class BuiltRow(PointAt, PointRow, PointTiming, FrontMarks):
    """One built point of sweep.json."""


class FailedRow(PointAt, PointFailure, FrontMarks):
    """One point of sweep.json that was not built (never on the front, never within the budget)."""


SweepRow = BuiltRow | FailedRow


class SweepTiming(TypedDict):
    measured_on: str
    machine: str
    rounds: int
    threads: int
    note: str


class SweepResult(TypedDict):
    """DIR/sweep.json: every point, the front and the choice, and the evidence and rule they were made by."""

    target: str
    max_drop: float | None
    quality: str
    latency: str
    evidence: EvidenceEntry
    criterion: str
    timing: SweepTiming
    points: list[SweepRow]
    front: list[str]
    chosen: str | None
    built_now: list[str]
    reused: list[str]
