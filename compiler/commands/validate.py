"""`edgekiln validate BUNDLE [--emulate TARGET]`: the bundle's own runtime checks its golden outputs.

Without --emulate the bundle's `python -m runtime validate` runs here, with this Python, in a
subprocess whose working directory is the bundle (exactly what its README tells the device to
do). With --emulate it runs on an emulated board (compiler/emulate). Either way it is the
bundle's runtime, not the compiler's, that loads the model and compares.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgekiln.compiler import Progress, runtime_json
from edgekiln.compiler.console import console
from edgekiln.compiler.errors import ValidationError


@dataclass(frozen=True)
class Validation:
    """The runtime's report, where it ran, and lines describing that environment."""

    report: runtime_json.Validation
    where: str
    facts: tuple[str, ...] = ()


def run_validation(bundle: Path, emulate: str | None, progress: Progress = lambda stage: None) -> Validation:
    """Run the bundle's runtime validation on this host or an emulated target; print nothing."""
    if not (bundle / "manifest.json").is_file():
        raise ValidationError(f"{bundle} is not a bundle: it has no manifest.json",
                              "pass the directory `edgekiln build -o` wrote")
    if emulate is None:
        progress("Running `python -m runtime validate` on this host")
        return Validation(_validate_on_host(bundle), "this host", (f"validated on this host with {sys.executable}",))
    from edgekiln.compiler.emulate import validate_emulated
    from edgekiln.compiler.emulate.run import environment_facts

    run = validate_emulated(bundle, emulate, progress)
    installed = [*run.site.wheels, *(f"{pin} (apt)" for pin in run.site.from_apt)]
    return Validation(run.report, f"emulated {run.target.name}",
                   (f"emulated {environment_facts(run)}",
                    f"installed from requirements.txt: {', '.join(installed)}"))


def report(outcome: Validation) -> None:
    """Print the outcome; raise ValidationError (exit 1) unless every golden sample passed."""
    for line in outcome.facts:
        console.print(line)
    print_report(outcome.report, outcome.where)
    result = outcome.report
    if not result.get("passed"):
        failed = sum(not s["passed"] for s in result["samples"])
        raise ValidationError(f"FAIL on {outcome.where}: {failed}/{len(result['samples'])} golden samples differ "
                              f"beyond the tolerance (max |diff| {result['max_abs_diff']:.4g}, "
                              f"atol {result['atol']:g})",
                              "the bundle's outputs there are not the ones recorded at build time")


def _validate_on_host(bundle: Path) -> runtime_json.Validation:
    from edgekiln.compiler.emulate.run import parse_report

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-m", "runtime", "validate", "--json"], cwd=bundle, env=env,
                            capture_output=True, text=True)
    return parse_report(result.returncode, result.stdout, result.stderr, "this host")


def print_report(report: runtime_json.Validation, where: str) -> None:
    """PASS/FAIL per golden sample with its max difference, then the verdict; never a timing."""
    for sample in report["samples"]:
        verdict = "[green]PASS[/green]" if sample["passed"] else "[bold red]FAIL[/bold red]"
        console.print(f"sample {sample['index']}: {verdict}  max |diff| {sample['max_abs_diff']:.4g}")
    passed = sum(s["passed"] for s in report["samples"])
    verdict = "[green]PASS[/green]" if report.get("passed") else "[bold red]FAIL[/bold red]"
    facts = [report.get("interpreter"), report.get("numpy") and f"numpy {report['numpy']}",
             report.get("python") and f"Python {report['python']}", report.get("machine")]
    console.print(f"{verdict}: {passed}/{len(report['samples'])} golden samples match on {where} "
                  f"(max |diff| {report['max_abs_diff']:.4g}, atol {report['atol']:g}, rtol {report['rtol']:g}"
                  + "".join(f"; {fact}" for fact in facts if fact) + ")")
    if where.startswith("emulated"):
        console.print("[dim]emulation checks outputs only: it runs 100-450x slower than the device, so it "
                      "reports no latency[/dim]")
