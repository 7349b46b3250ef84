"""From executed-instruction counts to milliseconds on the Raspberry Pi 4, checked against the published anchors.

    python bench/witness_estimate.py     # counts the 6 anchor models under emulation once (cached), then fits

Each anchor model of bench/fit_estimate.py (the XNNPACK README's Pi 4 figures) is counted on an emulated
Cortex-A72 (compiler/emulate/witness.py: one warm invoke, one thread, by instruction class). Counts become
milliseconds through a cycle cost per class:

    ms = stall * sum(cycles[class] * count[class]) / clock / (1 + (threads - 1) * thread_efficiency)

cycles[class]: the reciprocal issue throughput of the pipelines each class runs on in the Cortex-A72
Software Optimization Guide (ARM UAN 0016A, section 3, "Instruction characteristics": two FP/ASIMD pipes
F0/F1, ASIMD integer multiply(-accumulate) on F0 only, one load and one store pipe, one branch pipe, two
integer ALU pipes). ASSUMED: the guide's tables could not be read from this machine, so these are the
pipeline counts as recalled, not quoted figures; the fitted `stall` absorbs their common scale (and the
clock, taken as 1.5 GHz). thread_efficiency is the cost model's (0.728, fit_estimate.py THREAD_SOURCE).
The single fitted figure, `stall`, is cross-validated leave-one-out exactly as fit_estimate.py does, and
the int8 / float32 ratio needs no fitted figure at all (stall cancels): both errors are printed beside the
cost model's, read from targets/rpi4.toml (the same anchors, its own leave-one-out predictions).

First run (ai-edge-litert 2.3.0, qemu-aarch64 7.2, ~20 min): it LOSES. Leave-one-out band -54.8% .. +208.5%
(cost model -12.4% .. +18.0%); int8 / float32 ratio 1.09 vs published 0.31 for MobileNet v1 (cost model ratio
error 9.5%). int8 MobileNet v1 executes 174.6 M instructions (73.5 M SMULL/SMLAL-class) against float32's
210.5 M (145.9 M FMLA-class), so instruction counts weighted by these assumed costs cannot see the device's
3x int8 speed-up: the per-class costs (Q-form vs D-form throughput, SMLAL's 8 lanes) need the guide's real
figures or a fit, and until then the count is a cross-check, not evidence.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.anchor_models import tflite_bytes  # noqa: E402
from bench.fit_estimate import PUBLISHED, THREAD_EFFICIENCY, THREADS, Key  # noqa: E402
from edgekiln import runtime, targets  # noqa: E402
from edgekiln.compiler.emulate.witness import CLASSES, witness  # noqa: E402

CYCLES = {"int_simd_mac": 1.0, "float_simd": 0.5, "simd_other": 0.5, "load_store": 1.0, "branch": 1.0,
          "other": 0.5}  # assumed, see the docstring
CLOCK_GHZ = 1.5
SPEEDUP = 1 + (THREADS - 1) * THREAD_EFFICIENCY


def counted(key: Key, anchors: Path, cache: Path) -> dict[str, int]:
    """Instructions by class of one warm invoke of an anchor model (cached by the model's hash)."""
    data = tflite_bytes(key[0], key[1], anchors)
    digest = hashlib.sha256(data).hexdigest()[:16]
    found = cache / f"{key[0]}-{key[1]}-{digest}.json"
    if not found.is_file():
        model = cache / f"{key[0]}-{key[1]}.tflite"
        cache.mkdir(parents=True, exist_ok=True)
        model.write_bytes(data)
        result = witness(model, "rpi4", Path(runtime.__file__).parent, progress=print)
        found.write_text(json.dumps(result.to_dict()["by_class"]))
    return json.loads(found.read_text())


def ideal_ms(counts: dict[str, int]) -> float:
    """Milliseconds at the assumed per-class throughputs, no stalls, the board's threads."""
    cycles = sum(CYCLES[c] * counts[c] for c in CLASSES)
    return cycles / (CLOCK_GHZ * 1e6) / SPEEDUP


def fit_stall(ideal: dict[Key, float], published: dict[Key, float], keys: list[Key]) -> float:
    """The stall factor minimising the squared log error over `keys` (the geometric mean of the ratios)."""
    return math.exp(sum(math.log(published[k] / ideal[k]) for k in keys) / len(keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=Path, default=Path.home() / ".cache" / "edgekiln" / "anchors")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgekiln" / "witness")
    args = parser.parse_args()
    published = {k: float(v) for k, v in PUBLISHED["rpi4"][1].items()}
    counts = {k: counted(k, args.anchors, args.cache) for k in published}
    ideal = {k: ideal_ms(counts[k]) for k in published}
    stall = fit_stall(ideal, published, list(published))
    loo = {k: ideal[k] * fit_stall(ideal, published, [j for j in published if j != k]) for k in published}
    cost_model = {(a.model, a.dtype): a.loo_ms for a in targets.load("rpi4").estimate.anchors}
    print(f"stall factor (all 6 anchors): {stall:.2f} x the assumed throughput at {CLOCK_GHZ} GHz, "
          f"{THREADS} threads at efficiency {THREAD_EFFICIENCY}")
    print(f"{'anchor':28s} {'Minstr':>8s} {'published':>9s} {'cost model LOO':>15s} {'emulated LOO':>13s}")
    for k in published:
        cm, em = cost_model[k] or float("nan"), loo[k]
        print(f"{k[0] + ' ' + k[1]:28s} {sum(counts[k].values()) / 1e6:8.1f} {published[k]:9.0f} "
              f"{cm:8.1f} ({cm / published[k] - 1:+6.1%}) {em:6.1f} ({em / published[k] - 1:+6.1%})")
    for name, errors in (("cost model", [cost_model[k] / published[k] - 1 for k in published]),  # type: ignore[operator]
                         ("emulated", [loo[k] / published[k] - 1 for k in published])):
        print(f"{name:10s} leave-one-out band {min(errors):+.1%} .. {max(errors):+.1%}, "
              f"mean |error| {sum(map(abs, errors)) / len(errors):.1%}")
    for model in sorted({m for m, _ in published}):
        pair = [(model, "int8"), (model, "float32")]
        if all(k in published for k in pair):
            pub, em = published[pair[0]] / published[pair[1]], ideal[pair[0]] / ideal[pair[1]]
            print(f"int8 / float32 {model}: published {pub:.3f}, emulated {em:.3f} ({em / pub - 1:+.1%}; "
                  f"no fitted figure); cost model ratio error (max over models) "
                  f"{targets.load('rpi4').estimate.ratio_error:.1%}")


if __name__ == "__main__":
    main()
