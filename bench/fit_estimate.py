"""Fit the latency-estimate figures of each target to published measurements; write them to its TOML.

    python bench/fit_estimate.py            # converts the anchor models once (~3 min), then fits

Anchors: the XNNPACK README's Raspberry Pi table (multi-threaded, random weights, per-channel
int8), github.com/google/XNNPACK README.md, "Benchmarked on Feb 8, 2022". For each anchored
target the four figures of compiler/estimate.py's cost model that the anchors can pin down
(fp32 and int8 rates, bandwidth, per-op overhead) are fitted by least squares on the log error
of the FITTED anchors only; the HELD_OUT anchors are then estimated with those figures and the
error band (lowest, highest relative error over all anchors) is stored with them.
tests/integration/test_estimate_anchors.py recomputes the held-out estimates from freshly
converted models and holds them within +-30%.

Thread scaling is not fitted (the Pi anchors are all 4-thread): thread_efficiency comes from the
one published single- vs multi-thread pair on 4 big cores, the same README's Pixel 2 table:
MobileNet v1 86 ms -> 27 ms, (86 / 27 - 1) / 3 = 0.73.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.anchor_models import ARCHITECTURES, tflite_bytes  # noqa: E402
from edgekiln.compiler.analyze.graph_stats import OpRecord  # noqa: E402
from edgekiln.compiler.analyze.tflite_stats import tflite_stats  # noqa: E402
from edgekiln.compiler.device.estimate import predict_ms  # noqa: E402
from edgekiln.targets import Anchor, Estimate  # noqa: E402

XNNPACK = ("XNNPACK README (github.com/google/XNNPACK), Raspberry Pi table, multi-threaded end2end-bench, "
           "random weights, per-channel int8, benchmarked Feb 8, 2022")
THREAD_EFFICIENCY = round((86 / 27 - 1) / 3, 3)
THREAD_SOURCE = "thread_efficiency: XNNPACK README, Pixel 2 MobileNet v1 single- vs 4-thread, 86 -> 27 ms"
HELD_OUT = {("mobilenet_v2", "float32"), ("mobilenet_v2", "int8")}  # the fit never sees these

# Published ms per (model, dtype). The README's Pi 3+ column was measured on 32-bit Raspbian Buster.
PUBLISHED = {
    "rpi4": ("RPi 4 (BCM2711, ARM64) column", {
        ("mobilenet_v1", "float32"): 77, ("mobilenet_v2", "float32"): 46,
        ("mobilenet_v3_large", "float32"): 40, ("mobilenet_v3_small", "float32"): 15,
        ("mobilenet_v1", "int8"): 24, ("mobilenet_v2", "int8"): 17}),
    "rpi3": ("RPi 3+ (BCM2837B0) column, measured on 32-bit Raspbian Buster; on the Pi 4 the README's 64-bit "
             "figures were 5-15% slower (float) and 15-17% faster (int8) than its 32-bit ones", {
        ("mobilenet_v1", "float32"): 114, ("mobilenet_v2", "float32"): 79,
        ("mobilenet_v3_large", "float32"): 67, ("mobilenet_v3_small", "float32"): 22,
        ("mobilenet_v1", "int8"): 46, ("mobilenet_v2", "int8"): 30}),
}
PUBLISHED["rpi3-armv7l"] = ("RPi 3+ (BCM2837B0) column, 32-bit Raspbian Buster (this target's ABI); XNNPACK "
                            "kernels: tflite-runtime 2.14's own int8 kernels may be slower", PUBLISHED["rpi3"][1])

# Targets without anchors of their own: (parent, rate factor, bandwidth factor, overhead factor, why).
DERIVED = {
    "rpi-zero-2w": ("rpi3", 1.0 / 1.4, 1.0, 1.4 / 1.0,
                    "Cortex-A53 like the Pi 3+ at 1.0 GHz instead of 1.4 GHz (rates and overhead scaled by "
                    "clock), LPDDR2 like the Pi 3+"),
    "generic-aarch64": ("rpi4", 1.0, 1.0, 1.0, "assumed Cortex-A72-class cores: the Pi 4's figures"),
    "rpi5": ("rpi4", 2.0, 4267 / 3200, 1.5 / 2.4,
             "Cortex-A76 @ 2.4 GHz: rates x2 (the low end of Raspberry Pi's '2-3x the CPU performance of "
             "Raspberry Pi 4'), LPDDR4X-4267 vs LPDDR4-3200, overhead scaled by clock 1.5 -> 2.4 GHz"),
}


def load_records(cache: Path) -> dict[tuple[str, str], tuple[OpRecord, ...]]:
    """Per-op records of every anchor model (converted once, cached as .tflite files)."""
    records = {}
    for name in ARCHITECTURES:
        for dtype in ("float32", "int8"):
            print(f"  {name} {dtype}", flush=True)
            records[(name, dtype)] = tflite_stats(tflite_bytes(name, dtype, cache)).records
    return records


def figures(theta: np.ndarray) -> Estimate:
    fp32, int8, bandwidth, overhead = np.exp(theta[:3]).tolist() + [float(theta[3])]
    return Estimate(fp32_gmacs_per_core=fp32, int8_gmacs_per_core=int8, bandwidth_gbs=bandwidth,
                    op_overhead_us=overhead, thread_efficiency=THREAD_EFFICIENCY)


def fit(records: dict, published: dict, threads: int) -> Estimate:
    """Least squares on log(estimate / published) over the fitted anchors, from a grid of starts."""
    fitted = [key for key in published if key not in HELD_OUT]

    def residuals(theta: np.ndarray) -> np.ndarray:
        e = figures(theta)
        return np.array([np.log(predict_ms(records[k], e, threads).total_ms / published[k]) for k in fitted])

    starts = itertools.product([0.0, 1.0, 2.0], [0.5, 1.5, 2.5], [0.0, 1.5, 3.0], [0.0, 20.0, 60.0])
    best = min((levenberg_marquardt(residuals, np.array(s)) for s in starts), key=lambda t: np.sum(residuals(t) ** 2))
    return figures(best)


LOWER, UPPER = np.array([-3.0, -3.0, -3.0, 0.0]), np.array([5.0, 5.0, 5.0, 500.0])  # log rates, log GB/s, us


def levenberg_marquardt(residuals: Callable[[np.ndarray], np.ndarray], theta: np.ndarray,
                        steps: int = 100) -> np.ndarray:
    """Damped Gauss-Newton with a forward-difference Jacobian, clipped to the bounds (numpy only)."""
    damping = 1e-2
    r = residuals(theta)
    for _ in range(steps):
        jacobian = np.stack([(residuals(theta + h) - r) / 1e-6 for h in np.eye(len(theta)) * 1e-6], axis=1)
        normal = jacobian.T @ jacobian
        step = np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-12), -jacobian.T @ r)
        candidate = np.clip(theta + step, LOWER, UPPER)
        r_new = residuals(candidate)
        if r_new @ r_new < r @ r:
            theta, r, damping = candidate, r_new, damping / 3
        else:
            damping *= 5
        if r @ r < 1e-12 or damping > 1e8:
            break
    return theta


def with_anchors(e: Estimate, records: dict, published: dict, threads: int, basis: str) -> Estimate:
    anchors = tuple(Anchor(model, dtype, float(ms), round(predict_ms(records[(model, dtype)], e, threads).total_ms, 2),
                           (model, dtype) not in HELD_OUT) for (model, dtype), ms in published.items())
    errors = [a.error for a in anchors]
    return Estimate(round(e.fp32_gmacs_per_core, 4), round(e.int8_gmacs_per_core, 4), round(e.bandwidth_gbs, 4),
                    round(e.op_overhead_us, 3), e.thread_efficiency, (round(min(errors), 4), round(max(errors), 4)),
                    anchors, "", basis, (XNNPACK, THREAD_SOURCE))


def derive(parent: Estimate, name: str) -> Estimate:
    parent_name, rate, bandwidth, overhead, why = DERIVED[name]
    return Estimate(round(parent.fp32_gmacs_per_core * rate, 4), round(parent.int8_gmacs_per_core * rate, 4),
                    round(parent.bandwidth_gbs * bandwidth, 4), round(parent.op_overhead_us * overhead, 3),
                    parent.thread_efficiency, parent.error_band, (), parent_name,
                    f"derived from {parent_name}, no published anchor of its own: {why}", parent.sources)


def toml_section(e: Estimate) -> str:
    """The [estimate] table as TOML text."""
    quote = lambda text: '"' + text.replace('"', "'") + '"'  # noqa: E731
    lines = ["[estimate]", "# Written by bench/fit_estimate.py; see compiler/estimate.py for the cost model.",
             f"fp32_gmacs_per_core = {e.fp32_gmacs_per_core}", f"int8_gmacs_per_core = {e.int8_gmacs_per_core}",
             f"bandwidth_gbs = {e.bandwidth_gbs}", f"op_overhead_us = {e.op_overhead_us}",
             f"thread_efficiency = {e.thread_efficiency}", f"error_band = [{e.error_band[0]}, {e.error_band[1]}]"]
    if e.derived_from:
        lines.append(f"derived_from = {quote(e.derived_from)}")
    lines.append(f"basis = {quote(e.basis)}")
    lines.append("sources = [" + ", ".join(quote(s) for s in e.sources) + "]")
    for a in e.anchors:
        lines += ["[[estimate.anchors]]", f'model = "{a.model}"', f'dtype = "{a.dtype}"',
                  f"published_ms = {a.published_ms}", f"estimate_ms = {a.estimate_ms}",
                  f"fitted = {str(a.fitted).lower()}"]
    return "\n".join(lines) + "\n"


def write(target_name: str, e: Estimate) -> None:
    """Replace the target file's [estimate] section (always last in the file) by `e`."""
    path = ROOT / "targets" / f"{target_name}.toml"
    text = re.split(r"^\[estimate\]$", path.read_text(), flags=re.MULTILINE)[0].rstrip() + "\n\n"
    path.write_text(text + toml_section(e))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgekiln" / "anchors")
    args = parser.parse_args()
    print("Per-op records of the anchor models:")
    records = load_records(args.cache)
    fitted: dict[str, Estimate] = {}
    for name, (column, published) in PUBLISHED.items():
        threads = 4  # every Pi in the table has 4 cores and end2end-bench used them all
        e = with_anchors(fit(records, published, threads), records, published, threads,
                         f"XNNPACK README {column}")
        fitted[name] = e
        write(name, e)
        print(f"\n{name}: fp32 {e.fp32_gmacs_per_core} / int8 {e.int8_gmacs_per_core} GMAC/s per core, "
              f"{e.bandwidth_gbs} GB/s, {e.op_overhead_us} us/op; error band {e.error_band}")
        for a in e.anchors:
            print(f"  {a.model:20s} {a.dtype:8s} published {a.published_ms:6.1f} ms  estimate {a.estimate_ms:6.1f} ms"
                  f"  {a.error * 100:+6.1f}%  {'fitted' if a.fitted else 'HELD OUT'}")
    for name, spec in DERIVED.items():
        write(name, derive(fitted[spec[0]], name))
        print(f"{name}: derived from {spec[0]}")


if __name__ == "__main__":
    main()
