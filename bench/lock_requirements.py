"""Pin each target's bundle requirements to the exact set an emulated validation installed and passed with.

    python bench/lock_requirements.py            # all targets and buildable formats; writes targets/locks.toml
    python bench/lock_requirements.py --format onnx               # only the ONNX groups; other entries kept
    python bench/lock_requirements.py --only "numpy==2.4.6 onnxruntime==1.32.0 aarch64 cp311"

For every distinct (numpy pin, interpreter pin, arch, Python) among the targets, it builds the
sample model's int8 bundle for the first such target, resets the bundle's requirements.txt to
the two base pins, lets `edgekiln validate --emulate` resolve and install them for the target
(wheels with their dependencies, or the OS's package where apt provides one), and, only when
every golden sample passed, records what was installed. compiler/compat.requirements() then
writes those pins into every bundle for that platform.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekiln import targets  # noqa: E402
from edgekiln.compiler.device import compat  # noqa: E402
from edgekiln.compiler.emulate import validate_emulated  # noqa: E402
from edgekiln.compiler.errors import EdgekilnError  # noqa: E402
from edgekiln.compiler.pipeline import build  # noqa: E402
from edgekiln.compiler.recipe import ARTIFACT_FORMATS, Recipe  # noqa: E402

LOCKS = ROOT / "targets" / "locks.toml"
SAMPLE = ROOT / "sample_models" / "mnist_cnn.keras"
CALIB = ROOT / "sample_models" / "mnist_calib.npz"


def groups() -> dict[str, tuple[targets.Target, str]]:
    """lock key -> (first target with that key, format), for the targets edgekiln can build for."""
    found: dict[str, tuple[targets.Target, str]] = {}
    for name in sorted(targets.names(), key=lambda n: n != "rpi4"):  # validate on the Pi 4 where it can
        target = targets.load(name)
        for model_format in (f.value for f in ARTIFACT_FORMATS):
            try:
                compat.check_wheels(target, model_format)
            except EdgekilnError:
                continue
            if target.arch in ("aarch64", "armv7l"):
                found.setdefault(compat.lock_key(target, model_format), (target, model_format))
    return found


def lock_one(target: targets.Target, model_format: str, work: Path) -> tuple[list[str], str]:
    """(installed pins, how they were validated) for one target and format."""
    bundle = work / f"{target.name}-{model_format}"
    build(Recipe(source=str(SAMPLE), target=target.name, calib=str(CALIB), output=str(bundle),
                 format=model_format, quantize="int8", calib_samples=32, bench_runs=5, force=True))
    # Say what was validated from the manifest, not from the request (auto could ship float).
    mode = (json.loads((bundle / "manifest.json").read_text()).get("quantization") or {}).get("mode", "none")
    (bundle / "requirements.txt").write_text("\n".join(compat.base_pins(target, model_format)) + "\n")
    run = validate_emulated(bundle, target.name, lambda stage: print(f"  {stage}", flush=True))
    if not run.report.get("passed"):
        raise SystemExit(f"{target.name}: emulated validation FAILED with {run.site.wheels}; nothing locked")
    samples = len(run.report["samples"])
    how = (f"edgekiln validate --emulate {target.name}: PASS {samples}/{samples} ({SAMPLE.name} {mode}, "
           f"{run.report.get('interpreter')}), {dt.date.today().isoformat()}")
    return sorted([*run.site.wheels, *run.site.from_apt]), how


def write(locks: dict[str, tuple[list[str], str]]) -> None:
    lines = ["# Exact bundle requirements per (numpy pin, interpreter pin, arch, CPython): the set an emulated",
             "# validation installed and passed with. Written by bench/lock_requirements.py; read by",
             "# compiler/compat.requirements(). A platform without an entry gets the two base pins.", ""]
    for key, (pins, how) in sorted(locks.items()):
        lines += [f'["{key}"]', "requirements = [", *[f'  "{pin}",' for pin in pins], "]", f'validated = "{how}"', ""]
    LOCKS.write_text("\n".join(lines))


def existing() -> dict[str, tuple[list[str], str]]:
    """The entries locks.toml holds now (kept when only some groups are re-validated)."""
    if not LOCKS.is_file():
        return {}
    return {key: (list(entry["requirements"]), entry["validated"])
            for key, entry in tomllib.loads(LOCKS.read_text()).items()}


def selected(model_format: str | None, only: list[str]) -> dict[str, tuple[targets.Target, str]]:
    """The groups to validate: all, or those of one format, or the named lock keys (unknown key: exit)."""
    found = {key: group for key, group in groups().items() if model_format in (None, group[1])}
    unknown = [key for key in only if key not in found]
    if unknown:
        raise SystemExit(f"unknown lock key(s) {unknown}; known: {sorted(found)}")
    return {key: found[key] for key in only} if only else found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=[f.value for f in ARTIFACT_FORMATS], help="only the groups of this format")
    parser.add_argument("--only", action="append", default=[], metavar="KEY", help="only this lock key (repeatable)")
    args = parser.parse_args()
    chosen = selected(args.format, args.only)
    # A partial run replaces only what it re-validated; a full run rewrites the file from scratch.
    locks = existing() if args.format or args.only else {}
    with tempfile.TemporaryDirectory(prefix="edgekiln-lock-") as work:
        for key, (target, model_format) in chosen.items():
            print(f"{key}  (validating on emulated {target.name})", flush=True)
            locks[key] = lock_one(target, model_format, Path(work))
            print(f"  locked: {', '.join(locks[key][0])}")
    write(locks)
    print(f"written to {LOCKS}")


if __name__ == "__main__":
    main()
