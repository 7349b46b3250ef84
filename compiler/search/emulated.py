"""build --emulate-witness: each candidate's executed instructions on the target's emulated core.

Every built candidate runs one warm invoke in the target's emulated userland under the instruction-counting
plugin (emulate/witness.py); its counts, the label saying they are counts and not a timing, and the count
turned into milliseconds through the target's per-class cycle costs (emulate/cycles.emulated_ms) go on the
candidate (`Candidate.emulated`, `Timings.emulated_ms`). Whether that figure ranks the candidates is the
target file's verdict (emulate/cycles.standing), which the search hands to choose.evidence_for; where it does
not, the counts stay a cross-check the summary and the report print beside the estimate.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from edgekiln import runtime
from edgekiln.compiler import Progress
from edgekiln.compiler.emulate.cycles import Standing, emulated_ms, label, standing
from edgekiln.compiler.errors import TargetError
from edgekiln.compiler.manifest_schema import EmulatedCount
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.targets import Target

EMULATED_ARCHES = ("aarch64",)  # the plugin-capable qemu-user builds emulate/witness.QEMU knows


def check(target: Target) -> None:
    """Refuse --emulate-witness in one line for a target whose core cannot be emulated with the plugin, or
    where qemu-user or a C compiler is missing (emulate/witness.tools says what to install)."""
    from edgekiln.compiler.emulate.witness import tools

    if target.arch not in EMULATED_ARCHES or not target.qemu_cpu:
        raise TargetError(f"--emulate-witness counts instructions on an emulated {'/'.join(EMULATED_ARCHES)} core; "
                          f"target {target.name} is {target.arch}",
                          "leave out --emulate-witness, or build for an aarch64 board (e.g. -t rpi4)")
    tools(target)


def witnessed(rows: list[Candidate], target: Target, threads: int,
              progress: Progress = lambda line: None) -> tuple[list[Candidate], Standing]:
    """The rows, each built one with its emulated count and estimate; and whether that estimate decides."""
    return [_counted(row, target, threads, progress) if row.model is not None else row for row in rows], \
        standing(target)


def _counted(row: Candidate, target: Target, threads: int, progress: Progress) -> Candidate:
    from edgekiln.compiler.emulate.witness import witness

    with tempfile.TemporaryDirectory(prefix="edgekiln-emulated-") as scratch:
        model = Path(scratch) / f"{row.name.replace(':', '-')}.{row.format}"
        model.write_bytes(row.model or b"")
        counted = witness(model, target, Path(runtime.__file__).parent, progress=progress)
    ms = emulated_ms(target, counted.counts.by_class, threads)
    record: EmulatedCount = {"board": target.name, "core": counted.core, "runtime": counted.runtime,
                             "label": label(target), "instructions": counted.total,
                             "by_class": dict(counted.counts.by_class),
                             "estimate_ms": None if ms is None else round(ms, 3)}
    return replace(row, emulated=record).timed(emulated_ms=record["estimate_ms"])
