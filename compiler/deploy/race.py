"""`build --device`: the build's eligible candidates timed on the device, side by side, before the choice.

The candidates' model files travel with the runtime and the bundle's requirements in one upload (the
deploy machinery: probe, then one tar; the venv for these requirements is made or reused, --wheels
shipped when it is missing); the agent's `race` runs `python -m runtime race` over them, interleaved
rounds as on the build host, and nothing but the venv stays on the device.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from edgekiln import runtime
from edgekiln.compiler.deploy.fleet import destinations
from edgekiln.compiler.deploy.remote import DeployOptions, PreparedBundle, deploy
from edgekiln.compiler.errors import DeployError
from edgekiln.compiler.manifest_schema import RaceMethod, provenance


@dataclass(frozen=True)
class DeviceRace:
    """One device's table: p50 per candidate (row name), how it was timed, and the device's facts."""

    device: str  # user@host[:port] as given
    p50_ms: dict[str, float]
    method: RaceMethod


@dataclass(frozen=True)
class Racer:
    """Where and how to race: the device (the first --device), the deploy options, the requirements."""

    host: str
    options: DeployOptions

    def __call__(self, models: dict[str, tuple[str, bytes]], requirements: list[str], runs: int,
                 threads: int) -> DeviceRace:
        return race_on_device(self.host, self.options, models, requirements, runs, threads)


def race_on_device(host: str, options: DeployOptions, models: dict[str, tuple[str, bytes]],
                   requirements: list[str], runs: int, threads: int | None = None) -> DeviceRace:
    """Time `models` (row name -> (format, bytes)) on the device; a failure is one DeployError line.
    threads: the target's (the build's); --threads of the deploy options wins."""
    (dest,) = destinations([host], None)
    with tempfile.TemporaryDirectory(prefix="edgekiln-race-") as work:
        folder = Path(work) / "race"
        files = _write_upload(folder, models, requirements)
        prepared = PreparedBundle(folder, options.wheels)
        try:
            timed = replace(options, runs=runs, threads=options.threads or threads)
            outcome = deploy(prepared, dest, timed, verb="race")
        finally:
            prepared.close()
    if outcome.failure is not None or outcome.result is None:
        failure = outcome.failure
        raise DeployError(f"{dest}: {failure.message if failure else 'no result'}", failure.hint if failure else "")
    table, facts = outcome.result["race"], outcome.result.get("facts")
    method: RaceMethod = {"device": str(dest), "device_id": dest.device_id, "cpu": facts["cpu"] if facts else None,
              "machine": table.get("machine"),
              "runtime": f"{table.get('runtime')} {table.get('runtime_version')}", "threads": table.get("threads"),
              "rounds": table.get("rounds"), "runs_per_round": table.get("runs"), "round_ms": table.get("round_ms"),
              "method": "candidates timed in turn on the device, round by round (each at least runs_per_round runs "
                        "and round_ms), on zero inputs; "
                        "p50 = median of the round medians (python -m runtime race)",
              "how": provenance("device", f"each row's p50: median of {table.get('rounds')} interleaved round p50s",
                                rounds=table.get("rounds"), threads=table.get("threads"), samples=1,
                                data="zero inputs")}
    return DeviceRace(str(dest), {files[f]: p50 for f, p50 in table["p50_ms"].items()}, method)


def _write_upload(folder: Path, models: dict[str, tuple[str, bytes]], requirements: list[str]) -> dict[str, str]:
    """runtime/, requirements.txt, candidates/NN_name.FORMAT and a stub manifest: file name -> row name."""
    (folder / "candidates").mkdir(parents=True)
    files = {}
    for k, (name, (model_format, data)) in enumerate(models.items()):
        file_name = f"{k:02d}_{re.sub(r'[^A-Za-z0-9]+', '_', name)}.{model_format}"
        (folder / "candidates" / file_name).write_bytes(data)
        files[file_name] = name
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n")
    shutil.copytree(Path(runtime.__file__).parent, folder / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # PreparedBundle reads a manifest; this upload is no bundle, and no record is written for it.
    (folder / "manifest.json").write_text(json.dumps({"model": {"sha256": "race"}, "candidates": sorted(files)}))
    return files
