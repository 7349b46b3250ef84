"""One candidate, one record from plan to manifest: the variant planned, the artifact built, its static stats,
its quality, its timings and the rule's verdict. A builder makes it (variant and artifact), the search stage
adds the rest in place of copies (`dataclasses.replace`), the choice reads a tuple of them, and `to_row` writes
the manifest's candidate row; `from_row` reads one back (the sweep, the tests of the rule)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, Unpack

from edgekiln.compiler.analyze.graph_stats import GraphStats
from edgekiln.compiler.evaluate.quality import Quality
from edgekiln.compiler.manifest_schema import CandidateDetails, CandidateRow, EmulatedCount, Layout
from edgekiln.compiler.search.variants import Variant, variant_named


@dataclass(frozen=True)
class Timings:
    """A candidate's latency by each kind of evidence: host p50 (median of round p50s, None: not raced) over
    `host_runs` runs, the target's cost-model estimate, the p50 measured on the device (build --device), and
    the executed instructions on the emulated core through its per-class cycle costs (build --emulate-witness)."""

    host_p50_ms: float | None = None
    host_runs: int = 0
    estimate_ms: float | None = None
    device_p50_ms: float | None = None
    emulated_ms: float | None = None


class TimingsGiven(TypedDict, total=False):
    """Some of a candidate's Timings, by field name (Candidate.timed)."""

    host_p50_ms: float | None
    host_runs: int
    estimate_ms: float | None
    device_p50_ms: float | None
    emulated_ms: float | None


@dataclass(frozen=True)
class Verdict:
    """Why the rule chose or passed over a candidate: in full (the manifest), in a few words (the CLI table)."""

    text: str
    short: str


@dataclass(frozen=True)
class Candidate:
    """A candidate (model None = not built; notes say why) and everything measured of it.

    key: its row name in the table ("int8", or "tflite:int8" when formats are compared); the variant's name
        until the search names it.
    timed_as: the model timed in its place when this host cannot time it representatively (a note says so).
    layouts: tensor name -> its Layout for inputs/outputs whose layout the converter changed (compiled =
        source.transpose(perm), e.g. onnx2tf's NHWC); the runtime undoes it.
    details: facts for the manifest's `quantization` section (converter, activation type, calibration, ...).
    stats / quality / timings / verdict: added by the search stage (None until then).
    emulated: its executed instructions on the target's emulated core (build --emulate-witness), else None.
    """

    variant: Variant
    model: bytes | None
    notes: tuple[str, ...] = ()
    details: CandidateDetails = field(default_factory=CandidateDetails)
    timed_as: bytes | None = None
    layouts: dict[str, Layout] = field(default_factory=dict)
    key: str = ""
    stats: GraphStats | None = None
    quality: Quality | None = None
    timings: Timings = Timings()
    verdict: Verdict | None = None
    size: int = 0  # the bytes of a model not held here (a row read back: from_row)
    recorded_pieces: int | None = None  # the fast-path pieces of a row read back, with no coverage here
    emulated: EmulatedCount | None = None

    @property
    def name(self) -> str:
        return self.key or self.variant.name

    @property
    def format(self) -> str:
        return self.variant.format

    @property
    def bytes(self) -> int:
        return len(self.model) if self.model is not None else self.size

    @property
    def pieces(self) -> int | None:
        """How many pieces the fast path (XNNPACK) runs it in, where measured."""
        coverage = self.details.get("coverage")
        return coverage["fast_path_pieces"] if coverage else self.recorded_pieces

    @property
    def judged(self) -> Quality:
        """Its quality; only a judged candidate is ranked."""
        assert self.quality is not None, f"{self.name} was not judged"
        return self.quality

    def timed(self, **timings: Unpack[TimingsGiven]) -> Candidate:
        """The same candidate with some timings set."""
        return replace(self, timings=replace(self.timings, **timings))

    def to_row(self) -> CandidateRow:
        """The manifest's row of this candidate (keys in the order the manifest has always had them)."""
        q, t = self.quality or Quality(), self.timings
        row: CandidateRow = {
            "name": self.name, "format": self.format, "quantize": str(self.variant.quantize), "bytes": self.bytes,
            "p50_ms": t.host_p50_ms, "runs": t.host_runs, "sqnr_db": q.sqnr_db, "agreement": q.agreement,
            "accuracy": q.accuracy, "accuracy_drop": q.accuracy_drop, "pieces": self.pieces,
            "notes": list(self.notes), "estimate_ms": t.estimate_ms, "device_p50_ms": t.device_p50_ms,
            "cosine_mean": q.cosine_mean, "cosine_p5": q.cosine_p5}
        if q.kinds:  # judged by output kind: the samples, flips and each figure's interval
            row.update({"samples": q.samples or 0, "values_sqnr_db": q.values_sqnr_db, "kinds": list(q.kinds),
                        "intervals": {name: [low, high] for name, low, high in q.intervals}})
            if q.flips is not None:
                row["flips"] = q.flips
        if self.verdict is not None:
            row["verdict"], row["short"] = self.verdict.text, self.verdict.short
        if self.emulated is not None:
            row["emulated"] = self.emulated
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Candidate:
        """A candidate as a manifest row recorded it (its figures and verdict; no model, no details: stand-ins of
        its size and fast-path pieces): what the sweep and the rule's tests read."""
        name = str(row["name"])
        # a sweep point's row names the variant it shipped; a candidate's row is named after its variant
        variant = variant_named(str(row.get("variant", name)), str(row.get("format", "")), row.get("quantize"))
        verdict = Verdict(row["verdict"], row.get("short", "")) if "verdict" in row else None
        emulated = row.get("emulated")
        return cls(variant, None, tuple(row.get("notes", ())), key=name, size=int(row.get("bytes", 0)),
                   recorded_pieces=row.get("pieces"),
                   quality=Quality.from_dict(row),
                   timings=Timings(row.get("p50_ms"), int(row.get("runs", 0)), row.get("estimate_ms"),
                                   row.get("device_p50_ms"), emulated["estimate_ms"] if emulated else None),
                   verdict=verdict, emulated=emulated)
