"""Fit the latency-estimate figures of each target to published measurements, cross-validate them, and write
both to its TOML.

    python bench/fit_estimate.py            # converts the anchor models once (~3 min), then fits

Anchors: the XNNPACK README's Raspberry Pi table (multi-threaded, random weights, per-channel
int8), github.com/google/XNNPACK README.md, "Benchmarked on Feb 8, 2022": 6 figures for each of
the two boards that have a target (Pi 4 ARM64, Pi 3+). No other published Pi figure was found for
models bench/anchor_models.py rebuilds under conditions that can be pinned down (see ANCHOR_SEARCH).

For each anchored target the four figures of compiler/device/estimate.py's cost model that the
anchors can pin down (fp32 and int8 rates, bandwidth, per-op overhead) are fitted by least squares
on the log error of all its anchors: those are the figures stored. The error the target file
stores, and every low/high printed from it, is never an error on a point the fit saw:
- error_band: leave-one-out. Each anchor is predicted by figures fitted on the board's OTHER anchors
  (4 rates on 5 points: 1 degree of freedom) and the band is the lowest and highest of those errors.
- ratio_error: the int8 / float32 latency ratio of one architecture (what the variant choice
  compares), predicted by figures fitted without EITHER variant of that architecture (4 rates on 4
  points), against the published ratio; the largest relative error over the architectures that
  have both (MobileNet v1 and v2). compiler/search/choose.py reads it as the estimate's margin.
A figure the fit leaves at a bound of its range is listed in `at_bound` (rpi3's per-op overhead at
0: the anchors do not determine it). Targets without published figures of their own are derived
from a parent's figures; their band and ratio error are unknown (`anchors = 0`), not borrowed.
tests/integration/test_estimate_anchors.py recomputes the stored estimates from freshly converted
models and the leave-one-out predictions from the stored figures' neighbourhood.

Thread scaling is not fitted (the Pi anchors are all 4-thread): thread_efficiency comes from the
one published single- vs multi-thread pair on 4 big cores, the same README's Pixel 2 table:
MobileNet v1 86 ms -> 27 ms, (86 / 27 - 1) / 3 = 0.73.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.anchor_models import ARCHITECTURES, tflite_bytes  # noqa: E402
from edgekiln.compiler.analyze.graph_stats import OpRecord  # noqa: E402
from edgekiln.compiler.analyze.tflite_stats import tflite_stats  # noqa: E402
from edgekiln.compiler.device.estimate import computes_in_int8, predict_ms, traffic_bytes  # noqa: E402
from edgekiln.targets import Anchor, Estimate  # noqa: E402

Key = tuple[str, str]  # (model, dtype)
Records = Mapping[Key, Sequence[OpRecord]]

XNNPACK = ("XNNPACK README (github.com/google/XNNPACK), Raspberry Pi table, multi-threaded end2end-bench, "
           "random weights, per-channel int8, benchmarked Feb 8, 2022")
THREAD_EFFICIENCY = round((86 / 27 - 1) / 3, 3)
THREAD_SOURCE = "thread_efficiency: XNNPACK README, Pixel 2 MobileNet v1 single- vs 4-thread, 86 -> 27 ms"
ROWS = {("mobilenet_v1", "float32"): "FP32 MobileNet v1 1.0X", ("mobilenet_v2", "float32"): "FP32 MobileNet v2 1.0X",
        ("mobilenet_v3_large", "float32"): "FP32 MobileNet v3 Large",
        ("mobilenet_v3_small", "float32"): "FP32 MobileNet v3 Small",
        ("mobilenet_v1", "int8"): "INT8 MobileNet v1 1.0X", ("mobilenet_v2", "int8"): "INT8 MobileNet v2 1.0X"}

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
# Where more anchors were looked for, and why none was added (each would have to be a board with a target, a
# model anchor_models.py rebuilds, and conditions -- runtime, threads, OS bitness -- that can be pinned down):
ANCHOR_SEARCH = (
    "earlier versions of the same README table (Dec 2019 - Oct 2021): the same boards and models measured with "
    "older XNNPACK; near-twins of the current figures, they would let a held-out anchor's twin stay in its fit",
    "the README's RPi 4 32-bit, RPi 2 and RPi Zero W columns: no target has that board and ABI",
    "TensorFlow blog 'Faster Quantized Inference with XNNPACK' (Sep 2021), Pi 3B+ MobileNet v1/v2 figures as "
    "quoted elsewhere: thread count, OS bitness and TFLite version not stated where they could be read",
    "Arm's ExecuTorch + XNNPACK course and model cards (MobileNetV2 fp32 / int8 on a Raspberry Pi, Pi 5 model "
    "cards): another runtime, thread count not stated where read, two points per board (4 rates need 5): at "
    "most a check of rpi5's derived figures, not an anchor",
)

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
THREADS = 4  # every Pi in the table has 4 cores and end2end-bench used them all


def load_records(cache: Path) -> dict[Key, tuple[OpRecord, ...]]:
    """Per-op records of every anchor model (converted once, cached as .tflite files)."""
    records = {}
    for name in ARCHITECTURES:
        for dtype in ("float32", "int8"):
            print(f"  {name} {dtype}", flush=True)
            records[(name, dtype)] = tflite_stats(tflite_bytes(name, dtype, cache)).records
    return records


# theta: log fp32 GMAC/s, log int8 GMAC/s, log GB/s (per core / total), per-op overhead in us
PARAMS = ("fp32_gmacs_per_core", "int8_gmacs_per_core", "bandwidth_gbs", "op_overhead_us")
LOWER, UPPER = np.array([-3.0, -3.0, -3.0, 0.0]), np.array([5.0, 5.0, 5.0, 500.0])
# A board's memory cannot stream faster than its bus: the theoretical peak (config.txt's default sdram_freq in
# MT/s x the 32-bit LPDDR bus of every Pi). Without this bound the rpi4 fit put bandwidth at 31 GB/s, 2.4x the
# Pi 4's peak: the anchors (all compute-heavy MobileNets) barely constrain it, and a memory-bound user model
# would then be estimated faster than the board can move its bytes.
PEAK_BANDWIDTH_GBS = {"rpi4": (12.8, "LPDDR4-3200 on a 32-bit bus"),
                      "rpi3": (3.6, "LPDDR2 at 900 MT/s on a 32-bit bus")}
PEAK_BANDWIDTH_GBS["rpi3-armv7l"] = PEAK_BANDWIDTH_GBS["rpi3"]


class Bounds(NamedTuple):
    """The range each fitted figure (in theta's units) may take."""

    lower: np.ndarray
    upper: np.ndarray


BOUNDS = Bounds(LOWER, UPPER)


def bounds_for(board: str) -> Bounds:
    """The fit's range for one board: bandwidth at most the board's bus peak where it is known."""
    upper = UPPER.copy()
    if board in PEAK_BANDWIDTH_GBS:
        upper[2] = np.log(PEAK_BANDWIDTH_GBS[board][0])
    return Bounds(LOWER, upper)
STARTS = tuple(np.array(s) for s in itertools.product([0.0, 1.0, 2.0], [0.5, 1.5, 2.5], [0.0, 1.5, 3.0],
                                                       [0.0, 20.0, 60.0]))


def figures(theta: np.ndarray) -> Estimate:
    fp32, int8, bandwidth, overhead = np.exp(theta[:3]).tolist() + [float(theta[3])]
    return Estimate(fp32_gmacs_per_core=fp32, int8_gmacs_per_core=int8, bandwidth_gbs=bandwidth,
                    op_overhead_us=overhead, thread_efficiency=THREAD_EFFICIENCY)


class Arrays(NamedTuple):
    """One anchor model's records as arrays: the cost model of predict_ms vectorised for the fit's many calls."""

    macs: np.ndarray
    traffic: np.ndarray
    int8: np.ndarray
    ops: int


def arrays(records: Sequence[OpRecord]) -> Arrays:
    kept = [r for r in records if not (r.op in ("DEQUANTIZE", "DequantizeLinear") and r.input_dtype == "const")]
    return Arrays(np.array([r.macs for r in kept], float), np.array([traffic_bytes(r) for r in kept], float),
                  np.array([computes_in_int8(r) for r in kept]), len(kept))


def fast_ms(a: Arrays, theta: np.ndarray, threads: int) -> float:
    """predict_ms(records, figures(theta), threads).total_ms for records without ops outside the fast path."""
    n_eff = 1 + (max(threads, 1) - 1) * THREAD_EFFICIENCY
    rate = np.where(a.int8, np.exp(theta[1]), np.exp(theta[0])) * 1e9 * n_eff
    per_op = np.maximum(a.macs / rate, a.traffic / (np.exp(theta[2]) * 1e9))
    return float(per_op.sum() + a.ops * theta[3] * 1e-6) * 1e3


def fit_theta(records: Records, published: Mapping[Key, float], keys: Sequence[Key], threads: int = THREADS,
              starts: Sequence[np.ndarray] = STARTS, bounds: Bounds = BOUNDS) -> np.ndarray:
    """Least squares on log(estimate / published) over `keys` only, from a grid of starts."""
    compiled = {k: arrays(records[k]) for k in keys}

    def residuals(theta: np.ndarray) -> np.ndarray:
        return np.array([np.log(fast_ms(compiled[k], theta, threads) / published[k]) for k in keys])

    return min((levenberg_marquardt(residuals, np.clip(s.astype(float), *bounds), bounds=bounds) for s in starts),
               key=lambda t: float(np.sum(residuals(t) ** 2)))


def fit(records: Records, published: Mapping[Key, float], threads: int = THREADS,
        keys: Sequence[Key] | None = None, starts: Sequence[np.ndarray] = STARTS, bounds: Bounds = BOUNDS) -> Estimate:
    """The figures fitted on `keys` (default: every published anchor)."""
    return figures(fit_theta(records, published, list(published) if keys is None else keys, threads, starts, bounds))


def at_bound(theta: np.ndarray, bounds: Bounds = BOUNDS) -> tuple[str, ...]:
    """The figures a fit left at a bound of its range: the anchors did not determine them."""
    return tuple(name for name, t, lo, hi in zip(PARAMS, theta, bounds.lower, bounds.upper, strict=True)
                 if abs(t - lo) < 1e-6 or abs(t - hi) < 1e-6)


def levenberg_marquardt(residuals: Callable[[np.ndarray], np.ndarray], theta: np.ndarray,
                        steps: int = 100, bounds: Bounds = BOUNDS) -> np.ndarray:
    """Damped Gauss-Newton with a forward-difference Jacobian, clipped to the bounds (numpy only)."""
    damping = 1e-2
    r = residuals(theta)
    for _ in range(steps):
        jacobian = np.stack([(residuals(theta + h) - r) / 1e-6 for h in np.eye(len(theta)) * 1e-6], axis=1)
        normal = jacobian.T @ jacobian
        step = np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-12), -jacobian.T @ r)
        candidate = np.clip(theta + step, bounds.lower, bounds.upper)
        r_new = residuals(candidate)
        if r_new @ r_new < r @ r:
            theta, r, damping = candidate, r_new, damping / 3
        else:
            damping *= 5
        if r @ r < 1e-12 or damping > 1e8:
            break
    return theta


class Fold(NamedTuple):
    """One held-out anchor: its ms predicted by figures fitted on the others, and the figures that fit left at
    a bound of their range."""

    predicted_ms: float
    at_bound: tuple[str, ...]


def leave_one_out(records: Records, published: Mapping[Key, float], threads: int = THREADS,
                  starts: Sequence[np.ndarray] = STARTS, bounds: Bounds = BOUNDS) -> dict[Key, Fold]:
    """Each anchor's ms as predicted by figures fitted on the other anchors only."""
    folds = {}
    for key in published:
        theta = fit_theta(records, published, [k for k in published if k != key], threads, starts, bounds)
        folds[key] = Fold(predict_ms(records[key], figures(theta), threads).total_ms, at_bound(theta, bounds))
    return folds


def leave_model_out_ratios(records: Records, published: Mapping[Key, float], threads: int = THREADS,
                           starts: Sequence[np.ndarray] = STARTS, bounds: Bounds = BOUNDS
                           ) -> dict[str, tuple[float, float]]:
    """Per architecture with both an int8 and a float32 anchor: (published, predicted) int8 / float32 ratio,
    predicted by figures fitted without either variant of it (the choice compares variants of a model the
    fit never saw)."""
    ratios = {}
    for model in sorted({m for m, _ in published}):
        pair = [(model, "int8"), (model, "float32")]
        if not all(k in published for k in pair):
            continue
        e = fit(records, published, threads, [k for k in published if k[0] != model], starts, bounds)
        int8, fp32 = (predict_ms(records[k], e, threads).total_ms for k in pair)
        ratios[model] = (published[pair[0]] / published[pair[1]], int8 / fp32)
    return ratios


def error_band(published: Mapping[Key, float], folds: Mapping[Key, Fold]) -> tuple[float, float]:
    """(lowest, highest) relative error of the leave-one-out predictions, predicted / published - 1."""
    errors = [folds[k].predicted_ms / published[k] - 1 for k in published]
    return round(min(errors), 4), round(max(errors), 4)


def ratio_error(ratios: Mapping[str, tuple[float, float]]) -> float | None:
    """The largest |predicted ratio / published ratio - 1|; None without a pair."""
    return round(max(abs(pred / pub - 1) for pub, pred in ratios.values()), 4) if ratios else None


def cross_validated(records: Records, column: str, published: Mapping[Key, float], threads: int = THREADS,
                    starts: Sequence[np.ndarray] = STARTS, bounds: Bounds = BOUNDS
                    ) -> tuple[Estimate, dict[str, tuple[float, float]], dict[Key, Fold]]:
    """One board's stored figures (fitted on every anchor), its leave-one-out band and its ratio error; the
    ratios and the folds behind them."""
    theta = fit_theta(records, published, list(published), threads, starts, bounds)
    e = figures(theta)
    loo = leave_one_out(records, published, threads, starts, bounds)
    ratios = leave_model_out_ratios(records, published, threads, starts, bounds)
    anchors = tuple(Anchor(model, dtype, float(ms), round(predict_ms(records[(model, dtype)], e, threads).total_ms, 2),
                           True, round(loo[(model, dtype)].predicted_ms, 3), anchor_source(column, (model, dtype)),
                           loo[(model, dtype)].at_bound)
                    for (model, dtype), ms in published.items())
    stored = {(a.model, a.dtype): Fold(a.loo_ms or 0.0, a.loo_at_bound) for a in anchors}  # the file agrees
    return Estimate(round(e.fp32_gmacs_per_core, 4), round(e.int8_gmacs_per_core, 4), round(e.bandwidth_gbs, 4),
                    round(e.op_overhead_us, 3), e.thread_efficiency, error_band(published, stored), anchors, "",
                    f"XNNPACK README {column}", (XNNPACK, THREAD_SOURCE), ratio_error(ratios),
                    at_bound(theta, bounds)), ratios, loo


def anchor_source(column: str, key: Key) -> str:
    return f"XNNPACK README, Raspberry Pi table (Feb 8, 2022), {column[:column.index('column') + 6]}, " \
           f"row {ROWS.get(key, key)}"


def derive(parent: Estimate, name: str) -> Estimate:
    """A board without published figures: its parent's figures scaled; no band, no ratio error (unknown)."""
    parent_name, rate, bandwidth, overhead, why = DERIVED[name]
    return Estimate(round(parent.fp32_gmacs_per_core * rate, 4), round(parent.int8_gmacs_per_core * rate, 4),
                    round(parent.bandwidth_gbs * bandwidth, 4), round(parent.op_overhead_us * overhead, 3),
                    parent.thread_efficiency, None, (), parent_name,
                    f"derived from {parent_name}, no published anchor of its own: {why}", parent.sources,
                    None, parent.at_bound)


def toml_section(e: Estimate) -> str:
    """The [estimate] table as TOML text."""
    quote = lambda text: '"' + text.replace('"', "'") + '"'  # noqa: E731
    lines = ["[estimate]", "# Written by bench/fit_estimate.py; see compiler/device/estimate.py for the cost model.",
             f"fp32_gmacs_per_core = {e.fp32_gmacs_per_core}", f"int8_gmacs_per_core = {e.int8_gmacs_per_core}",
             f"bandwidth_gbs = {e.bandwidth_gbs}", f"op_overhead_us = {e.op_overhead_us}",
             f"thread_efficiency = {e.thread_efficiency}"]
    if e.error_band is not None:
        lines.append(f"error_band = [{e.error_band[0]}, {e.error_band[1]}]  # leave-one-out, over the anchors below")
    if e.ratio_error is not None:
        lines.append(f"ratio_error = {e.ratio_error}  # int8 / float32 ratio, each model left out of the fit")
    if e.at_bound:
        lines.append("at_bound = [" + ", ".join(quote(n) for n in e.at_bound) + "]  # not determined by the anchors")
    if e.derived_from:
        lines.append(f"derived_from = {quote(e.derived_from)}")
    if not e.anchors:
        lines.append("anchors = 0  # no published figure for this board: band unknown")
    lines.append(f"basis = {quote(e.basis)}")
    lines.append("sources = [" + ", ".join(quote(s) for s in e.sources) + "]")
    for a in e.anchors:
        lines += ["[[estimate.anchors]]", f'model = "{a.model}"', f'dtype = "{a.dtype}"',
                  f"published_ms = {a.published_ms}", f"estimate_ms = {a.estimate_ms}",
                  f"loo_ms = {a.loo_ms}", f"fitted = {str(a.fitted).lower()}", f"source = {quote(a.source)}"]
        if a.loo_at_bound:
            lines.append("loo_at_bound = [" + ", ".join(quote(n) for n in a.loo_at_bound) + "]")
    return "\n".join(lines) + "\n"


def write(target_name: str, e: Estimate) -> None:
    """Replace the target file's [estimate] section (always last in the file) by `e`."""
    path = ROOT / "targets" / f"{target_name}.toml"
    text = re.split(r"^\[estimate\]$", path.read_text(), flags=re.MULTILINE)[0].rstrip() + "\n\n"
    path.write_text(text + toml_section(e))


def print_table(name: str, e: Estimate, ratios: Mapping[str, tuple[float, float]]) -> None:
    """The leave-one-out table of one board (anchor, source, published, predicted, error), and its ratio errors."""
    print(f"\n{name}: fp32 {e.fp32_gmacs_per_core} / int8 {e.int8_gmacs_per_core} GMAC/s per core, "
          f"{e.bandwidth_gbs} GB/s, {e.op_overhead_us} us/op (fitted on all {len(e.anchors)})"
          + (f"; at the fit's bound: {', '.join(e.at_bound)}" if e.at_bound else ""))
    print(f"  {'anchor':26s} {'source':44s} {'published':>9s} {'predicted':>9s} {'error':>7s}  fold's fit at bound")
    for a in e.anchors:
        source = a.source.replace("XNNPACK README, Raspberry Pi table (Feb 8, 2022), ", "XNNPACK'22 ")
        source = source.replace(" column, row ", ": ").replace("MobileNet ", "MN ")
        print(f"  {a.model + ' ' + a.dtype:26s} {source:44s} {a.published_ms:7.1f}ms {a.loo_ms:7.2f}ms "
              f"{(a.loo_error or 0) * 100:+6.1f}%  {', '.join(a.loo_at_bound) or '-'}")
    assert e.error_band is not None
    print(f"  leave-one-out band {e.error_band[0] * 100:+.1f}% .. {e.error_band[1] * 100:+.1f}% (each fold: 4 rates "
          f"on {len(e.anchors) - 1} points, {len(e.anchors) - 5} degree of freedom); the stored figures' own "
          f"residuals, not a test: {min(a.error for a in e.anchors) * 100:+.1f}% .. "
          f"{max(a.error for a in e.anchors) * 100:+.1f}%")
    for model, (pub, pred) in ratios.items():
        print(f"  int8/float32 {model}: published {pub:.3f}, predicted by a fit without {model} {pred:.3f} "
              f"({(pred / pub - 1) * 100:+.1f}%)")
    print(f"  ratio_error {e.ratio_error}: estimate margin {1 + (e.ratio_error or 0):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgekiln" / "anchors")
    args = parser.parse_args()
    print("Per-op records of the anchor models:")
    records = load_records(args.cache)
    fitted: dict[str, Estimate] = {}
    for name, (column, published) in PUBLISHED.items():
        e, ratios, _ = cross_validated(records, column, {k: float(v) for k, v in published.items()},
                                       bounds=bounds_for(name))
        if name in PEAK_BANDWIDTH_GBS:
            peak, bus = PEAK_BANDWIDTH_GBS[name]
            bounded = f"bandwidth_gbs bounded by the bus peak, {peak} GB/s: {bus}"
            e = dataclasses.replace(e, sources=(*e.sources, bounded))
        fitted[name] = e
        write(name, e)
        print_table(name, e, ratios)
    for name, spec in DERIVED.items():
        write(name, derive(fitted[spec[0]], name))
        print(f"{name}: derived from {spec[0]}; no published figure for this board: band unknown")
    print("\nNot used as anchors:\n  - " + "\n  - ".join(ANCHOR_SEARCH))


if __name__ == "__main__":
    main()
