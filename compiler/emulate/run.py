"""Run the bundle's own `python -m runtime validate` on an emulated board (qemu-user, the board's core).

Traps this module handles (FACTS.md): LiteRT and onnxruntime crash reading an x86 /proc/cpuinfo,
so each board gets a root of its own whose proc/cpuinfo describes its core (QEMU_LD_PREFIX
redirects absolute paths there when the file exists); QEMU's default `max` CPU gave wrong int8
results, so QEMU_CPU is pinned to the board's core; results come back on stdout as JSON, never
through files (a path the prefix also holds would be redirected).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgekiln import targets as target_data
from edgekiln.compiler import Progress
from edgekiln.compiler.emulate import wheels
from edgekiln.compiler.emulate.platforms import cpuinfo, platform_for
from edgekiln.compiler.emulate.userland import Userland, build_atomically, cache_dir, debian_userland
from edgekiln.compiler.errors import EmulationError, TargetError, ValidationError
from edgekiln.compiler.runtime_json import Validation, with_infinities
from edgekiln.targets import Target, TargetFileError

TIMEOUT_S = 1800  # emulation runs 100-450x slower than the device; a big model can take minutes


@dataclass(frozen=True)
class EmulatedRun:
    """What ran where, and the runtime's own validation report (its JSON)."""

    target: Target
    qemu: str
    userland: Userland
    site: wheels.Site
    report: Validation


def validate_emulated(bundle: Path, target_name: str, progress: Progress = lambda stage: None) -> EmulatedRun:
    """Validate `bundle` on the emulated `target_name`; the report's 'passed' says whether it matched."""
    target = load_target(target_name)
    platform = platform_for(target)
    qemu = shutil.which(platform.qemu)
    if qemu is None:
        raise EmulationError(f"{platform.qemu} not found: emulating {target.arch} needs QEMU's user-mode emulator",
                             "install the Debian package qemu-user-static: sudo apt-get install qemu-user-static")
    requirements = bundle / "requirements.txt"
    if not requirements.is_file():
        raise ValidationError(f"{bundle} has no requirements.txt", "is it an edgekiln bundle?")
    userland = debian_userland(platform, target, progress)
    site = wheels.install(wheels.requirement_lines(requirements), platform, target, userland, progress)
    board = board_root(userland, target)
    progress(f"Running `python -m runtime validate` on an emulated {target.name} ({target.qemu_cpu})")
    report = _run(qemu, board, userland, site, target, bundle)
    return EmulatedRun(target, f"{platform.qemu} -cpu {target.qemu_cpu}", userland, site, report)


def load_target(name: str) -> Target:
    try:
        return target_data.load(name)
    except TargetFileError as exc:
        raise TargetError(str(exc), "run `edgekiln targets` to list them") from exc


def board_root(userland: Userland, target: Target) -> Path:
    """The userland seen through symlinks, plus the board's own proc/cpuinfo (built once per core)."""
    final = cache_dir() / "boards" / f"{userland.root.parent.name}-{target.qemu_cpu}-{target.cores}"
    if not (final / "proc" / "cpuinfo").is_file():
        def build(work: Path) -> None:
            for entry in userland.root.iterdir():
                (work / entry.name).symlink_to(entry)
            (work / "proc").mkdir()
            (work / "proc" / "cpuinfo").write_text(cpuinfo(target, target.cores))

        build_atomically(final, build)
    return final


def _run(qemu: str, board: Path, userland: Userland, site: wheels.Site, target: Target, bundle: Path) -> Validation:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(Path.home()),
           "QEMU_LD_PREFIX": str(board), "QEMU_CPU": target.qemu_cpu, "PYTHONPATH": str(site.path),
           "PYTHONDONTWRITEBYTECODE": "1",  # the bundle is the user's: write nothing into it
           "PYTHONNOUSERSITE": "1"}
    command = [qemu, str(board) + userland.python, "-m", "runtime", "validate", "--json"]
    try:
        result = subprocess.run(command, cwd=bundle, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ValidationError(f"emulated validation did not finish within {TIMEOUT_S} s") from exc
    return parse_report(result.returncode, result.stdout, result.stderr, f"emulated {target.name}")


def parse_report(returncode: int, stdout: str, stderr: str, where: str) -> Validation:
    """The runtime's JSON report; a runtime that refused to run (checksum, crash) is a ValidationError."""
    start = stdout.find("{")
    try:
        report = json.loads(stdout[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        report = None
    if report is None or returncode not in (0, 1):
        lines = [line.strip() for line in stderr.splitlines() if line.strip() and "XNNPACK delegate" not in line]
        # The exception line says what went wrong; interpreters print more after it ("Registration failed.").
        errors = [line for line in lines if re.match(r"^(\w+\.)*\w*(Error|Exception)\b|^error:", line)]
        detail = (errors or lines or [f"exit status {returncode}, no output"])[-1]
        if returncode < 0:
            detail = f"killed by signal {-returncode} ({detail})"
        raise ValidationError(f"the bundle's runtime failed on {where}: {detail}",
                              "the device would fail the same way; see the bundle's README for its requirements")
    return with_infinities(report)


def environment_facts(run: EmulatedRun) -> str:
    """One line naming the emulated environment, for the report."""
    python = run.userland.debs.get(f"python{run.target.python}", "?")
    arch = platform_for(run.target).debian_arch
    notes = "".join(f"; NOTE: {note}" for note in run.userland.notes)
    return (f"{run.target.name}: {run.qemu}, Debian {run.userland.suite} {arch} userland "
            f"(python{run.target.python} {python}){notes}")

