"""What the bundle runtime's `python -m runtime validate | bench | race --json` prints, as the compiler reads it.

The runtime (runtime/__main__.py, runtime/race.py) ships to devices within a line budget and writes these as
plain dicts; the compiler reads them from a subprocess here (`validate`), under emulation (compiler/emulate)
and from a device (compiler/deploy). `profile --json` is manifest_schema.Profile.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from edgekiln.compiler.manifest_schema import RuntimeTiming


class SampleCheck(TypedDict):
    """One golden sample: whether every output matched within atol + rtol * |expected|, its largest |diff|."""

    index: int
    passed: bool
    max_abs_diff: float


class Validation(TypedDict):
    """`validate --json`: the golden samples compared, with the tolerances and where it ran. A bundle the
    runtime refused to run (checksum, unreadable manifest) has only `passed` false, the `error` and no sample
    (the device agent's report, compiler/deploy/agent_run.py)."""

    passed: bool
    samples: list[SampleCheck]
    max_abs_diff: NotRequired[float]
    atol: NotRequired[float]
    rtol: NotRequired[float]
    interpreter: NotRequired[str]
    machine: NotRequired[str]
    python: NotRequired[str]
    numpy: NotRequired[str]
    error: NotRequired[str]


def with_infinities(report: Validation) -> Validation:
    """The report with each null |diff| read back as infinite: the runtime writes JSON without inf (jsonsafe), and a
    golden sentence whose token ids changed (the bundle's tokenizer differs) has an infinite |diff|."""
    for sample in report.get("samples", []):
        sample["max_abs_diff"] = INFINITE if sample.get("max_abs_diff") is None else sample["max_abs_diff"]
    if "max_abs_diff" in report and report["max_abs_diff"] is None:
        report["max_abs_diff"] = INFINITE
    return report


INFINITE = float("inf")


class Benchmark(RuntimeTiming):
    """`bench --json`: latency of one compiled batch in ms (first inference, then steady state over `runs`),
    the interpreter, the process's peak memory, and the machine and Python it ran on."""

    peak_rss_mb: float
    machine: str
    python: str


class Race(TypedDict):
    """`race --json`: each model file's p50 (the median of its round p50s) and how the rounds were run."""

    p50_ms: dict[str, float]
    runs: int
    round_ms: float
    rounds: int
    threads: int | None
    runtime: str
    runtime_version: str
    machine: str
