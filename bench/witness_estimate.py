"""From executed-instruction counts to milliseconds on each board, checked against the published anchors.

    python bench/witness_estimate.py              # rpi4: counts the 6 anchors once (cached, ~6 min), fits, prints
    python bench/witness_estimate.py --target rpi3 --write    # also writes [emulated] into targets/rpi3.toml

Each anchor model of bench/fit_estimate.py (the XNNPACK README's Pi figures) is counted on the board's emulated
core (compiler/emulate/witness.py: one warm invoke, one thread, by instruction class) and turned into
milliseconds by compiler/emulate/cycles.py:

    ms = stall * sum(cycles[class] * count[class]) / clock / (1 + (threads - 1) * thread_efficiency)

cycles[class] (CORES): the reciprocal issue throughput of the pipes each class runs on, per core. ASSUMED for
every core: ARM's software optimization guides (Cortex-A53: none published; A72: UAN 0016A; A76: the A76
guide) could not be read from this machine, so these are the pipe counts as recalled, not quoted figures.
The single fitted figure, `stall`, is cross-validated leave-one-out exactly as fit_estimate.py does; the
int8 / float32 ratio needs no fitted figure (stall cancels). Both errors are printed beside the cost model's,
read from the target file (its own leave-one-out predictions over the same anchors), and --write stores them
in the target's [emulated] table, where compiler/emulate/cycles.standing reads them to decide whether the
emulated estimate may rank candidates. Boards without published figures (rpi5, rpi-zero-2w, generic-aarch64)
get their core's cycles and clock with the stall of an anchored board (BORROWED) and no error: a cross-check
only.

Measured (ai-edge-litert 2.3.0, qemu-aarch64 7.2): rpi4 LOSES, leave-one-out -54.8% .. +208.4% (mean |error|
88.8%) vs the cost model's -12.4% .. +18.0% (9.3%); int8 / float32 ratio 1.09 vs published 0.31 for
MobileNet v1. int8 MobileNet v1 executes 174.6 M instructions (73.5 M SMULL/SMLAL-class) against float32's
210.5 M (145.9 M FMLA-class): counts weighted by these assumed costs cannot see the device's 3x int8 speed-up.
rpi3 (Cortex-A53, XNNPACK picks other microkernels: 332.2 M instructions for float32 MobileNet v1) LOSES too:
-49.1% .. +111.4% (mean |error| 49.6%, ratio error 97.2%) vs the cost model's -14.4% .. +31.9% (16.7%, 2.8%).
Counts come from the windowed plugin (one invoke between two marks); the earlier difference of two runs gave
the same rpi4 band to 0.1 point.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.anchor_models import tflite_bytes  # noqa: E402
from bench.fit_estimate import PUBLISHED, THREADS, Key  # noqa: E402
from edgekiln import runtime, targets  # noqa: E402
from edgekiln.compiler.emulate.cycles import emulated_ms  # noqa: E402
from edgekiln.compiler.emulate.witness import DRIVER, PLUGIN_SOURCE, witness  # noqa: E402
from edgekiln.targets import EmulatedCosts, Target  # noqa: E402

# Reciprocal throughput per class, per QEMU core (all ASSUMED, see the docstring), and what each rests on.
CORES: dict[str, tuple[str, dict[str, float], str]] = {
    "cortex-a72": ("Cortex-A72", {"int_simd_mac": 1.0, "float_simd": 0.5, "simd_other": 0.5, "load_store": 1.0,
                                  "branch": 1.0, "other": 0.5},
                   "assumed (recalled, not quoted): two FP/ASIMD pipes F0/F1, integer multiply(-accumulate) on F0 "
                   "only, one load and one store pipe, one branch pipe, two integer ALUs"),
    "cortex-a53": ("Cortex-A53", {"int_simd_mac": 2.0, "float_simd": 2.0, "simd_other": 1.0, "load_store": 1.0,
                                  "branch": 1.0, "other": 0.5},
                   "assumed (recalled; ARM publishes no A53 optimization guide): in-order dual issue, a 64-bit "
                   "NEON datapath (a Q-form multiply takes two issue cycles), one load/store pipe, two integer ALUs"),
    "cortex-a76": ("Cortex-A76", {"int_simd_mac": 1.0, "float_simd": 0.5, "simd_other": 0.5, "load_store": 0.5,
                                  "branch": 0.5, "other": 0.33},
                   "assumed (recalled, not quoted): two 128-bit ASIMD pipes V0/V1, integer multiply on V0, two "
                   "load pipes and a store pipe, two branch units, three integer ALUs; SDOT counted like SMLAL"),
}
CLOCK_GHZ = {"rpi4": 1.5, "rpi3": 1.4, "rpi-zero-2w": 1.0, "rpi5": 2.4, "generic-aarch64": 1.5}
PLUGIN = hashlib.sha256(PLUGIN_SOURCE.read_bytes() + DRIVER.read_bytes()).hexdigest()[:8]  # counts of this plugin
BORROWED = {"rpi5": "rpi4", "rpi-zero-2w": "rpi3", "generic-aarch64": "rpi4"}  # boards without anchors


def counted(key: Key, board: str, anchors: Path, cache: Path) -> dict[str, int]:
    """Instructions by class of one warm invoke of an anchor model on the board's core (cached by its hash)."""
    data = tflite_bytes(key[0], key[1], anchors)
    core = targets.load(board).qemu_cpu
    found = cache / f"{core}-{key[0]}-{key[1]}-{hashlib.sha256(data).hexdigest()[:16]}-{PLUGIN}.json"
    if not found.is_file():
        model = cache / f"{key[0]}-{key[1]}.tflite"
        cache.mkdir(parents=True, exist_ok=True)
        model.write_bytes(data)
        result = witness(model, board, Path(runtime.__file__).parent, progress=print)
        found.write_text(json.dumps(result.to_dict()["by_class"]))
    return json.loads(found.read_text())


def costs_for(board: str, stall: float = 1.0, stall_basis: str = "") -> EmulatedCosts:
    core, cycles, basis = CORES[targets.load(board).qemu_cpu]
    return EmulatedCosts(core, CLOCK_GHZ[board], cycles, basis, stall, stall_basis)


def ideal_ms(target: Target, counts: dict[str, int]) -> float:
    """Milliseconds at the assumed throughputs (stall 1), the board's threads."""
    value = emulated_ms(target, counts, THREADS)
    assert value is not None
    return value


def fit_stall(ideal: dict[Key, float], published: dict[Key, float], keys: list[Key]) -> float:
    """The stall factor minimising the squared log error over `keys` (the geometric mean of the ratios)."""
    return math.exp(sum(math.log(published[k] / ideal[k]) for k in keys) / len(keys))


def cross_validated(board: str, anchors: Path, cache: Path) -> tuple[EmulatedCosts, dict[Key, tuple[float, float]]]:
    """The board's [emulated] figures (stall fitted on all anchors, errors leave-one-out) and, per anchor,
    (instructions in millions, leave-one-out ms)."""
    published = {k: float(v) for k, v in PUBLISHED[board][1].items()}
    counts = {k: counted(k, board, anchors, cache) for k in published}
    target = Target(**{**targets.load(board).__dict__, "emulated": costs_for(board)})
    ideal = {k: ideal_ms(target, counts[k]) for k in published}
    loo = {k: ideal[k] * fit_stall(ideal, published, [j for j in published if j != k]) for k in published}
    errors = [loo[k] / published[k] - 1 for k in published]
    ratios = [(ideal[(m, "int8")] / ideal[(m, "float32")]) / (published[(m, "int8")] / published[(m, "float32")]) - 1
              for m in sorted({m for m, _ in published}) if (m, "int8") in published and (m, "float32") in published]
    costs = costs_for(board, round(fit_stall(ideal, published, list(published)), 4),
                      f"fitted on {len(published)} published anchors of {board} ({PUBLISHED[board][0]})")
    costs = EmulatedCosts(**{**costs.__dict__, "error_band": (round(min(errors), 4), round(max(errors), 4)),
                             "mean_abs_error": round(sum(map(abs, errors)) / len(errors), 4),
                             "ratio_error": round(max(map(abs, ratios)), 4)})
    return costs, {k: (sum(counts[k].values()) / 1e6, loo[k]) for k in published}


def print_table(board: str, costs: EmulatedCosts, rows: dict[Key, tuple[float, float]]) -> None:
    """Published vs cost model (leave-one-out) vs emulated (leave-one-out), and both errors."""
    model = targets.load(board).estimate
    assert model is not None and costs.error_band is not None
    cost = {(a.model, a.dtype): a for a in model.anchors}
    print(f"{board}: {costs.core} @ {costs.clock_ghz} GHz, stall {costs.stall} x the assumed throughput, "
          f"{THREADS} threads")
    print(f"{'anchor':28s} {'Minstr':>8s} {'published':>9s} {'cost model LOO':>16s} {'emulated LOO':>16s}")
    for k, (minstr, loo) in rows.items():
        a = cost[k]
        print(f"{k[0] + ' ' + k[1]:28s} {minstr:8.1f} {a.published_ms:9.0f} {a.loo_ms:7.1f} ({a.loo_error:+6.1%}) "
              f"{loo:7.1f} ({loo / a.published_ms - 1:+6.1%})")
    lo, hi = model.error_band or (math.nan, math.nan)
    print(f"cost model: leave-one-out {lo:+.1%} .. {hi:+.1%}, mean |error| {model.mean_abs_loo_error:.1%}, "
          f"int8/float32 ratio error {model.ratio_error:.1%}")
    print(f"emulated:   leave-one-out {costs.error_band[0]:+.1%} .. {costs.error_band[1]:+.1%}, mean |error| "
          f"{costs.mean_abs_error:.1%}, int8/float32 ratio error {costs.ratio_error:.1%} (no fitted figure)")


def toml_section(c: EmulatedCosts) -> str:
    """The [emulated] table as TOML text."""
    quote = lambda text: '"' + text.replace('"', "'") + '"'  # noqa: E731
    lines = ["[emulated]", "# Written by bench/witness_estimate.py; see compiler/emulate/cycles.py.",
             f"core = {quote(c.core)}", f"clock_ghz = {c.clock_ghz}",
             "cycles = { " + ", ".join(f"{k} = {v}" for k, v in c.cycles.items()) + " }",
             f"cycles_basis = {quote(c.cycles_basis)}", f"stall = {c.stall}", f"stall_basis = {quote(c.stall_basis)}"]
    if c.error_band is not None:
        lines.append(f"error_band = [{c.error_band[0]}, {c.error_band[1]}]  # leave-one-out, the anchors of [estimate]")
        lines.append(f"mean_abs_error = {c.mean_abs_error}")
        lines.append(f"ratio_error = {c.ratio_error}  # int8 / float32 ratio, no fitted figure")
    return "\n".join(lines) + "\n"


def write(board: str, c: EmulatedCosts) -> None:
    """Put `c` as the target file's [emulated] table, just before [estimate] (which fit_estimate.py keeps last)."""
    path = ROOT / "targets" / f"{board}.toml"
    text = re.sub(r"^\[emulated\]\n(?:(?!^\[).*\n)*\n?", "", path.read_text(), flags=re.MULTILINE)
    head, estimate = re.split(r"^(?=\[estimate\]$)", text, maxsplit=1, flags=re.MULTILINE)
    path.write_text(head.rstrip() + "\n\n" + toml_section(c) + "\n" + estimate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="rpi4", choices=sorted(PUBLISHED.keys() - {"rpi3-armv7l"}))
    parser.add_argument("--write", action="store_true", help="write [emulated] into the target file(s), "
                        "with the boards that borrow its stall")
    parser.add_argument("--anchors", type=Path, default=Path.home() / ".cache" / "edgekiln" / "anchors")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgekiln" / "witness")
    args = parser.parse_args()
    costs, rows = cross_validated(args.target, args.anchors, args.cache)
    print_table(args.target, costs, rows)
    if args.write:
        write(args.target, costs)
        for board, parent in BORROWED.items():
            if parent == args.target:
                write(board, costs_for(board, costs.stall, f"borrowed from {parent} (no published figure for "
                                                           f"{board}): not cross-validated here"))
        print(f"[emulated] written for {args.target} and {sorted(b for b, p in BORROWED.items() if p == args.target)}")


if __name__ == "__main__":
    main()
