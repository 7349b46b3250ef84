"""Executed instructions of one warm invoke, counted on an emulated board's core: a witness, not a timing.

Runs the model in the bundle runtime under Debian's dynamic `qemu-aarch64` (the static build cannot load
plugins) with edgekiln's TCG plugin (qemu_plugin/insn_classes.c, built on first use with the system C
compiler into the user's cache, keyed by its source's hash). One process: a warm-up invoke, then one invoke
between two marks the plugin sees (qemu_plugin/invoke.py), so only that warm invoke is counted, per class and
per `library:function` (a difference of two whole runs went negative on a tiny model: start-up varied by
more than its invoke). One guest thread, fixed hash seed: two witnesses of a model agree.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgekiln.compiler import Progress
from edgekiln.compiler.device import compat
from edgekiln.compiler.emulate import wheels
from edgekiln.compiler.emulate.cycles import label
from edgekiln.compiler.emulate.elf_symbols import Symbolizer
from edgekiln.compiler.emulate.platforms import platform_for
from edgekiln.compiler.emulate.run import TIMEOUT_S, board_root, load_target
from edgekiln.compiler.emulate.userland import build_atomically, cache_dir, debian_userland
from edgekiln.compiler.errors import EmulationError
from edgekiln.targets import Target

HERE = Path(__file__).resolve().parent / "qemu_plugin"
PLUGIN_SOURCE, DRIVER = HERE / "insn_classes.c", HERE / "invoke.py"
CLASSES = ("int_simd_mac", "float_simd", "simd_other", "load_store", "branch", "other")
QEMU = {"aarch64": "qemu-aarch64"}  # Debian's qemu-user: the dynamic build, which loads TCG plugins


@dataclass(frozen=True)
class Counts:
    """Instructions by class, overall and per `library:function`, in the plugin's counting window."""

    by_class: dict[str, int]
    by_symbol: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Witness:
    """One warm invoke of `model` on the emulated `target` core, in the named runtime."""

    model: str
    target: str
    core: str
    runtime: str
    counts: Counts
    label: str = field(default="")

    @property
    def total(self) -> int:
        return sum(self.counts.by_class.values())

    def to_dict(self) -> dict[str, object]:
        """The JSON form (`profile --emulate --json`): totals, by class, by symbol (largest first)."""
        ranked = sorted(self.counts.by_symbol.items(), key=lambda kv: -sum(kv[1].values()))
        return {"model": self.model, "board": self.target, "core": self.core, "runtime": self.runtime,
                "label": self.label, "total_instructions": self.total, "by_class": self.counts.by_class,
                "by_symbol": {name: {"total": sum(c.values()), **c} for name, c in ranked}}


def witness(model: Path, target_name: str | Target, runtime_dir: Path, requirements: list[str] | None = None,
            progress: Progress = lambda stage: None) -> Witness:
    """Count one warm invoke of `model` (.tflite / .onnx) on the emulated target (a name, or a loaded one),
    with `runtime_dir`'s runtime package and `requirements` (default: what a bundle of that format pins)."""
    target = load_target(target_name) if isinstance(target_name, str) else target_name
    qemu, plugin = tools(target)
    platform = platform_for(target)
    userland = debian_userland(platform, target, progress)
    pins = requirements or [line.split("#")[0].strip() for line in compat.requirements(target, model.suffix[1:])]
    site = wheels.install(pins, platform, target, userland, progress)
    board = board_root(userland, target)
    progress(f"Counting one warm invoke of {model.name} on an emulated {target.name} ({target.qemu_cpu})")
    paths = [str(site.path), str(runtime_dir.resolve().parent)]
    counts, runtime = _count(qemu, plugin, board, userland.python, paths, target, model.resolve(), 1)
    return Witness(model.name, target.name, target.qemu_cpu, runtime, counts, label(target))


def tools(target: Target) -> tuple[str, Path]:
    """The plugin-capable qemu for the target's arch and the built plugin; one line on what is missing."""
    name = QEMU.get(target.arch)
    qemu = shutil.which(name) if name else None
    if name is None or qemu is None:
        raise EmulationError(f"{name or 'a plugin-capable qemu for ' + target.arch} not found: counting "
                             "instructions needs QEMU's dynamic user-mode emulator (the static one cannot load "
                             "plugins)", "install Debian's qemu-user: sudo apt-get install qemu-user")
    return qemu, plugin_path()


def plugin_path() -> Path:
    """The plugin built from this source, in ~/.cache/edgekiln/qemu_plugin (built once per source hash)."""
    source = PLUGIN_SOURCE.read_bytes()
    final = cache_dir().parent / "qemu_plugin" / f"insn_classes-{hashlib.sha256(source).hexdigest()[:16]}"
    if not (final / "insn_classes.so").is_file():
        compiler = shutil.which("cc")
        if compiler is None:
            raise EmulationError("no C compiler (cc) found: the instruction-counting QEMU plugin is built on "
                                 "first use", "install Debian's gcc: sudo apt-get install gcc")
        build_atomically(final, lambda work: _compile(compiler, work / "insn_classes.so", []))
    return final / "insn_classes.so"


def _compile(compiler: str, out: Path, defines: list[str]) -> None:
    done = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-fvisibility=hidden", *defines, "-o", str(out),
                           str(PLUGIN_SOURCE)], capture_output=True, text=True)
    if done.returncode != 0:
        raise EmulationError(f"cc could not build {PLUGIN_SOURCE.name}: {done.stderr.strip().splitlines()[-1:]}")


def _count(qemu: str, plugin: Path, board: Path, python: str, paths: list[str], target: Target, model: Path,
           invokes: int) -> tuple[Counts, str]:
    """One emulated process: the plugin's blocks resolved to symbols, and the runtime it ran."""
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(Path.home()), "QEMU_LD_PREFIX": str(board),
           "QEMU_CPU": target.qemu_cpu, "PYTHONPATH": ":".join(paths), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONNOUSERSITE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(prefix="edgekiln-witness-") as scratch:
        out = Path(scratch) / "blocks.json"
        command = [qemu, "-plugin", f"{plugin},out={out}", str(board) + python, str(DRIVER), str(model), str(invokes)]
        try:
            done = subprocess.run(command, cwd="/", env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise EmulationError(f"counting {model.name} did not finish within {TIMEOUT_S} s") from exc
        if done.returncode != 0 or not out.is_file():
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise EmulationError(f"the runtime failed on the emulated {target.name}: {last}")
        report = json.loads(done.stdout[done.stdout.index("{"):])
        return aggregate(json.loads(out.read_text()), report["maps"]), \
            f"{report['runtime']} {report['runtime_version']}"


def aggregate(blocks: dict, maps: str) -> Counts:
    """The plugin's blocks ([address, executions, count per class...]) summed per class and per symbol."""
    names = blocks["classes"]
    if not blocks.get("window"):
        raise EmulationError("the plugin saw no counting window: its driver (qemu_plugin/invoke.py) marks none")
    if tuple(names) != CLASSES:
        raise EmulationError(f"the plugin counts classes {names}, this edgekiln expects {list(CLASSES)}")
    symbolizer = Symbolizer(maps)
    by_class: Counter[str] = Counter()
    by_symbol: dict[str, Counter[str]] = {}
    for address, execs, *counts in blocks["blocks"]:
        per = by_symbol.setdefault(symbolizer.name(address), Counter())
        for name, n in zip(names, counts, strict=True):
            per[name] += execs * n
            by_class[name] += execs * n
    return Counts({c: by_class[c] for c in CLASSES},
                  {s: {c: per[c] for c in CLASSES} for s, per in by_symbol.items()})
