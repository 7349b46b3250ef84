"""`build --device`: the device's timings of the eligible candidates, put into the candidate rows.

The race (compiler/deploy/race.py) runs before the choice, so the rule reads the device's table
(choose.evidence_for: device evidence when every competing row has a device p50).
"""

from __future__ import annotations

from typing import Protocol

from edgekiln.compiler.device import compat
from edgekiln.compiler.evaluate.criterion import Criterion
from edgekiln.compiler.manifest_schema import RaceMethod
from edgekiln.compiler.search.candidate import Candidate
from edgekiln.compiler.search.choose import Evidence
from edgekiln.targets import Target


class DeviceTable(Protocol):
    """A device's timings (deploy/race.DeviceRace, a frozen record: hence read-only properties)."""

    @property
    def device(self) -> str: ...

    @property
    def p50_ms(self) -> dict[str, float]: ...

    @property
    def method(self) -> RaceMethod: ...


class DeviceTimer(Protocol):
    def __call__(self, models: dict[str, tuple[str, bytes]], requirements: list[str], runs: int,
                 threads: int) -> DeviceTable: ...


def raced(racer: DeviceTimer, target: Target, rows: list[Candidate], competing: set[str], baselines: set[str],
          criterion: Criterion, runs: int, threads: int) -> tuple[list[Candidate], Evidence, RaceMethod]:
    """Time on the device the competing rows that meet the criterion and the runnable float32 baselines;
    the rows with their device p50, the device evidence, and the manifest's note of how it was timed.
    threads: the target's, as the host timed them (the bundle's runtime runs with them too)."""
    raced_rows = [r for r in rows if (r.name in competing and criterion.meets(r.judged)) or r.name in baselines]
    models = {r.name: (r.format, r.model or b"") for r in raced_rows}
    requirements = list(dict.fromkeys(pin for f in dict.fromkeys(fmt for fmt, _ in models.values())
                                      for pin in compat.requirements(target, f)))
    table = racer(models, requirements, runs, threads)
    rows = [r.timed(device_p50_ms=table.p50_ms.get(r.name)) for r in rows]
    return rows, Evidence("device", target.name, device=table.device), table.method
